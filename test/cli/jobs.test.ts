import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callServer, childEnv, ROOT } from '../helpers/process.js';
import { CLI_TEST_TIMEOUT_MS, expectOneLineError, HAS_SCRIPT, jobline, joblineOnTerminal, startHarness, type Harness } from './harness.js';

interface JobJson {
  id: string;
  state: string;
  queue: string;
  tags: string[];
  result: unknown;
}

describe('jobline jobs, queues, schedules and webhooks', () => {
  let harness: Harness;
  let env: { configHome: string; JOBLINE_URL: string; JOBLINE_API_KEY: string };
  beforeAll(async () => {
    harness = await startHarness();
    env = { configHome: harness.configHome(), JOBLINE_URL: harness.server.baseUrl, JOBLINE_API_KEY: await harness.adminKey() };
  }, CLI_TEST_TIMEOUT_MS);
  afterAll(async () => harness?.stop());

  const run = (...args: string[]) => jobline(args, env);
  /** Submits with --json; a failing job waited for exits 1. */
  async function submitted(...args: string[]): Promise<JobJson> {
    const result = await run('jobs', 'submit', ...args, '--json');
    expect(result.code, result.stderr).toBe(args.includes('{"fail":true}') && args.includes('--wait') ? 1 : 0);
    return JSON.parse(result.stdout) as JobJson;
  }

  it('jobs submit --wait exits with the outcome: 0 completed, 1 failed, 2 cancelled', async () => {
    const payloadFile = path.join(harness.root, 'payload.json');
    writeFileSync(payloadFile, '{"from":"a file"}');
    const [completed, failed, fromFile, fromStdin] = await Promise.all([
      run('jobs', 'submit', 'echo', '--payload', '{"n":1}', '--wait'),
      run('jobs', 'submit', 'echo', '--payload', '{"fail":true}', '--attempts', '1', '--wait'),
      run('jobs', 'submit', 'echo', '--payload', `@${payloadFile}`, '--wait', '--json'),
      jobline(['jobs', 'submit', 'echo', '--payload', '@-', '--wait', '--json'], env, '{"from":"stdin"}'),
    ]);
    expect(completed.code, completed.stderr).toBe(0);
    expect(completed.stdout).toMatch(/^submitted job \S+ \(echo on default, queued\)\n/);
    expect(JSON.parse(completed.stdout.slice(completed.stdout.indexOf('{')))).toEqual({ echoed: { n: 1 } });
    expect(completed.stderr).toContain('completed');

    expect(failed.code, failed.stderr).toBe(1);
    expect(failed.stderr).toMatch(/job \S+ failed: asked to fail/);

    expect(fromFile.code, fromFile.stderr).toBe(0);
    expect(JSON.parse(fromFile.stdout)).toMatchObject({ state: 'completed', result: { echoed: { from: 'a file' } } });
    expect(JSON.parse(fromStdin.stdout)).toMatchObject({ state: 'completed', result: { echoed: { from: 'stdin' } } });

    // A job cancelled while the CLI waits on it.
    const waiting = run('jobs', 'submit', 'hold', '--tag', 'to-cancel', '--wait', '--json');
    const held = await until(async () => {
      const listed = await run('jobs', 'list', '--type', 'hold', '--tag', 'to-cancel', '--state', 'active', '--json');
      return (JSON.parse(listed.stdout) as JobJson[])[0];
    });
    expect((await run('jobs', 'cancel', held.id)).code).toBe(0);
    const cancelled = await waiting;
    expect(cancelled.code, cancelled.stderr).toBe(2);
    expect(JSON.parse(cancelled.stdout)).toMatchObject({ id: held.id, state: 'cancelled' });
  }, CLI_TEST_TIMEOUT_MS);

  it('jobs follow on a finished job replays every delta to stdout and exits with its outcome', async () => {
    const [done, broken] = await Promise.all([submitted('echo', '--wait'), submitted('echo', '--payload', '{"fail":true}', '--attempts', '1', '--wait')]);
    const [followed, followedFailed, asJson] = await Promise.all([
      run('jobs', 'follow', done.id),
      run('jobs', 'follow', broken.id),
      run('jobs', 'follow', done.id, '--json'),
    ]);
    expect(followed.code, followed.stderr).toBe(0);
    expect(followed.stdout).toBe('hello world\n');
    expect(followed.stderr).toContain('log: halfway');
    expect(followed.stderr).toContain(`job ${done.id} completed`);

    expect(followedFailed.code).toBe(1);
    expect(followedFailed.stdout).toBe('hello world\n');
    expect(followedFailed.stderr).toContain('failed: asked to fail');

    // --json: one event per line, every seq once and in order, ending with the final event.
    const events = asJson.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { seq: number; type: string });
    expect(events.map((event) => event.seq)).toEqual(events.map((_event, index) => index + 1));
    expect(events.at(-1)?.type).toBe('job.completed');
    expect(events.filter((event) => event.type === 'job.delta')).toHaveLength(3);

    // --from-seq skips what was seen.
    const later = await run('jobs', 'follow', done.id, '--from-seq', '3');
    expect(later.stdout).toBe('world\n');
  }, CLI_TEST_TIMEOUT_MS);

  it('jobs follow on a job that has not run yet streams its output live, then exits 0', async () => {
    // The delay outlasts the follower's start, so it sees the job run rather than a replay.
    const job = await submitted('drip', '--delay', '6s');
    const followed = await run('jobs', 'follow', job.id);
    expect(followed.code, followed.stderr).toBe(0);
    expect(followed.stdout).toBe('line 1\nline 2\nline 3\nline 4\nline 5\n');
  }, CLI_TEST_TIMEOUT_MS);

  it.skipIf(!HAS_SCRIPT)('on a terminal, jobs follow draws a progress bar that steps aside for the output', async () => {
    const job = await submitted('drip', '--delay', '6s');
    const shown = await joblineOnTerminal(['jobs', 'follow', job.id], env);
    expect(shown.code, shown.stdout).toBe(0);
    // Each output line is written on a cleared line, never into the bar.
    for (const line of [1, 2, 3, 4, 5]) expect(shown.stdout).toContain(`\u001b[2Kline ${line}`);
    expect(shown.stdout).toContain('\u2588'.repeat(30));
    expect(shown.stdout).toContain('100% | completed');
    // Colour, since stdout is a terminal.
    expect(shown.stdout).toContain(`job ${job.id} \u001b[32mcompleted`);
  }, CLI_TEST_TIMEOUT_MS);

  it('Ctrl-C stops jobs follow with 130 and leaves the job running', async () => {
    const job = await submitted('hold', '--tag', 'interrupted');
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src/index.ts'), 'jobs', 'follow', job.id, '--json'], {
      cwd: ROOT,
      env: childEnv({ XDG_CONFIG_HOME: env.configHome, JOBLINE_URL: env.JOBLINE_URL, JOBLINE_API_KEY: env.JOBLINE_API_KEY }),
    });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    // Interrupt once the follower shows the job running: it is following by then.
    await new Promise<void>((resolve) =>
      child.stdout.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
        if (stdout.includes('"job.active"')) resolve();
      }),
    );
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    expect(stderr).toContain(`stopped following job ${job.id}; it goes on`);
    expect(JSON.parse((await run('jobs', 'get', job.id, '--json')).stdout)).toMatchObject({ state: 'active' });
    expect((await run('jobs', 'cancel', job.id)).code).toBe(0);
  }, CLI_TEST_TIMEOUT_MS);

  it('jobs list and get: a table for people, JSON for scripts', async () => {
    const job = await submitted('echo', '--tag', 'listed', '--priority', '5', '--wait');
    const [table, json, got, gotJson] = await Promise.all([
      run('jobs', 'list', '--tag', 'listed'),
      run('jobs', 'list', '--tag', 'listed', '--state', 'completed,failed', '--json'),
      run('jobs', 'get', job.id),
      run('jobs', 'get', job.id, '--json'),
    ]);
    expect(table.stdout.split('\n')[0]).toMatch(/^ID\s+TYPE\s+QUEUE\s+STATE\s+TRIES\s+CREATED$/);
    expect(table.stdout).toMatch(new RegExp(`${job.id}\\s+echo\\s+default\\s+completed\\s+1/3`));
    expect((JSON.parse(json.stdout) as JobJson[]).map((item) => item.id)).toEqual([job.id]);
    expect(got.stdout).toMatch(/state\s+completed/);
    expect(got.stdout).toMatch(/priority\s+5/);
    expect(JSON.parse(gotJson.stdout)).toMatchObject({ id: job.id, tags: ['listed'], result: { echoed: null } });
  }, CLI_TEST_TIMEOUT_MS);

  it('jobs retry, cancel and delete by ID', async () => {
    const [failed, later] = await Promise.all([
      submitted('echo', '--payload', '{"fail":true}', '--attempts', '1', '--wait'),
      submitted('echo', '--delay', '1h'),
    ]);
    expect(later.state).toBe('scheduled');
    const retried = await run('jobs', 'retry', failed.id);
    expect(retried.code, retried.stderr).toBe(0);
    expect(retried.stdout).toContain(`retried ${failed.id}`);

    const cancelled = await run('jobs', 'cancel', later.id, '--json');
    expect(cancelled.code, cancelled.stderr).toBe(0);
    expect(JSON.parse(cancelled.stdout)).toEqual([{ id: later.id, ok: true, state: 'cancelled' }]);

    const deleted = await run('jobs', 'delete', later.id);
    expect(deleted.stdout).toContain(`deleted ${later.id}`);
    expectOneLineError(await run('jobs', 'get', later.id), 'JOBLINE_JOB_NOT_FOUND');
    // Cancelling a finished job is refused, saying why; the exit code says it did not happen.
    const refused = await run('jobs', 'cancel', failed.id, later.id);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`could not cancel ${later.id}`);
  }, CLI_TEST_TIMEOUT_MS);

  it('jobs cancel and delete by filter: counts, asks (or --yes), then acts on each', async () => {
    await Promise.all([1, 2, 3].map(() => submitted('echo', '--delay', '1h', '--tag', 'batch')));
    const refused = await run('jobs', 'cancel', '--tag', 'batch');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('3 jobs match tag=batch');
    expect(refused.stderr).toContain('refusing to cancel 3 jobs without confirmation; pass --yes');
    expect(JSON.parse((await run('jobs', 'list', '--tag', 'batch', '--state', 'scheduled', '--json')).stdout)).toHaveLength(3);

    const cancelled = await run('jobs', 'cancel', '--tag', 'batch', '--yes');
    expect(cancelled.code, cancelled.stderr).toBe(0);
    expect(cancelled.stdout.trim().split('\n')).toHaveLength(3);
    expect(cancelled.stderr).toContain('3 of 3 cancelled');

    const deleted = await run('jobs', 'delete', '--tag', 'batch', '--state', 'cancelled', '--yes', '--json');
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(JSON.parse(deleted.stdout)).toHaveLength(3);
    expect(JSON.parse((await run('jobs', 'list', '--tag', 'batch', '--json')).stdout)).toEqual([]);
    expectOneLineError(await run('jobs', 'retry', 'some-id', '--state', 'failed'), 'give job IDs or a filter, not both');
  }, CLI_TEST_TIMEOUT_MS);

  it('queues: a counts table, pause and resume', async () => {
    await submitted('echo', '--queue', 'side', '--delay', '1h');
    const paused = await run('queues', 'pause', 'side');
    expect(paused.code, paused.stderr).toBe(0);
    expect(paused.stdout).toContain('queue side paused');
    const table = await run('queues');
    expect(table.stdout).toMatch(/^QUEUE\s+STATUS\s+QUEUED\s+SCHEDULED\s+ACTIVE\s+COMPLETED\s+FAILED\s+CANCELLED$/m);
    expect(table.stdout).toMatch(/^side\s+paused\s+0\s+1\s+0\s+0\s+0\s+0$/m);
    expect((await run('queues', 'resume', 'side')).stdout).toContain('queue side resumed');
    const json = JSON.parse((await run('queues', '--json')).stdout) as { name: string; paused: boolean }[];
    expect(json.find((queue) => queue.name === 'side')).toMatchObject({ paused: false });
  }, CLI_TEST_TIMEOUT_MS);

  it('schedules: create, list, pause and resume', async () => {
    const created = await run('schedules', 'create', 'nightly', '--cron', '0 3 * * *', '--type', 'echo', '--payload', '{"a":1}', '--timezone', 'Europe/Berlin', '--json');
    expect(created.code, created.stderr).toBe(0);
    const schedule = JSON.parse(created.stdout) as { id: string; enabled: boolean; job: Record<string, unknown> };
    expect(schedule).toMatchObject({ enabled: true, job: { type: 'echo', payload: { a: 1 } } });

    const listed = await run('schedules', 'list');
    expect(listed.stdout).toMatch(new RegExp(`${schedule.id}\\s+nightly\\s+0 3 \\* \\* \\*\\s+Europe/Berlin\\s+echo\\s+enabled`));
    const paused = await run('schedules', 'pause', schedule.id, '--json');
    expect(JSON.parse(paused.stdout)).toMatchObject({ id: schedule.id, enabled: false });
    expect((await run('schedules', 'list')).stdout).toMatch(new RegExp(`${schedule.id}.*paused`));
    expect((await run('schedules', 'resume', schedule.id)).stdout).toContain(`resumed schedule ${schedule.id}`);
    expectOneLineError(await run('schedules', 'create', 'x', '--cron', '* * * * *', '--type', 'echo', '--overlap', 'never'), '--overlap must be allow or skip');
  }, CLI_TEST_TIMEOUT_MS);

  it('webhooks: list, deliveries, redeliver', async () => {
    const token = (await callServer<{ accessToken: string }>(harness.server, null, 'POST', '/v1/auth/login', { email: 'cli-admin@example.com', password: 'cli-admin-password-1' })).body.accessToken;
    // An endpoint that cannot be reached: its deliveries fail, which is all this test needs.
    const endpoint = await callServer<{ id: string }>(harness.server, token, 'POST', '/v1/webhooks', { url: 'https://hooks.example.invalid/jobline', events: ['job.completed'] });
    expect(endpoint.status, JSON.stringify(endpoint.body)).toBe(201);
    await submitted('echo', '--wait');
    const listed = await run('webhooks', 'list');
    expect(listed.stdout).toMatch(new RegExp(`${endpoint.body.id}\\s+https://hooks.example.invalid/jobline\\s+job.completed`));

    const delivery = await until(async () => {
      const deliveries = await run('webhooks', 'deliveries', endpoint.body.id, '--json');
      return (JSON.parse(deliveries.stdout) as { id: string; eventType: string }[])[0];
    });
    expect(delivery.eventType).toBe('job.completed');
    expect((await run('webhooks', 'deliveries', endpoint.body.id)).stdout).toMatch(new RegExp(`^${delivery.id}\\s+job.completed`, 'm'));
    const redelivered = await run('webhooks', 'redeliver', endpoint.body.id, delivery.id);
    expect(redelivered.code, redelivered.stderr).toBe(0);
    expect(redelivered.stdout).toContain(`delivery ${delivery.id} queued again`);
    expectOneLineError(await run('webhooks', 'deliveries', '01a242e9-6d42-72ba-ad2e-637122dfa279'), 'JOBLINE_WEBHOOK_NOT_FOUND');
  }, CLI_TEST_TIMEOUT_MS);
});

/** Polls until `find` returns something (each poll runs the CLI, so no extra sleep is needed). */
async function until<T>(find: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = await find();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error('timed out');
  }
}
