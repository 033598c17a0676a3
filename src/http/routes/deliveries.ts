// /v1/deliveries: each event's delivery to each destination, with every attempt; retry one.
// GET /v1/stats: per-destination counts, success rate, latency and queue depth.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { AttemptRow, DeliveryRow, DestinationStats } from '../../delivery/deliveries.ts';
import { organizationOf } from '../auth.ts';
import { AUTHENTICATED, errors, IN_ORGANIZATION, PAGE, PATH, READS_BODY } from '../error-responses.ts';
import { bearer, idParams, iso, listOf, listQuery, presentPage, timestamp } from '../schemas.ts';

const STATUSES = ['pending', 'delivering', 'succeeded', 'failed', 'dead'] as const;

const deliverySchema = z
  .object({
    id: z.string(),
    event_id: z.string(),
    destination_id: z.string(),
    status: z
      .enum(STATUSES)
      .describe('pending → delivering → succeeded | failed (will retry at next_attempt_at) | dead'),
    attempts: z.number().int(),
    next_attempt_at: timestamp.nullable(),
    last_status_code: z.number().int().nullable(),
    last_error: z.string().nullable(),
    created_at: timestamp,
    updated_at: timestamp,
    delivered_at: timestamp.nullable(),
  })
  .meta({ id: 'Delivery' });

const attemptSchema = z
  .object({
    attempt: z.number().int(),
    started_at: timestamp,
    duration_ms: z.number().int(),
    outcome: z.enum(['succeeded', 'retry', 'failed']),
    status_code: z.number().int().nullable(),
    error: z.string().nullable(),
    response: z.string().nullable().describe('the first 4 KiB of the response body'),
  })
  .meta({ id: 'DeliveryAttempt' });

const statsSchema = z
  .object({
    destination_id: z.string(),
    connector: z.string(),
    status: z.string(),
    counts: z.record(z.enum(STATUSES), z.number().int()),
    success_rate: z.number().nullable().describe('succeeded ÷ (succeeded + dead) over the last 24 hours'),
    latency_p50_ms: z.number().nullable().describe('event received → delivered, last 24 hours, to 0.01 ms'),
    latency_p99_ms: z.number().nullable().describe('as latency_p50_ms'),
    queue_depth: z.number().int().describe('pending, delivering and waiting to retry'),
    oldest_pending_age_seconds: z.number().nullable().describe('to the millisecond'),
  })
  .meta({ id: 'DestinationStats' });

function present(d: DeliveryRow) {
  return {
    id: d.id,
    event_id: d.eventId,
    destination_id: d.installationId,
    status: d.status,
    attempts: d.attempts,
    next_attempt_at: d.status === 'pending' || d.status === 'failed' ? iso(d.nextAttemptAt) : null,
    last_status_code: d.lastStatusCode,
    last_error: d.lastError,
    created_at: iso(d.createdAt),
    updated_at: iso(d.updatedAt),
    delivered_at: d.deliveredAt ? iso(d.deliveredAt) : null,
  };
}

const presentAttempt = (a: AttemptRow) => ({
  attempt: a.attempt,
  started_at: iso(a.startedAt),
  duration_ms: a.durationMs,
  outcome: a.outcome,
  status_code: a.statusCode,
  error: a.error,
  response: a.response,
});

export const presentStats = (s: DestinationStats) => ({
  destination_id: s.destinationId,
  connector: s.connector,
  status: s.status,
  counts: s.counts,
  success_rate: s.successRate,
  latency_p50_ms: s.latencyP50Ms,
  latency_p99_ms: s.latencyP99Ms,
  queue_depth: s.queueDepth,
  oldest_pending_age_seconds: s.oldestPendingAgeSeconds,
});

const tags = ['Deliveries'];

export const deliveryRoutes: FastifyPluginAsyncZod = async (app) => {
  const service = app.services.deliveries;

  app.get(
    '/v1/deliveries',
    {
      config: { scope: 'deliveries:read' },
      schema: {
        tags,
        operationId: 'listDeliveries',
        summary: 'List deliveries',
        security: bearer,
        querystring: listQuery.extend({
          status: z.enum(STATUSES).optional(),
          destination: z.string().max(100).optional().describe('a destination installation id'),
          event: z.string().max(100).optional().describe('an event id'),
        }),
        response: { 200: listOf(deliverySchema), ...errors(AUTHENTICATED, IN_ORGANIZATION, PAGE) },
      },
    },
    async (req) => presentPage(await service.list(organizationOf(req), req.query), present),
  );

  app.get(
    '/v1/deliveries/:id',
    {
      config: { scope: 'deliveries:read' },
      schema: {
        tags,
        operationId: 'getDelivery',
        summary: 'Get a delivery with its attempts',
        security: bearer,
        params: idParams,
        response: {
          200: deliverySchema.extend({ attempts_list: z.array(attemptSchema) }),
          ...errors(AUTHENTICATED, IN_ORGANIZATION, PATH, 'delivery_not_found'),
        },
      },
    },
    async (req) => {
      const { delivery, attempts } = await service.get(organizationOf(req), req.params.id);
      return { ...present(delivery), attempts_list: attempts.map(presentAttempt) };
    },
  );

  app.post(
    '/v1/deliveries/:id/retry',
    {
      config: { scope: 'deliveries:write' },
      schema: {
        tags,
        operationId: 'retryDelivery',
        summary: 'Send a delivery again now',
        description:
          'Whatever its state (dead, failed or even succeeded); 409 while an attempt is under way.',
        security: bearer,
        params: idParams,
        response: {
          202: deliverySchema,
          ...errors(
            AUTHENTICATED,
            IN_ORGANIZATION,
            PATH,
            READS_BODY,
            'delivery_not_found',
            'delivery_in_progress',
          ),
        },
      },
    },
    async (req, reply) =>
      reply.code(202).send(present(await service.retry(organizationOf(req), req.params.id))),
  );

  app.get(
    '/v1/stats',
    {
      config: { scope: 'deliveries:read' },
      schema: {
        tags,
        operationId: 'getDeliveryStats',
        summary: 'Delivery statistics per destination',
        security: bearer,
        response: {
          200: z.object({ data: z.array(statsSchema) }),
          ...errors(AUTHENTICATED, IN_ORGANIZATION),
        },
      },
    },
    async (req) => ({ data: (await service.stats(organizationOf(req))).map(presentStats) }),
  );
};
