import { get, type IncomingMessage } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, registerProbeHandlers } from '../conformance/harness.js';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

interface SseMessage {
  id?: string;
  event?: string;
  data?: string;
}

/** Reads a whole SSE response (until the server ends it) into messages; comments are kept apart. */
async function readStream(response: Response): Promise<{ messages: SseMessage[]; comments: string[] }> {
  const text = await response.text();
  const messages: SseMessage[] = [];
  const comments: string[] = [];
  for (const block of text.split('\n\n')) {
    const message: SseMessage = {};
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) comments.push(line.slice(1).trim());
      const match = /^(id|event|data): (.*)$/.exec(line);
      if (match) message[match[1] as keyof SseMessage] = match[2];
    }
    if (message.event) messages.push(message);
  }
  return { messages, comments };
}

describe('Server-Sent Events and the result long poll', () => {
  let server: TestRuntime;
  let baseUrl: string;
  let client: Client;

  beforeAll(async () => {
    server = await startTestRuntime({ handlers: registerProbeHandlers, env: { JOBLINE_CORS_ORIGINS: 'https://app.example' } });
    baseUrl = await server.runtime.app.listen({ port: 0, host: '127.0.0.1' });
    client = new Client(server, (await server.login()).accessToken);
  });
  afterAll(async () => server.close());

  const sseSent = async () => {
    const metrics = await server.request({ method: 'GET', url: '/metrics' });
    return Number(/^jobline_events_sent_total\{transport="sse"\} (\d+)$/m.exec(metrics.body)?.[1] ?? 0);
  };

  const stream = (jobId: string, headers: Record<string, string> = {}, query = '') =>
    fetch(`${baseUrl}/v1/jobs/${jobId}/events${query}`, {
      headers: { accept: 'text/event-stream', authorization: `Bearer ${client.token}`, ...headers },
    });

  it('replays a finished job’s events and ends the stream', async () => {
    const job = await client.waitFor((await client.submit({ type: 'chatty', payload: { count: 20 } })).id);
    const response = await stream(job.id);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    const { messages } = await readStream(response);
    expect(messages.map((message) => Number(message.id))).toEqual(messages.map((_message, index) => index + 1));
    expect(messages[0]).toMatchObject({ event: 'job.created' });
    expect(messages.at(-1)?.event).toBe('job.completed');
    expect(JSON.parse(messages.at(-1)!.data!)).toMatchObject({ type: 'job.completed', jobId: job.id, data: { result: { chunks: 20 } } });
  });

  it('resumes after Last-Event-ID (or fromSeq)', async () => {
    const job = await client.waitFor((await client.submit({ type: 'chatty', payload: { count: 20 } })).id);
    const resumed = await readStream(await stream(job.id, { 'last-event-id': '10' }));
    expect(Number(resumed.messages[0]?.id)).toBe(11);
    const viaQuery = await readStream(await stream(job.id, {}, '?fromSeq=20'));
    expect(Number(viaQuery.messages[0]?.id)).toBe(21);
    const everything = await readStream(await stream(job.id, {}, '?fromSeq=1000'));
    expect(everything.messages).toEqual([]);
  });

  it('answers 204 once a finished job has nothing after the given seq, so an EventSource stops reconnecting', async () => {
    const job = await client.waitFor((await client.submit({ type: 'chatty', payload: { count: 5 } })).id);
    const { items } = (await server.request({ method: 'GET', url: `/v1/jobs/${job.id}/events`, token: client.token })).json<{ items: { seq: number }[] }>();
    const lastSeq = Math.max(...items.map((event) => event.seq));
    const last = await stream(job.id, { 'last-event-id': String(lastSeq) });
    expect(last.status).toBe(204);
    expect(await last.text()).toBe('');
    expect((await stream(job.id, {}, '?fromSeq=1000')).status).toBe(204);
    const before = await stream(job.id, { 'last-event-id': String(lastSeq - 1) });
    expect(before.status).toBe(200);
    expect((await readStream(before)).messages.map((message) => message.event)).toEqual(['job.completed']);
  });

  it('on a running job, takes a seq past its last event as its last event (and still ends)', async () => {
    const job = await client.submit({ type: 'sleepy', payload: { ms: 800 } });
    const { messages } = await readStream(await stream(job.id, {}, '?fromSeq=1000'));
    expect(messages.at(-1)?.event).toBe('job.completed');
  });

  it('ends a stream, saying why, when its API key is revoked or expires', async () => {
    const revoked = (await server.request({ method: 'POST', url: '/v1/api-keys', token: client.token, body: { name: 'sse revoked' } })).json();
    const running = await client.submit({ type: 'sleepy', payload: { ms: 60_000 } });
    const response = await fetch(`${baseUrl}/v1/jobs/${running.id}/events?fromSeq=0`, { headers: { accept: 'text/event-stream', authorization: `Bearer ${revoked.key}` } });
    expect(response.status).toBe(200);
    const reading = readStream(response);
    expect((await server.request({ method: 'DELETE', url: `/v1/api-keys/${revoked.id}`, token: client.token })).statusCode).toBe(204);
    const { messages } = await reading;
    expect(messages.at(-1)).toMatchObject({ event: 'session.ended' });
    expect(JSON.parse(messages.at(-1)!.data!)).toMatchObject({ code: 'JOBLINE_API_KEY_INVALID' });
    expect(messages.some((message) => message.event === 'job.completed')).toBe(false);

    const expiring = (
      await server.request({ method: 'POST', url: '/v1/api-keys', token: client.token, body: { name: 'sse short', expiresAt: new Date(Date.now() + 3000).toISOString() } })
    ).json();
    const started = Date.now();
    const expired = await readStream(
      await fetch(`${baseUrl}/v1/jobs/${running.id}/events?fromSeq=0`, { headers: { accept: 'text/event-stream', authorization: `Bearer ${expiring.key}` } }),
    );
    expect(expired.messages.at(-1)).toMatchObject({ event: 'session.ended' });
    expect(Date.now() - started).toBeLessThan(30_000);
    await server.request({ method: 'POST', url: `/v1/jobs/${running.id}/cancel`, token: client.token });
  });

  it('replays to a client that does not read only as fast as it takes the events', async () => {
    const job = await client.waitFor((await client.submit({ type: 'streamer', payload: { count: 60_000, batch: 5000, everyMs: 1 } })).id, undefined, 60_000);
    const sentBefore = await sseSent();
    const url = new URL(`${baseUrl}/v1/jobs/${job.id}/events?fromSeq=0`);
    const response = await new Promise<IncomingMessage>((resolve, reject) => {
      get(url, { headers: { accept: 'text/event-stream', authorization: `Bearer ${client.token}` } }, resolve).on('error', reject);
    });
    response.pause();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const whilePaused = (await sseSent()) - sentBefore;
    // Some pages went out (the socket buffers take them), far from all 60,003 events.
    expect(whilePaused).toBeGreaterThan(0);
    expect(whilePaused).toBeLessThan(40_000);
    let text = '';
    response.setEncoding('utf8');
    response.on('data', (chunk: string) => (text += chunk));
    response.resume();
    await new Promise((resolve) => response.on('end', resolve));
    const ids = [...text.matchAll(/^id: (\d+)$/gm)].map((match) => Number(match[1]));
    expect(ids).toHaveLength(60_003);
    expect(ids.every((id, index) => id === index + 1)).toBe(true);
  }, 90_000);

  it('keeps the CORS and security headers the JSON answers carry', async () => {
    const job = await client.waitFor((await client.submit({ type: 'echo' })).id);
    const response = await stream(job.id, { origin: 'https://app.example' }, '?fromSeq=0');
    await response.text();
    expect(response.status).toBe(200);
    expect(response.headers.get('access-control-allow-origin')).toBe('https://app.example');
    expect(response.headers.get('x-content-type-options')).toBe('nosniff');
    expect(response.headers.get('content-type')).toContain('text/event-stream');
  });

  it('follows a running job live and ends after its final event', async () => {
    const job = await client.submit({ type: 'streamer', payload: { count: 500, batch: 50, everyMs: 20 } });
    const { messages } = await readStream(await stream(job.id));
    expect(messages.map((message) => Number(message.id))).toEqual(messages.map((_message, index) => index + 1));
    expect(messages.filter((message) => message.event === 'job.delta')).toHaveLength(500);
    expect(messages.at(-1)?.event).toBe('job.completed');
  });

  it('answers 404 problem+json for another user’s job, before streaming', async () => {
    const job = await client.submit({ type: 'echo' });
    await server.createUser('sse-other@example.com', 'other-password-1');
    const other = (await server.login('sse-other@example.com', 'other-password-1')).accessToken;
    const response = await fetch(`${baseUrl}/v1/jobs/${job.id}/events`, { headers: { accept: 'text/event-stream', authorization: `Bearer ${other}` } });
    expect(response.status).toBe(404);
    expect(response.headers.get('content-type')).toContain('application/problem+json');
  });

  it('shuts down promptly while a result long-poll waits, answering it', async () => {
    // A short grace for the running job: what is measured is that the waiting poll holds nothing up.
    const own = await startTestRuntime({ handlers: registerProbeHandlers, env: { JOBLINE_SHUTDOWN_GRACE: '300' } });
    const url = await own.runtime.app.listen({ port: 0, host: '127.0.0.1' });
    const token = (await own.login()).accessToken;
    const job = (await own.request({ method: 'POST', url: '/v1/jobs', token, body: { type: 'sleepy', payload: { ms: 60_000 } } })).json();
    const followers = own.runtime.hub.followerCount;
    const poll = fetch(`${url}/v1/jobs/${job.id}/result?wait=60`, { headers: { authorization: `Bearer ${token}` } });
    // Shut down only once the poll is waiting on the server (it follows the job's events then).
    const deadline = Date.now() + 10_000;
    while (own.runtime.hub.followerCount === followers && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(own.runtime.hub.followerCount).toBe(followers + 1);
    const started = Date.now();
    await own.close();
    // Far less than the 60 s the poll and the job would take (the slack is for a loaded machine).
    expect(Date.now() - started).toBeLessThan(10_000);
    const answer = await poll;
    expect(answer.status).toBe(200);
  }, 30_000);

  it('long-polls for a result: answers when the job finishes, or with the job when the wait ends', async () => {
    const quick = await client.submit({ type: 'sleepy', payload: { ms: 300 } });
    let started = Date.now();
    const finished = await server.request({ method: 'GET', url: `/v1/jobs/${quick.id}/result?wait=10`, token: client.token });
    expect(finished.json()).toMatchObject({ state: 'completed', result: { slept: true } });
    // Answered when the job finished, not when the 10 s wait ran out.
    expect(Date.now() - started).toBeLessThan(8000);

    const slow = await client.submit({ type: 'sleepy', payload: { ms: 5000 } });
    started = Date.now();
    const pending = await server.request({ method: 'GET', url: `/v1/jobs/${slow.id}/result?wait=1`, token: client.token });
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    expect(['queued', 'active']).toContain(pending.json().state);
    await client.post(`/v1/jobs/${slow.id}/cancel`);

    const tooLong = await server.request({ method: 'GET', url: `/v1/jobs/${slow.id}/result?wait=61`, token: client.token });
    expect(tooLong.statusCode).toBe(400);
  });
});
