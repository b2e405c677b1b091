/**
 * The one SSRF guard for every outbound HTTP request (webhook deliveries and `http` jobs).
 *
 * Why our own `lookup` rather than `request-filtering-agent`: that package lets Node resolve the
 * name and then inspects the socket's `lookup` event, destroying the socket when the answer is
 * private. Here the guard *is* the lookup function the socket calls, so a socket can only ever be
 * handed addresses that were already checked: there is no second resolution to race (DNS
 * rebinding) and nothing dials before the verdict. Owning the lookup also lets tests inject a
 * resolver (no real DNS), lets one classification serve both the creation-time URL check and the
 * connect-time check, looks inside IPv6 forms that embed an IPv4 address (mapped, 6to4, NAT64)
 * instead of refusing or admitting them wholesale, and takes the operator's allow-list as CIDRs
 * (see ipClassification.ts: ipaddr.js ranges, net.BlockList membership, no hand-written bit
 * arithmetic). Literal-IP hosts skip `lookup` in Node, so the agents check them in
 * `createConnection`, and re-check `remoteAddress` on connect as a last line of defence.
 *
 * `guardedFetch` uses node:http(s) with these agents (global fetch cannot take a lookup), never
 * follows redirects, bounds the whole exchange by one timeout and caps the body it reads.
 */
import dns from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { errors, type AppError } from './errors.js';
import { inspectAddress as inspect, parseAllowList, type AddressVerdict, type AllowList } from './ipClassification.js';

export type { AddressVerdict } from './ipClassification.js';

/** Resolves a host name to every address it has (v4 and v6). */
export type Resolver = (hostname: string) => Promise<string[]>;

export interface OutboundPolicyOptions {
  /** CIDRs (or single addresses) that may be reached although private: `JOBLINE_OUTBOUND_ALLOW`. */
  allow: readonly string[];
  /** Defaults to `dns.promises.lookup(host, { all: true })`; tests inject their own. */
  resolve?: Resolver;
}

export interface OutboundPolicy {
  classify(ip: string): AddressVerdict;
  /** Static check of a URL before any connection; throws `JOBLINE_SSRF_BLOCKED` (400). Returns the parsed URL. */
  assertUrlAllowed(url: string | URL): URL;
  /** A `net` lookup that resolves, then refuses the name if any of its addresses is refused. */
  lookup: net.LookupFunction;
  /** Agents that dial only through `lookup` and check literal and connected addresses. */
  agents: { http: http.Agent; https: https.Agent };
}

function hostOf(url: URL): string {
  return url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
}

function assertUrl(url: string | URL, allow: AllowList): URL {
  let target: URL;
  try {
    target = new URL(String(url));
  } catch {
    throw errors.badRequest(`'${String(url)}' is not a valid absolute URL.`);
  }
  if (target.protocol !== 'http:' && target.protocol !== 'https:') {
    throw errors.ssrfBlocked(`Only http and https URLs may be called; '${target.protocol}' is refused.`);
  }
  if (target.username !== '' || target.password !== '') {
    throw errors.ssrfBlocked('URLs carrying credentials are refused; send them in a header instead.');
  }
  const host = hostOf(target);
  if (host === '') throw errors.ssrfBlocked('The URL has no host.');
  if (net.isIP(host) !== 0) {
    const verdict = inspect(host, allow);
    if (!verdict.allowed) throw errors.ssrfBlocked(`Refused outbound address: ${verdict.reason ?? host}.`);
  }
  return target;
}

const systemResolver: Resolver = async (hostname) =>
  (await dns.promises.lookup(hostname, { all: true })).map((entry) => entry.address);

function notFound(hostname: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND', hostname });
}

function wantedFamily(family: dns.LookupOptions['family']): 0 | 4 | 6 {
  if (family === 4 || family === 'IPv4') return 4;
  if (family === 6 || family === 'IPv6') return 6;
  return 0;
}

