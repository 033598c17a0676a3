// POST /hooks/:target — inbound provider webhooks. `target` is an installation id, or a
// connector id (`/hooks/shopify`) for apps that give every account one URL: the connector then
// names the installation from the request (the shop-domain header). Public: the provider's
// signature is the authentication, checked on the raw body before anything is parsed.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { InboundRequest } from '../../connectors/sdk.ts';
import { errors, PATH } from '../error-responses.ts';

export const INBOUND_BODY_LIMIT = 1024 * 1024;

const accepted = z
  .object({
    status: z.enum(['accepted', 'duplicate', 'ignored']),
    request_id: z.string().nullable(),
    event_ids: z.array(z.string()),
  })
  .meta({ id: 'InboundResult' });

export const hookRoutes: FastifyPluginAsyncZod = async (app) => {
  // The raw bytes, whatever the content type: signatures are computed over them.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: INBOUND_BODY_LIMIT }, (_req, body, done) =>
    done(null, body),
  );

  app.post(
    '/hooks/:target',
    {
      bodyLimit: INBOUND_BODY_LIMIT,
      schema: {
        tags: ['Inbound webhooks'],
        operationId: 'receiveWebhook',
        summary: 'Receive a provider webhook',
        description:
          "Verified on the raw body with the installation's secret, de-duplicated, normalized and stored before the 200. " +
          '`target` is an installation id, or `shopify` to route by the X-Shopify-Shop-Domain header.',
        params: z.object({ target: z.string().max(100) }),
        response: {
          200: accepted,
          ...errors(
            PATH,
            'bad_request',
            'payload_malformed',
            'payload_invalid',
            'topic_unknown',
            'signature_invalid',
            'timestamp_stale',
            'secret_missing',
            'installation_not_found',
            'installation_uninstalled',
            'payload_too_large',
            'unsupported_media_type',
            'overloaded',
            'database_unavailable',
            'secret_key_unavailable',
          ),
        },
      },
    },
    async (req) => {
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(req.headers)) {
        if (value !== undefined)
          headers[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value;
      }
      const inbound: InboundRequest = {
        method: req.method,
        url: `${app.publicUrl}${req.url}`,
        headers,
        rawBody: Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0),
        receivedAt: new Date(),
      };
      const result = await app.services.ingest.receive(req.params.target, inbound);
      return { status: result.status, request_id: result.requestId, event_ids: result.eventIds };
    },
  );
};
