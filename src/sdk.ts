/**
 * What handler modules import from the `jobline` package: the errors that steer retries and
 * the handler types. (Handlers may also throw any Error whose `name` is one of these.)
 */
export { NonRetriableError, RetryAfterError } from './engine/errors.js';
export type { HandlerContext, HandlerJob, JobHandler } from './workers/types.js';