function createLookup(resolve: Resolver, allow: AllowList): net.LookupFunction {
  const resolveChecked = async (hostname: string): Promise<dns.LookupAddress[]> => {
    const host = hostname.startsWith('[') ? hostname.slice(1, -1) : hostname;
    const answers = net.isIP(host) !== 0 ? [host] : await resolve(host);
    if (answers.length === 0) throw notFound(host);
    // Refusing the whole name when any answer is refused keeps happy-eyeballs from picking the bad one.
    return answers.map((answer) => {
      const verdict = inspect(answer, allow);
      if (!verdict.allowed) throw errors.ssrfBlocked(`${host} resolves to a refused address: ${verdict.reason ?? answer}.`);
      return { address: verdict.dialled, family: verdict.family };
    });
  };
  return (hostname, options, callback) => {
    resolveChecked(hostname).then(
      (addresses) => {
        const family = wantedFamily(options.family);
        const usable = family === 0 ? addresses : addresses.filter((entry) => entry.family === family);
        const first = usable[0];
        if (first === undefined) callback(notFound(hostname), '');
        else if (options.all === true) callback(null, usable);
        else callback(null, first.address, first.family);
      },
      (error: unknown) => callback(error instanceof Error ? error : notFound(hostname), ''),
    );
  };
}

/** Checks a connection before it is dialled (literal IPs bypass `lookup`) and once it is up. */
class ConnectionGuard {
  constructor(private readonly allow: AllowList) {}

  refusalFor(options: http.ClientRequestArgs): AppError | null {
    if (options.socketPath != null) return errors.ssrfBlocked('Connections to local sockets are refused.');
    const host = options.host ?? options.hostname ?? '';
    if (net.isIP(host) === 0) return null;
    const verdict = inspect(host, this.allow);
    return verdict.allowed ? null : errors.ssrfBlocked(`Refused outbound address: ${verdict.reason ?? host}.`);
  }

  watch(socket: Duplex | null | undefined): void {
    if (!(socket instanceof net.Socket)) return;
    // Registered before the request's queued write, so a refused peer never receives a byte of it
    // (over TLS only the ClientHello goes first).
    socket.once('connect', () => {
      const remote = socket.remoteAddress;
      const verdict = remote === undefined ? { allowed: false, reason: 'unknown' } : inspect(remote, this.allow);
      if (!verdict.allowed) socket.destroy(errors.ssrfBlocked(`Refused connected address: ${verdict.reason ?? remote}.`));
    });
  }
}

type ConnectionCallback = (err: Error | null, stream: Duplex) => void;

function refuseConnection(error: Error, callback: ConnectionCallback | undefined): Duplex | undefined {
  const placeholder = new net.Socket();
  if (callback !== undefined) {
    placeholder.destroy();
    callback(error, placeholder);
    return undefined;
  }
  process.nextTick(() => placeholder.destroy(error));
  return placeholder;
}

class GuardedHttpAgent extends http.Agent {
  constructor(
    private readonly guard: ConnectionGuard,
    lookup: net.LookupFunction,
  ) {
    // No pooling: targets are many and arbitrary, so idle sockets per host would buy little.
    super({ keepAlive: false, lookup });
  }

  override createConnection(options: http.ClientRequestArgs, callback?: ConnectionCallback): Duplex | null | undefined {
    const refusal = this.guard.refusalFor(options);
    if (refusal !== null) return refuseConnection(refusal, callback);
    const socket = super.createConnection(options, callback);
    this.guard.watch(socket);
    return socket;
  }
}

class GuardedHttpsAgent extends https.Agent {
  constructor(
    private readonly guard: ConnectionGuard,
    lookup: net.LookupFunction,
  ) {
    super({ keepAlive: false, lookup });
  }

  override createConnection(options: https.RequestOptions, callback?: ConnectionCallback): Duplex | null | undefined {
    const refusal = this.guard.refusalFor(options);
    if (refusal !== null) return refuseConnection(refusal, callback);
    const socket = super.createConnection(options, callback);
    this.guard.watch(socket);
    return socket;
  }
}

/** Builds the policy from the operator's allow-list; throws on an entry that is not a CIDR or address. */
export function createOutboundPolicy(options: OutboundPolicyOptions): OutboundPolicy {
  const allow = parseAllowList(options.allow);
  const lookup = createLookup(options.resolve ?? systemResolver, allow);
  const guard = new ConnectionGuard(allow);
  return {
    classify: (ip) => {
      const { allowed, reason } = inspect(ip, allow);
      return reason === undefined ? { allowed } : { allowed, reason };
    },
    assertUrlAllowed: (url) => assertUrl(url, allow),
    lookup,
    agents: { http: new GuardedHttpAgent(guard, lookup), https: new GuardedHttpsAgent(guard, lookup) },
  };
}

