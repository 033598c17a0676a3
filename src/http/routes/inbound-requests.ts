// Inbound requests: every verified webhook an installation received, as it came (headers without
// credentials and signatures, size, raw body while kept) and what became of it: accepted, a duplicate, or
// rejected with the error code it was answered with. For debugging a provider's deliveries.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { type InboundRequest, STATUSES } from '../../ingest/requests.ts';
import { organizationOf } from '../auth.ts';
import { AUTHENTICATED, errors, IN_ORGANIZATION, PAGE, PATH } from '../error-responses.ts';
import { bearer, idParams, instant, iso, listOf, listQuery, presentPage } from '../schemas.ts';

const tags = ['Inbound requests'];

const inboundRequestSchema = z
  .object({
    id: z.string(),
    installation_id: z.string().nullable(),
    received_at: z.string(),
    method: z.string(),
    path: z.string(),
    headers: z
      .record(z.string(), z.string())
      .describe(
        'as received, without credentials (authorization, cookies) and signatures (x-shopify-hmac-sha256, stripe-signature …)',
      ),
    body_size: z.number().int(),
    body_kept: z
      .boolean()
      .describe(
        'false for a duplicate (the first delivery of its key keeps the body) or after a privacy redaction',
      ),
    status: z.enum(STATUSES),
    error_code: z.string().nullable().describe('for a rejected request: the code it was answered with'),
    dedupe_key: z
      .string()
      .nullable()
      .describe(
        "the key the hub de-duplicates on: the provider's signed event id (Stripe, HubSpot), or what the webhook says (Shopify, WooCommerce: topic, resource, and a digest of its data)",
      ),
    event_count: z.number().int().describe('canonical events this request made'),
  })
  .meta({ id: 'InboundRequest' });

const present = (r: InboundRequest) => ({
  id: r.id,
  installation_id: r.installationId,
  received_at: iso(r.receivedAt),
  method: r.method,
  path: r.path,
  headers: r.headers,
  body_size: r.bodySize,
  body_kept: r.bodyKept,
  status: r.status,
  error_code: r.errorCode,
  dedupe_key: r.dedupeKey,
  event_count: r.eventCount,
});

export const inboundRequestRoutes: FastifyPluginAsyncZod = async (app) => {
  const service = app.services.inboundRequests;

  app.get(
    '/v1/installations/:id/requests',
    {
      config: { scope: 'events:read' },
      schema: {
        tags,
        operationId: 'listInboundRequests',
        summary: "List an installation's inbound requests",
        description:
          'Every webhook that passed verification, oldest first: accepted, duplicate, or rejected (malformed, ' +
          'no topic, a body that is not what its topic says) with its error code. Requests refused ' +
          'before verification (a bad signature) are not stored.',
        security: bearer,
        params: idParams,
        querystring: listQuery.extend({
          status: z.enum(STATUSES).optional(),
          since: instant.optional().describe('received at or after'),
        }),
        response: {
          200: listOf(inboundRequestSchema),
          ...errors(AUTHENTICATED, IN_ORGANIZATION, PATH, PAGE, 'installation_not_found'),
        },
      },
    },
    async (req) => {
      const organizationId = organizationOf(req);
      // The installation is the caller's (404 otherwise), whatever its status.
      await app.services.installations.get(organizationId, req.params.id);
      const { since, ...query } = req.query;
      const page = await service.list(organizationId, req.params.id, {
        ...query,
        since: since === undefined ? undefined : new Date(since),
      });
      return presentPage(page, present);
    },
  );

  app.get(
    '/v1/inbound-requests/:id',
    {
      config: { scope: 'events:read' },
      schema: {
        tags,
        operationId: 'getInboundRequest',
        summary: 'Get an inbound request',
        security: bearer,
        params: idParams,
        response: {
          200: inboundRequestSchema,
          ...errors(AUTHENTICATED, IN_ORGANIZATION, PATH, 'inbound_request_not_found'),
        },
      },
    },
    async (req) => present(await service.get(organizationOf(req), req.params.id)),
  );

  app.get(
    '/v1/inbound-requests/:id/body',
    {
      config: { scope: 'events:read' },
      schema: {
        tags,
        operationId: 'getInboundRequestBody',
        summary: "An inbound request's raw body, byte for byte",
        description:
          'As the provider sent it (the bytes its signature covers), as `application/octet-stream`; the ' +
          "`x-original-content-type` header gives the request's own. 410 `request_body_gone` for a duplicate " +
          '(the first delivery of its key keeps the body) or after a privacy redaction.',
        security: bearer,
        params: idParams,
        response: {
          200: {
            description: 'the raw body',
            content: { 'application/octet-stream': { schema: z.string() } },
          },
          ...errors(AUTHENTICATED, IN_ORGANIZATION, PATH, 'inbound_request_not_found', 'request_body_gone'),
        },
      },
    },
    async (req, reply) => {
      const { body, contentType } = await service.body(organizationOf(req), req.params.id);
      // Never served under the provider's type: a body is data to download, not a page to render.
      reply.header('content-type', 'application/octet-stream');
      reply.header('x-content-type-options', 'nosniff');
      reply.header('content-disposition', `attachment; filename="${req.params.id}.body"`);
      if (contentType) reply.header('x-original-content-type', contentType);
      // Bytes: Fastify sends a Buffer as it is, past the serializer. The 200 schema documents a
      // binary string, which is what the type provider then expects here.
      await reply.send(body as unknown as string);
    },
  );
};
