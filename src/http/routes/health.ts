// Operations: liveness, readiness (database reachable) and Prometheus metrics. /metrics shows every
// tenant's destination ids, so INTERCHANGE_METRICS_TOKEN puts it behind a bearer token.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { AppError } from '../../errors.ts';
import { driverError } from '../../store/db.ts';
import { errors } from '../error-responses.ts';
import { RETRY_AFTER_SECONDS, toErrorBody } from '../errors.ts';

const READY_TIMEOUT_MS = 2000;

const sha256 = (text: string) => createHash('sha256').update(text).digest();

/**
 * An onRequest hook admitting only `Authorization: Bearer <token>`. Equal-length digests are
 * compared in constant time, so neither the token's length nor a guess's common prefix shows in
 * the response time.
 */
function requireMetricsToken(token: string) {
  const expected = sha256(token);
  return async (req: FastifyRequest) => {
    const given = req.headers.authorization?.match(/^Bearer\s+(\S+)\s*$/i)?.[1];
    const ok = given !== undefined && timingSafeEqual(sha256(given), expected);
    if (ok) return;
    // Never the header itself: a wrong token may be a right one for something else.
    req.log.warn(
      { reason: given === undefined ? 'no bearer token' : 'wrong token' },
      'metrics scrape refused',
    );
    throw given === undefined
      ? new AppError('unauthorized', 'a metrics token is required: Authorization: Bearer <token>', {
          headers: { 'www-authenticate': 'Bearer realm="metrics"' },
        })
      : new AppError('invalid_token', 'the metrics token is not valid', {
          headers: { 'www-authenticate': 'Bearer realm="metrics", error="invalid_token"' },
        });
  };
}

export const healthRoutes: FastifyPluginAsyncZod<{ metricsToken?: string | undefined }> = async (
  app,
  { metricsToken },
) => {
  app.get(
    '/healthz',
    {
      logLevel: 'warn',
      schema: {
        tags: ['Operations'],
        operationId: 'getHealth',
        summary: 'Liveness: the process answers',
        response: { 200: z.object({ status: z.literal('ok') }) },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      logLevel: 'warn',
      schema: {
        tags: ['Operations'],
        operationId: 'getReadiness',
        summary: 'Readiness: the database answers',
        response: { 200: z.object({ status: z.literal('ready') }), ...errors('database_unavailable') },
      },
    },
    async (req, reply) => {
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          app.store.ping(),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error('timed out')), READY_TIMEOUT_MS);
          }),
        ]);
        return { status: 'ready' as const };
      } catch (err) {
        req.log.warn({ err: driverError(err) }, 'readiness check failed');
        return reply
          .code(503)
          .header('retry-after', String(RETRY_AFTER_SECONDS))
          .send(toErrorBody('database_unavailable', 'the database is not reachable'));
      } finally {
        clearTimeout(timer);
      }
    },
  );

  app.get(
    '/metrics',
    {
      logLevel: 'warn',
      ...(metricsToken ? { onRequest: requireMetricsToken(metricsToken) } : {}),
      schema: {
        tags: ['Operations'],
        operationId: 'getMetrics',
        summary: 'Prometheus metrics',
        description:
          'Prometheus text format. Gauges are labelled with destination installation ids of every ' +
          'organization: with `INTERCHANGE_METRICS_TOKEN` set, this requires ' +
          '`Authorization: Bearer <that token>` (401 `unauthorized` without one, `invalid_token` for ' +
          'a wrong one); unset, it is open and belongs on the internal network only.',
        security: metricsToken ? [{ metricsToken: [] }] : [],
        response: {
          200: {
            description: 'Prometheus text exposition format',
            content: { 'text/plain': { schema: z.string() } },
          },
          ...(metricsToken ? errors('unauthorized', 'invalid_token') : {}),
        },
      },
    },
    async (_req, reply) => {
      // A string under a text content type is sent as it is, not through the JSON serializer.
      reply.header('content-type', app.metrics.registry.contentType);
      return app.metrics.registry.metrics();
    },
  );
};
