// The one place errors become responses: `{ error: { code, message, details? } }` with the status
// from src/errors.ts (or RFC 6749's shape on the token endpoint). Anything unexpected is a 500
// `internal_error`, logged with its stack and answered without internals.
import type { Socket } from 'node:net';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { AppError, ERROR_STATUS, type ErrorCode, OAuthError } from '../errors.ts';
import { driverError, isDatabaseUnavailable } from '../store/db.ts';

interface ErrorBody {
  error: { code: ErrorCode; message: string; details?: unknown };
}

/** Fastify's own client errors, by Fastify error code, to our stable codes. */
const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'payload_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'bad_request',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid_json',
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid_json',
};

/** Seconds a client is told to wait after a 503 (`Retry-After`). */
export const RETRY_AFTER_SECONDS = 5;

export function toErrorBody(code: ErrorCode, message: string, details?: unknown): ErrorBody {
  return { error: details === undefined ? { code, message } : { code, message, details } };
}

/**
 * Requests Node's HTTP server refuses before any route sees them (headers over its 16 KiB limit,
 * malformed HTTP, a request too slow to arrive) get the API's error shape too, on the raw socket.
 */
export function clientErrorHandler(err: NodeJS.ErrnoException, socket: Socket): void {
  // A reset connection is gone already: nothing to answer.
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [code, status, message]: [ErrorCode, string, string] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? ['headers_too_large', '431 Request Header Fields Too Large', 'the request headers exceed 16 KiB']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? ['request_timeout', '408 Request Timeout', 'the request did not arrive in time']
        : ['bad_request', '400 Bad Request', 'the request is not valid HTTP'];
  const body = JSON.stringify(toErrorBody(code, message));
  // As Node's own handler: no answer once a response to this connection's request has begun.
  const response = (socket as Socket & { _httpMessage?: { headersSent: boolean } | null })._httpMessage;
  if (socket.writable && !response?.headersSent) {
    socket.write(
      `HTTP/1.1 ${status}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}

export function installErrorHandling(app: FastifyInstance): void {
  app.setNotFoundHandler((req: FastifyRequest, reply: FastifyReply) => {
    reply
      .code(404)
      .send(toErrorBody('route_not_found', `no route for ${req.method} ${req.url.split('?')[0]}`));
  });

  app.setErrorHandler((err: FastifyError, req, reply) => {
    if (err instanceof OAuthError) {
      reply.headers(err.headers);
      reply.header('cache-control', 'no-store');
      if (err.code === 'invalid_client') reply.header('www-authenticate', 'Basic realm="interchange"');
      return reply.code(err.status).send({ error: err.code, error_description: err.message });
    }
    if (err instanceof AppError) {
      reply.headers(err.headers);
      if (err.status === 503 && !reply.hasHeader('retry-after'))
        reply.header('retry-after', String(RETRY_AFTER_SECONDS));
      if (err.status === 401 && !reply.hasHeader('www-authenticate'))
        reply.header('www-authenticate', `Bearer error="invalid_token"`);
      return reply.code(err.status).send(toErrorBody(err.code, err.message, err.details));
    }
    if (hasZodFastifySchemaValidationErrors(err)) {
      const details = err.validation.map((v) => ({
        path: [err.validationContext, ...String(v.instancePath).split('/').filter(Boolean)].join('.'),
        message: v.message,
      }));
      const first = details[0];
      return reply
        .code(400)
        .send(
          toErrorBody(
            'validation_failed',
            first ? `${first.path}: ${first.message}` : 'invalid request',
            details,
          ),
        );
    }
    const mapped = err.code ? FASTIFY_CODES[err.code] : undefined;
    if (mapped) return reply.code(ERROR_STATUS[mapped]).send(toErrorBody(mapped, err.message));
    if (err instanceof SyntaxError || (err.statusCode === 400 && /JSON/i.test(err.message))) {
      return reply.code(400).send(toErrorBody('invalid_json', 'request body is not valid JSON'));
    }
    if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
      const code: ErrorCode =
        err.statusCode === 413
          ? 'payload_too_large'
          : err.statusCode === 415
            ? 'unsupported_media_type'
            : 'bad_request';
      return reply.code(ERROR_STATUS[code]).send(toErrorBody(code, err.message));
    }
    // Drizzle wraps the driver's error: isDatabaseUnavailable reads the whole cause chain.
    if (isDatabaseUnavailable(err)) {
      req.log.error({ err: driverError(err) }, 'database unavailable');
      reply.header('retry-after', String(RETRY_AFTER_SECONDS));
      return reply
        .code(503)
        .send(toErrorBody('database_unavailable', 'the database is unavailable; try again shortly'));
    }
    // The driver's error, not Drizzle's wrapper: its message carries the query's parameters.
    req.log.error({ err: driverError(err) }, 'unhandled error');
    return reply.code(500).send(toErrorBody('internal_error', 'internal error'));
  });
}
