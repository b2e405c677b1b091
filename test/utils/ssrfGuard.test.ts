import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AppError } from '../../src/utils/errors.js';
import { createOutboundPolicy, guardedFetch, type OutboundPolicy } from '../../src/utils/ssrfGuard.js';
import { startLoopbackServer, type LoopbackServer } from '../helpers/loopbackServer.js';

/** Stands in for DNS: tests never resolve a real name. */
const answers: Record<string, string[]> = {
  'service.test': ['127.0.0.1'],
  'rebind.test': ['127.0.0.1'],
  'metadata.test': ['169.254.169.254'],
  'mixed.test': ['93.184.215.14', '10.0.0.8'],
};
const resolved: string[] = [];
async function fakeResolve(hostname: string): Promise<string[]> {
  resolved.push(hostname);
  const found = answers[hostname];
  if (found === undefined) throw Object.assign(new Error(`ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' });
  return found;
}

const closedPolicy = createOutboundPolicy({ allow: [], resolve: fakeResolve });
const loopbackPolicy = createOutboundPolicy({ allow: ['127.0.0.0/8'], resolve: fakeResolve });

function thrownBy(action: () => unknown): unknown {
  try {
    action();
  } catch (error) {
    return error;
  }
  return undefined;
}

describe('URL check before any connection', () => {
  it.each([
    'http://127.0.0.1/',
    'http://127.1/',
    'http://0177.0.0.1/',
    'http://0x7f000001/',
    'http://0x7f.0.0.1/',
    'http://2130706433/',
    'http://0/',
    'http://[::1]/',
    'http://[::]/',
    'http://[::ffff:127.0.0.1]/',
    'http://[::ffff:7f00:1]/',
    'http://[0:0:0:0:0:ffff:127.0.0.1]/',
    'http://[::127.0.0.1]/',
    'http://10.0.0.1/',
    'http://172.16.0.1/',
    'http://192.168.1.1:8080/admin',
    'http://100.64.0.1/',
    'http://169.254.169.254/latest/meta-data/',
    'http://[fd00:ec2::254]/latest/meta-data/',
    'http://[fe80::1]/',
    'http://[fc00::1]/',
    'http://[2002:7f00:1::]/',
    'http://[64:ff9b::7f00:1]/',
    'http://[64:ff9b::a9fe:a9fe]/',
    'http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/',
    'http://224.0.0.1/',
    'http://255.255.255.255/',
    'file:///etc/passwd',
    'gopher://127.0.0.1:6379/_FLUSHALL',
    'gopher://example.com/',
    'ftp://example.com/file',
    'data:text/plain,hello',
    'javascript:alert(1)',
    'ws://example.com/socket',
    'http://user:secret@example.com/',
    'https://user@example.com/',
    'https://:secret@example.com/',
  ])('refuses %s with JOBLINE_SSRF_BLOCKED (400)', (url) => {
    const error = thrownBy(() => closedPolicy.assertUrlAllowed(url));
    expect(error).toBeInstanceOf(AppError);
    expect(error).toMatchObject({ code: 'JOBLINE_SSRF_BLOCKED', status: 400 });
  });

  it.each(['https://example.com/hook', 'http://8.8.8.8:8080/x', 'https://[2606:4700:4700::1111]/', 'http://localhost:3000/'])(
    'lets %s through to the connect-time check',
    (url) => {
      expect(closedPolicy.assertUrlAllowed(url).href).toBe(new URL(url).href);
    },
  );

  it('answers a malformed URL with a bad request', () => {
    expect(thrownBy(() => closedPolicy.assertUrlAllowed('not a url'))).toMatchObject({ code: 'JOBLINE_BAD_REQUEST', status: 400 });
  });
});

describe('connect-time check', () => {
  function lookupOf(policy: OutboundPolicy, host: string, options: { all?: boolean; family?: number }) {
    return new Promise<{ error: NodeJS.ErrnoException | null; address: unknown; family?: number }>((resolve) => {
      policy.lookup(host, options, (error, address, family) => resolve({ error, address, family }));
    });
  }

  beforeEach(() => {
    resolved.length = 0;
  });

  it('refuses a name if any of its addresses is refused, and hands the socket every checked address', async () => {
    expect((await lookupOf(closedPolicy, 'mixed.test', { all: true })).error).toMatchObject({ code: 'JOBLINE_SSRF_BLOCKED' });
    expect((await lookupOf(closedPolicy, 'metadata.test', {})).error?.message).toContain('metadata');
    expect(await lookupOf(loopbackPolicy, 'service.test', { all: true })).toMatchObject({
      error: null,
      address: [{ address: '127.0.0.1', family: 4 }],
    });
    expect(await lookupOf(loopbackPolicy, 'service.test', {})).toMatchObject({ error: null, address: '127.0.0.1', family: 4 });
    expect((await lookupOf(loopbackPolicy, 'service.test', { family: 6 })).error).toMatchObject({ code: 'ENOTFOUND' });
    expect((await lookupOf(loopbackPolicy, 'nowhere.test', {})).error).toMatchObject({ code: 'ENOTFOUND' });
  });
});

describe('guardedFetch against a loopback server', () => {
  let server: LoopbackServer;

  beforeAll(async () => {
    server = await startLoopbackServer((request, response) => {
      switch (request.path) {
        case '/json':
          response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: true }));
          return;
        case '/echo':
          response.writeHead(201, { 'content-type': 'application/json', 'x-reply': 'yes' });
          response.end(JSON.stringify({ method: request.method, body: request.body, headers: request.headers }));
          return;
        case '/redirect':
          response.writeHead(302, { location: server.url('/secret') }).end();
          return;
        case '/big':
          response.writeHead(200, { 'content-type': 'text/plain' }).end('x'.repeat(10_000));
          return;
        case '/exact':
          response.writeHead(200, { 'content-type': 'text/plain' }).end('y'.repeat(1000));
          return;
        case '/slow-body':
          response.writeHead(200, { 'content-type': 'text/plain' });
          response.write('first part');
          return; // never ends
        case '/hang':
          return; // never answers
        default:
          response.writeHead(404).end('not here');
      }
    });
  });
  afterAll(async () => {
    await server.close();
  });
  beforeEach(() => {
    resolved.length = 0;
  });

  const init = { timeoutMs: 5000, maxResponseBytes: 64 * 1024 };

  it('refuses every literal form of the loopback address without opening a connection', async () => {
    const before = server.connections;
    const port = server.port;
    for (const url of [
      `http://127.0.0.1:${port}/json`,
      `http://0177.0.0.1:${port}/json`,
      `http://0x7f000001:${port}/json`,
      `http://2130706433:${port}/json`,
      `http://127.1:${port}/json`,
      `http://[::ffff:127.0.0.1]:${port}/json`,
      `http://[::ffff:7f00:1]:${port}/json`,
    ]) {
      await expect(guardedFetch(closedPolicy, url, init), url).rejects.toMatchObject({ code: 'JOBLINE_SSRF_BLOCKED' });
    }
    expect(server.connections).toBe(before);
    expect(resolved).toEqual([]);
  });

  it('refuses at connect time a name that resolves to a refused address, before dialling it', async () => {
    const before = server.connections;
    const attempt = guardedFetch(closedPolicy, `http://rebind.test:${server.port}/json`, init);
    await expect(attempt).rejects.toMatchObject({ code: 'JOBLINE_SSRF_BLOCKED' });
    expect(resolved).toEqual(['rebind.test']);
    expect(server.connections).toBe(before);
    expect(server.requests.some((request) => request.headers.host?.startsWith('rebind.test'))).toBe(false);
  });

  it('guards requests made with the agents directly, literal addresses included', async () => {
    const before = server.connections;
    const error = await new Promise<unknown>((resolve) => {
      const request = http.get({ host: '127.0.0.1', port: server.port, path: '/json', agent: closedPolicy.agents.http });
      request.on('error', resolve);
      request.on('response', () => resolve(undefined));
    });
    expect(error).toMatchObject({ code: 'JOBLINE_SSRF_BLOCKED' });
    expect(server.connections).toBe(before);
  });

  it('closes a socket whose peer turns out to be refused, even if it got there without the policy lookup', async () => {
    // Calling createConnection directly with a foreign lookup simulates a path around the guard.
    const sneaky: NonNullable<http.ClientRequestArgs['lookup']> = (_host, options, callback) => {
      if (options.all === true) callback(null, [{ address: '127.0.0.1', family: 4 }]);
      else callback(null, '127.0.0.1', 4);
    };
    const before = server.requests.length;
    const socket = closedPolicy.agents.http.createConnection({ host: 'sneaky.test', port: server.port, lookup: sneaky });
    const error = await new Promise((resolve) => socket?.on('error', resolve));
    expect(error).toMatchObject({ code: 'JOBLINE_SSRF_BLOCKED' });
    expect(server.requests.length).toBe(before);
  });

  it('reaches an allow-listed address, by literal and by name', async () => {
    const direct = await guardedFetch(loopbackPolicy, server.url('/json'), init);
    expect(direct).toMatchObject({ status: 200, body: '{"ok":true}', truncated: false });
    expect(direct.headers['content-type']).toBe('application/json');
    const named = await guardedFetch(loopbackPolicy, `http://service.test:${server.port}/json`, init);
    expect(named.status).toBe(200);
    expect(resolved).toEqual(['service.test']);
    expect(server.requests.at(-1)?.headers.host).toBe(`service.test:${server.port}`);
  });

  it('sends the method, headers and body', async () => {
    const response = await guardedFetch(loopbackPolicy, server.url('/echo'), {
      ...init,
      method: 'POST',
      headers: { 'content-type': 'text/plain', 'x-token': 'abc' },
      body: 'héllo',
    });
    expect(response.status).toBe(201);
    expect(response.headers['x-reply']).toBe('yes');
    const echoed = JSON.parse(response.body) as { method: string; body: string; headers: Record<string, string> };
    expect(echoed).toMatchObject({ method: 'POST', body: 'héllo' });
    expect(echoed.headers).toMatchObject({ 'x-token': 'abc', 'content-length': '6' });
  });

  it('returns a redirect as is and never follows it', async () => {
    const response = await guardedFetch(loopbackPolicy, server.url('/redirect'), init);
    expect(response.status).toBe(302);
    expect(response.headers.location).toBe(server.url('/secret'));
    expect(server.requests.some((request) => request.path === '/secret')).toBe(false);
  });

  it('caps the body it reads and says so', async () => {
    const big = await guardedFetch(loopbackPolicy, server.url('/big'), { ...init, maxResponseBytes: 1000 });
    expect(big.body).toBe('x'.repeat(1000));
    expect(big.truncated).toBe(true);
    const exact = await guardedFetch(loopbackPolicy, server.url('/exact'), { ...init, maxResponseBytes: 1000 });
    expect(exact).toMatchObject({ body: 'y'.repeat(1000), truncated: false });
  });

  it('gives up after the timeout, whether waiting for headers or for the body', async () => {
    for (const path of ['/hang', '/slow-body']) {
      const started = Date.now();
      await expect(guardedFetch(loopbackPolicy, server.url(path), { ...init, timeoutMs: 200 })).rejects.toMatchObject({
        code: 'JOBLINE_OUTBOUND_TIMEOUT',
      });
      expect(Date.now() - started).toBeLessThan(3000);
    }
  });

  it('stops when the caller aborts', async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    await expect(guardedFetch(loopbackPolicy, server.url('/hang'), { ...init, signal: controller.signal })).rejects.toMatchObject({
      code: 'ABORT_ERR',
      name: 'AbortError',
    });
    const before = server.connections;
    await expect(guardedFetch(loopbackPolicy, server.url('/json'), { ...init, signal: AbortSignal.abort() })).rejects.toMatchObject({
      code: 'ABORT_ERR',
    });
    expect(server.connections).toBe(before);
  });

  it('reports a refused connection with its network code', async () => {
    const idle = http.createServer();
    await new Promise<void>((resolve) => idle.listen(0, '127.0.0.1', resolve));
    const { port } = idle.address() as AddressInfo;
    await new Promise<void>((resolve) => idle.close(() => resolve()));
    await expect(guardedFetch(loopbackPolicy, `http://127.0.0.1:${port}/`, init)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });
});

