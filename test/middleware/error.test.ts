import { describe, expect, it } from 'vitest';
import { toAppError } from '../../src/middleware/error.js';

describe('toAppError for unreachable dependencies', () => {
  it.each([
    ['redis', Object.assign(new Error('Reached the max retries per request limit (which is 1).'), { name: 'MaxRetriesPerRequestError' })],
    ['redis', new Error('Connection is closed.')],
    ['redis', new Error('Command timed out')],
    ['database', Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })],
    ['database', Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' })],
    ['database', new Error('timeout exceeded when trying to connect')],
  ])('answers 503 JOBLINE_NOT_READY naming %s', (dependency, thrown) => {
    const error = toAppError(thrown, 1024);
    expect(error).toMatchObject({ status: 503, code: 'JOBLINE_NOT_READY', extensions: { checks: { [dependency]: 'unreachable' } } });
  });

  it('keeps other failures a 500 whose details stay hidden', () => {
    expect(toAppError(new Error('something broke'), 1024)).toMatchObject({ status: 500, code: 'JOBLINE_INTERNAL' });
  });
});
