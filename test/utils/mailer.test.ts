import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

/** A real SMTP receiver on loopback: the far side of the mail Jobline sends. */
describe('password-reset mail over SMTP', () => {
  const received: { from: string; to: string[]; data: string }[] = [];
  const smtp = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    onData(stream, session, callback) {
      let data = '';
      stream.on('data', (chunk: Buffer) => (data += chunk.toString()));
      stream.on('end', () => {
        received.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((rcpt) => rcpt.address),
          data,
        });
        callback();
      });
    },
  });
  let server: TestRuntime;

  beforeAll(async () => {
    await new Promise<void>((resolve) => smtp.listen(0, '127.0.0.1', resolve));
    const { port } = smtp.server.address() as AddressInfo;
    server = await startTestRuntime({
      env: {
        JOBLINE_SMTP_URL: `smtp://127.0.0.1:${port}?ignoreTLS=true`,
        JOBLINE_MAIL_FROM: 'Jobline <noreply@example.com>',
        JOBLINE_PUBLIC_URL: 'https://jobs.example.com/',
      },
    });
  });
  afterAll(async () => {
    await server.close();
    await new Promise<void>((resolve) => smtp.close(() => resolve()));
  });

  it('delivers the reset token, which then works', async () => {
    await server.createUser('mailme@example.com', 'old-password-1');
    const response = await server.request({ method: 'POST', url: '/v1/auth/password/forgot', body: { email: 'mailme@example.com' } });
    expect(response.statusCode).toBe(202);
    // The mail goes out after the request is answered: poll, with a deadline a loaded machine cannot reach.
    for (const deadline = Date.now() + 10_000; received.length === 0 && Date.now() < deadline; ) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(received).toHaveLength(1);
    const mail = received[0]!;
    expect(mail.from).toBe('noreply@example.com');
    expect(mail.to).toEqual(['mailme@example.com']);
    const unfolded = mail.data.replace(/=\r?\n/g, '').replace(/=3D/g, '=');
    expect(unfolded).toContain('https://jobs.example.com/reset-password?token=');
    const token = /token=([A-Za-z0-9_-]+)/.exec(unfolded)?.[1];
    expect(token).toBeDefined();
    // The mail went over SMTP, not into the log.
    expect(server.logs.some((line) => 'mail' in line)).toBe(false);
    const reset = await server.request({ method: 'POST', url: '/v1/auth/password/reset', body: { token, password: 'new-password-1' } });
    expect(reset.statusCode).toBe(204);
    await server.login('mailme@example.com', 'new-password-1');
  });
});