/** A throwaway self-signed certificate for service.test and 127.0.0.1, or null without openssl. */
function makeCertificate(): { key: string; cert: string } | null {
  const dir = mkdtempSync(join(tmpdir(), 'jobline-tls-'));
  try {
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=service.test',
        '-addext', 'subjectAltName=DNS:service.test,IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')],
      { stdio: 'ignore' },
    );
    return { key: readFileSync(join(dir, 'key.pem'), 'utf8'), cert: readFileSync(join(dir, 'cert.pem'), 'utf8') };
  } catch {
    return null;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const certificate = makeCertificate();

describe.skipIf(certificate === null)('https through the guarded agent', () => {
  let server: https.Server;
  let port = 0;
  let connections = 0;

  beforeAll(async () => {
    server = https.createServer({ key: certificate?.key, cert: certificate?.cert }, (_request, response) => {
      response.writeHead(200, { 'content-type': 'text/plain' }).end('secure hello');
    });
    server.on('connection', () => (connections += 1));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  function get(policy: OutboundPolicy, hostname: string) {
    return new Promise<{ status?: number; body?: string; error?: unknown }>((resolve) => {
      const request = https.get({ hostname, port, path: '/', agent: policy.agents.https, ca: certificate?.cert }, (response) => {
        let body = '';
        response.on('data', (chunk: Buffer) => (body += chunk.toString()));
        response.on('end', () => resolve({ status: response.statusCode, body }));
      });
      request.on('error', (error) => resolve({ error }));
    });
  }

  it('resolves the name through the policy and keeps certificate checks on', async () => {
    expect(await get(loopbackPolicy, 'service.test')).toEqual({ status: 200, body: 'secure hello' });
    // guardedFetch trusts only the system CAs: a self-signed certificate is refused.
    await expect(guardedFetch(loopbackPolicy, `https://127.0.0.1:${port}/`, { timeoutMs: 5000, maxResponseBytes: 1024 })).rejects.toMatchObject({
      code: expect.stringMatching(/CERT|SELF_SIGNED/),
    });
  });

  it('refuses a name and a literal outside the allow-list without opening a connection', async () => {
    const before = connections;
    expect((await get(closedPolicy, 'service.test')).error).toMatchObject({ code: 'JOBLINE_SSRF_BLOCKED' });
    expect((await get(closedPolicy, '127.0.0.1')).error).toMatchObject({ code: 'JOBLINE_SSRF_BLOCKED' });
    expect(connections).toBe(before);
  });
});
