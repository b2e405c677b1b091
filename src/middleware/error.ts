import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

/** Errors the router raises before any route runs (a malformed URL, an overlong parameter). */
export function frameworkErrorHandler(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const status = error.statusCode && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 400;
  const code = error.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'JOBLINE_URL_TOO_LONG' : 'JOBLINE_BAD_URL';
  sendProblem(request, reply, new AppError(code, status, error.message));
}
import { hasZodFastifySchemaValidationErrors, isResponseSerializationError } from 'fastify-type-provider-zod';
import { AppError, errorCode, errors, statusTitle, toError, type FieldError } from '../utils/errors.js';

/**
 * Every error leaves the server as RFC 9457 application/problem+json with a stable `code`,
 * Fastify's own (404, malformed JSON, body limit, media type, validation) included. Details of
 * a 5xx are logged, never sent.
 */
export function registerErrorHandling(app: FastifyInstance, options: { bodyLimit: number }): void {
  app.setNotFoundHandler((request, reply) => {
    sendProblem(request, reply, errors.routeNotFound(request.method, request.url.split('?')[0] ?? request.url));
  });

  app.setErrorHandler((thrown: unknown, request, reply) => {
    // A route may allow more than the app-wide limit (bulk submission): quote the one that applied.
    const appError = toAppError(thrown, request.routeOptions.bodyLimit ?? options.bodyLimit);
    if (appError.status >= 500) {
      request.log.error({ err: toError(thrown) }, 'request failed');
    } else {
      request.log.info({ code: appError.code, status: appError.status }, appError.message);
    }
    sendProblem(request, reply, appError);
  });
}

export function sendProblem(request: FastifyRequest, reply: FastifyReply, error: AppError): void {
  for (const [name, value] of Object.entries(error.headers ?? {})) reply.header(name, value);
  reply
    .code(error.status)
    .type('application/problem+json; charset=utf-8')
    .send(JSON.stringify(problemDocument(error, String(request.id))));
}

export function problemDocument(error: AppError, requestId: string): Record<string, unknown> {
  return {
    type: `urn:jobline:problem:${error.code}`,
    title: statusTitle(error.status),
    status: error.status,
    detail: error.message,
    code: error.code,
    instance: `urn:jobline:request:${requestId}`,
    requestId,
    ...(error.errors ? { errors: error.errors } : {}),
    ...error.extensions,
  };
}

/** The one translation from whatever was thrown to an AppError. */
export function toAppError(thrown: unknown, bodyLimit: number): AppError {
  if (thrown instanceof AppError) return thrown;
  if (hasZodFastifySchemaValidationErrors(thrown)) {
    const context = (thrown as { validationContext?: string }).validationContext ?? 'body';
    const fieldErrors: FieldError[] = thrown.validation.flatMap((issue) => {
      const path = [context, ...issue.instancePath.split('/').filter(Boolean)];
      // An unknown field is reported on its parent object; name the field itself.
      const keys = (issue.params as { keys?: unknown }).keys;
      if (issue.keyword === 'unrecognized_keys' && Array.isArray(keys)) {
        return keys.map((key) => ({ path: [...path, String(key)].join('.'), message: 'is not a known field' }));
      }
      return [{ path: path.join('.'), message: issue.message ?? 'is invalid' }];
    });
    const summary = fieldErrors.map((fieldError) => `${fieldError.path}: ${fieldError.message}`).join('; ');
    return errors.validation(`The request is invalid: ${summary}`, fieldErrors);
  }
  if (isResponseSerializationError(thrown)) return errors.internal(thrown);

  const fastifyError = thrown as Partial<FastifyError>;
  switch (errorCode(thrown)) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return errors.malformedJson(fastifyError.message ?? 'The body is not valid JSON.');
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return errors.payloadTooLarge(bodyLimit);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return errors.unsupportedMediaType(
        /'(.*)'/.exec(fastifyError.message ?? '')?.[1] ?? 'unknown',
      );
    default:
      break;
  }
  // JSON.parse failures surface as a SyntaxError with statusCode 400.
  if (thrown instanceof SyntaxError && fastifyError.statusCode === 400) {
    return errors.malformedJson(`The body is not valid JSON: ${thrown.message}`);
  }
  const status = fastifyError.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return new AppError(`JOBLINE_HTTP_${status}`, status, fastifyError.message ?? statusTitle(status));
  }
  const unreachable = unreachableDependency(thrown);
  if (unreachable) return errors.notReady({ [unreachable]: 'unreachable' });
  return errors.internal(thrown);
}

const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', '57P01', '57P03', '08000', '08001', '08003', '08006']);

/**
 * A request that failed because Redis or the database cannot be reached answers 503 (try again),
 * not 500: ioredis gives up with MaxRetriesPerRequestError, "Connection is closed" or a command
 * timeout; pg with a connection error code or a pool timeout.
 */
function unreachableDependency(thrown: unknown): 'redis' | 'database' | null {
  const error = toError(thrown);
  if (error.name === 'MaxRetriesPerRequestError' || /^(Connection is closed|Command timed out|Stream isn't writeable)/.test(error.message)) return 'redis';
  const code = errorCode(error);
  if ((code !== undefined && UNREACHABLE_CODES.has(code)) || /timeout exceeded when trying to connect|Connection terminated/.test(error.message)) return 'database';
  return null;
}
