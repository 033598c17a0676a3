// /v1/events: the organization's canonical events. List and read them, replay one into the log,
// or send custom events from your own systems (the "API integration").
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { envelopeSchema } from '../../events/envelope.ts';
import { CUSTOM_TYPE, isEventType, KNOWN_EVENT_TYPES, SYSTEM_EVENT_TYPES } from '../../events/types.ts';
import { parseExact } from '../../exact-json.ts';
import { keptHeaders } from '../../ingest/headers.ts';
import { scanJsonText } from '../../json-text.ts';
import { MAX_JSON_DEPTH } from '../../storable.ts';
import { organizationOf, principalOf } from '../auth.ts';
import { AUTHENTICATED, errors, IN_ORGANIZATION, PAGE, PATH, READS_BODY } from '../error-responses.ts';
import { bearer, instant, iso, listOf, listQuery, withExamples } from '../schemas.ts';

const tags = ['Events'];
const typeFilter = z
  .string()
  .max(200)
  .regex(/^[a-z0-9_.]+(\.\*)?$/, 'an event type (order.created), a family (order.* or order)')
  .describe(
    'an exact type (`order.created`, `custom.cart.abandoned`); a family, `order.*` or `custom.cart.*`; or a family name without a dot, `order`, the same as `order.*` (every event type has a dot)',
  );

/** The service's pattern for `?type=`: a name without a dot is a family, as no event type lacks one. */
const typePattern = (type: string | undefined) => (type && !type.includes('.') ? `${type}.*` : type);

const requestMeta = z
  .object({
    id: z.string(),
    received_at: z.string(),
    method: z.string(),
    path: z.string(),
    headers: z.record(z.string(), z.string()),
    body_size: z.number().int(),
    status: z.string(),
  })
  .nullable()
  .meta({ id: 'InboundRequestMeta' });

const customInput = z.strictObject({
  type: z
    .string()
    .max(200)
    .refine(
      (type) => isEventType(type) && !(SYSTEM_EVENT_TYPES as readonly string[]).includes(type),
      `custom.<name> (e.g. custom.cart.abandoned), or a canonical type: ${KNOWN_EVENT_TYPES.filter((t) => !(SYSTEM_EVENT_TYPES as readonly string[]).includes(t)).join(', ')}`,
    ),
  subject: z.string().max(500).optional(),
  data: z.record(z.string(), z.unknown()),
  id: z
    .string()
    .min(1)
    .max(200)
    .optional()
    .describe(
      'your idempotency key: the same event sent again under this id answers 200 with the stored one; ' +
        'another event (type, subject, partition_key, user_id, time or data differing) answers 409 event_id_conflict',
    ),
  partition_key: z
    .string()
    .min(1)
    .max(500)
    .optional()
    .describe('ordering key; default: subject, else the organization'),
  time: instant.optional(),
  user_id: z.string().max(100).optional(),
});

const customBody = withExamples(customInput, {
  customEvent: {
    summary: 'A custom event from your own systems, with an idempotency key',
    value: {
      type: 'custom.cart.abandoned',
      id: 'cart-8812-abandoned',
      subject: 'cart_8812',
      time: '2024-05-01T10:15:30Z',
      data: { cart_id: 'cart_8812', items: 3, value: '149.90', currency: 'EUR' },
    },
  },
  canonicalEvent: {
    summary: 'A canonical event: its data must fit the type (see the Event schemas)',
    value: {
      type: 'customer.updated',
      subject: 'cus_0042',
      data: {
        customer_id: 'cus_0042',
        email: 'ada@example.com',
        first_name: 'Ada',
        last_name: 'Lovelace',
        external_ids: {},
      },
    },
  },
});

/** JSON text as-is, with a JSON content type: Fastify sends it without serializing it again. */
const JSON_TEXT = 'application/json; charset=utf-8';