export interface GuardedRequestInit {
  method?: string;
  headers?: Readonly<Record<string, string>>;
  body?: string | Uint8Array;
  signal?: AbortSignal;
  /** Bounds the whole exchange: connect, request, response headers and body. */
  timeoutMs: number;
  /** Bytes of response body kept; the rest is not read and `truncated` is set. */
  maxResponseBytes: number;
}

export interface GuardedResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  truncated: boolean;
}

/** A failure of the exchange itself (not an HTTP status), with a stable `code`. */
export class OutboundError extends Error {
  constructor(
    message: string,
    readonly code: 'JOBLINE_OUTBOUND_TIMEOUT' | 'ABORT_ERR' | 'JOBLINE_OUTBOUND_RESPONSE_ENDED',
    options?: { cause?: unknown; name?: string },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = options?.name ?? 'OutboundError';
  }
}

function abortError(signal: AbortSignal): OutboundError {
  return new OutboundError('The outbound request was aborted.', 'ABORT_ERR', { cause: signal.reason, name: 'AbortError' });
}

function flattenHeaders(raw: http.IncomingHttpHeaders): Record<string, string> {
  const flat: Record<string, string> = {};
  for (const [name, value] of Object.entries(raw)) {
    if (value !== undefined) flat[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return flat;
}

function readCappedBody(response: http.IncomingMessage, maxBytes: number): Promise<GuardedResponse> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let truncated = false;
    const done = () =>
      resolve({
        status: response.statusCode ?? 0,
        headers: flattenHeaders(response.headers),
        body: Buffer.concat(chunks).toString('utf8'),
        truncated,
      });
    response.on('data', (chunk: Buffer) => {
      if (truncated) return;
      const room = maxBytes - size;
      if (chunk.length > room) {
        chunks.push(chunk.subarray(0, room));
        truncated = true;
        // Stop reading: a hostile server must not make us download more than the cap.
        response.destroy();
        done();
        return;
      }
      chunks.push(chunk);
      size += chunk.length;
    });
    response.on('end', done);
    response.on('error', reject);
    response.on('close', () => {
      if (!response.complete && !truncated) {
        reject(new OutboundError('The connection closed before the response was complete.', 'JOBLINE_OUTBOUND_RESPONSE_ENDED'));
      }
    });
  });
}

function requestHeaders(init: GuardedRequestInit): Record<string, string> {
  const headers: Record<string, string> = { ...init.headers };
  const hasLength = Object.keys(headers).some((name) => name.toLowerCase() === 'content-length');
  if (init.body !== undefined && !hasLength) headers['content-length'] = String(Buffer.byteLength(init.body));
  return headers;
}

/**
 * One HTTP exchange through the policy. Resolves with any status (a 3xx is returned as is, never
 * followed); rejects with an error carrying `code`: `JOBLINE_SSRF_BLOCKED`, `JOBLINE_OUTBOUND_TIMEOUT`,
 * `ABORT_ERR`, or Node's own (`ECONNREFUSED`, `ENOTFOUND`, …).
 */
export async function guardedFetch(policy: OutboundPolicy, url: string | URL, init: GuardedRequestInit): Promise<GuardedResponse> {
  const target = policy.assertUrlAllowed(url);
  const { signal } = init;
  if (signal?.aborted === true) throw abortError(signal);
  const secure = target.protocol === 'https:';
  return new Promise<GuardedResponse>((resolve, reject) => {
    const request = (secure ? https : http).request(target, {
      method: init.method ?? 'GET',
      headers: requestHeaders(init),
      agent: secure ? policy.agents.https : policy.agents.http,
    });
    let settled = false;
    const settle = (error: Error | null, response?: GuardedResponse) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if (error !== null || response === undefined) {
        reject(error);
        request.destroy();
      } else {
        resolve(response);
      }
    };
    const timer = setTimeout(
      () => settle(new OutboundError(`The outbound request timed out after ${init.timeoutMs} ms.`, 'JOBLINE_OUTBOUND_TIMEOUT')),
      init.timeoutMs,
    );
    const onAbort = () => {
      if (signal !== undefined) settle(abortError(signal));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    request.on('error', (error) => settle(error));
    request.on('response', (response) => {
      readCappedBody(response, init.maxResponseBytes).then(
        (result) => settle(null, result),
        (error: Error) => settle(error),
      );
    });
    request.end(init.body);
  });
}
