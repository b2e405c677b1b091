import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestRuntime } from '../helpers/runtime.js';
import { Client, targets } from './harness.js';

describe.each(targets)('retention on the $name engine', (target) => {
  let server: TestRuntime;
  let client: Client;
  beforeAll(async () => {
    // Completed jobs go at the first retention pass 3 s after they finish (long enough for the
    // test to see them finished first, even on a loaded machine); failed ones are kept for a day.
    server = await target.start({ env: { JOBLINE_RETENTION_COMPLETED: '3000', JOBLINE_RETENTION_FAILED: '86400000' } });
    client = new Client(server, (await server.login()).accessToken);
  });
  afterAll(async () => server.close());

  it('purges finished jobs and their events past their retention, and keeps the others', async () => {
    const done = await client.waitFor((await client.submit({ type: 'echo' })).id);
    const failed = await client.waitFor((await client.submit({ type: 'fatal' })).id);
    expect(done.state).toBe('completed');
    expect(failed.state).toBe('failed');
    const deadline = Date.now() + 20_000;
    let status = 200;
    while (status !== 404 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      status = (await server.request({ method: 'GET', url: `/v1/jobs/${done.id}`, token: client.token })).statusCode;
    }
    expect(status).toBe(404);
    expect(await server.runtime.engine.listEvents(done.id, 0, 10)).toEqual([]);
    expect((await client.get(failed.id)).state).toBe('failed');
  });
});