export const eventRoutes: FastifyPluginAsyncZod = async (app) => {
  const service = app.services.events;

  // A body's `data` keeps its numbers as they were sent (see src/exact-json.ts): the rest of the
  // body, and every check of the usual parser (prototype keys, bad JSON), is as on other routes.
  // A body nested deeper than the API takes keeps the usual parse, for the depth check to refuse.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, text, done) => {
    parseJson(req, text as string, (err, body) => {
      if (err) return done(err);
      const exact =
        body !== null &&
        typeof body === 'object' &&
        Object.hasOwn(body, 'data') &&
        scanJsonText(text as string).maxDepth <= MAX_JSON_DEPTH;
      if (exact) (body as { data: unknown }).data = (parseExact(text as string) as { data: unknown }).data;
      done(null, body);
    });
  });

  app.get(
    '/v1/events',
    {
      config: { scope: 'events:read' },
      schema: {
        tags,
        operationId: 'listEvents',
        summary: 'List events, oldest first',
        description:
          'In the order they were stored (by id); with a time range (`since`, `until`), by their `time`, then id. `next_cursor` continues the same listing.',
        security: bearer,
        querystring: listQuery.extend({
          type: typeFilter.optional(),
          installation_id: z.string().max(100).optional(),
          subject: z
            .string()
            .max(500)
            .optional()
            .describe('events about this subject, exactly (`orders/1001`)'),
          since: instant
            .optional()
            .describe(
              'events whose `time` is at or after this instant; with `since` or `until` the list is ordered by `time`, then id',
            ),
          until: instant.optional().describe('events whose `time` is before this instant'),
        }),
        response: { 200: listOf(envelopeSchema), ...errors(AUTHENTICATED, IN_ORGANIZATION, PAGE) },
      },
    },
    async (req, reply) => {
      const q = req.query;
      const page = await service.list(organizationOf(req), {
        limit: q.limit,
        cursor: q.cursor,
        type: typePattern(q.type),
        installationId: q.installation_id,
        subject: q.subject,
        since: q.since ? new Date(q.since) : undefined,
        until: q.until ? new Date(q.until) : undefined,
      });
      // JSON text, sent as it is: each event's stored data is spliced in, not parsed and serialized
      // again (the schema above still documents the body; the page is built from stored columns).
      // Fastify sends a string with a JSON content type unserialized; its type is the schema's.
      return reply.type('application/json; charset=utf-8').send(page as never);
    },
  );

  app.get(
    '/v1/events/:id',
    {
      config: { scope: 'events:read' },
      schema: {
        tags,
        operationId: 'getEvent',
        summary: 'Get an event and the metadata of the request it came in',
        security: bearer,
        params: z.object({ id: z.string().max(100) }),
        response: {
          200: envelopeSchema.extend({ request: requestMeta }),
          ...errors(AUTHENTICATED, IN_ORGANIZATION, PATH, 'event_not_found'),
        },
      },
    },
    async (req, reply) => {
      const { envelopeJson, request } = await service.get(organizationOf(req), req.params.id);
      const meta = request && {
        id: request.id,
        received_at: iso(request.receivedAt),
        method: request.method,
        path: request.path,
        headers: keptHeaders(request.headers),
        body_size: request.bodySize,
        status: request.status,
      };
      // The stored data spliced in as text, its numbers as they were sent.
      const body = `${envelopeJson.slice(0, -1)},"request":${JSON.stringify(meta)}}`;
      return reply.type(JSON_TEXT).send(body as never);
    },
  );

  app.post(
    '/v1/events/:id/replay',
    {
      config: { scope: 'events:write' },
      schema: {
        tags,
        operationId: 'replayEvent',
        summary: 'Append the event to its topic again, for every consumer to process anew',
        security: bearer,
        params: z.object({ id: z.string().max(100) }),
        response: {
          202: z.object({
            event_id: z.string(),
            topic: z.string(),
            partition: z.number(),
            offset: z.number(),
          }),
          ...errors(AUTHENTICATED, IN_ORGANIZATION, PATH, READS_BODY, 'event_not_found'),
        },
      },
    },
    async (req, reply) => {
      const appended = await service.replay(organizationOf(req), req.params.id);
      return reply.code(202).send({
        event_id: req.params.id,
        topic: appended?.topic ?? '',
        partition: appended?.partition ?? 0,
        offset: appended?.offset ?? 0,
      });
    },
  );

  app.post(
    '/v1/events',
    {
      config: { scope: 'events:write' },
      schema: {
        tags,
        operationId: 'sendEvent',
        summary: 'Send an event from your own systems',
        description:
          `Types: \`custom.*\` (${CUSTOM_TYPE.source}) with any object as data, or a canonical type whose data must fit its schema. ` +
          'Custom data is stored as sent, numbers with the digits they were sent with (`1e400`, 30-digit integers): ' +
          'the API and webhook endpoints get them back unchanged. Canonical data takes only numbers a double holds exactly; ' +
          'any other is refused with `number_not_exact`.',
        security: bearer,
        body: customBody,
        response: {
          201: envelopeSchema,
          200: envelopeSchema,
          ...errors(
            AUTHENTICATED,
            IN_ORGANIZATION,
            READS_BODY,
            'number_not_exact',
            'user_not_found',
            'event_id_conflict',
            'conflict',
            'overloaded',
          ),
        },
      },
    },
    async (req, reply) => {
      const organizationId = organizationOf(req);
      const b = req.body;
      if (b.user_id) await app.services.users.get(organizationId, b.user_id);
      const { created, json } = await service.createCustom(organizationId, principalOf(req).clientId, {
        type: b.type,
        subject: b.subject,
        data: b.data,
        id: b.id,
        partitionKey: b.partition_key,
        time: b.time,
        userId: b.user_id,
      });
      return reply
        .code(created ? 201 : 200)
        .type(JSON_TEXT)
        .send(json as never);
    },
  );
};
