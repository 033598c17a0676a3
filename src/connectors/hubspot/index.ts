// HubSpot (CRM source): contact creations, property changes and deletions from a HubSpot app's
// webhook subscriptions, verified with signature v3. A HubSpot app has one target URL for every
// portal that installed it: pointed at /hooks/hubspot, requests are routed by their portalId.
import { z } from 'zod';
import { defineConnector, type InboundRequest, parseJson, parsePayload } from '../sdk.ts';
import { hubspotDedupeKey, normalizeHubSpotBatch } from './normalize.ts';
import { type HubSpotBatch, hubspotBatchSchema } from './schemas.ts';
import { verifyHubSpotSignature } from './verify.ts';

function parseBatch(req: InboundRequest): HubSpotBatch {
  return parsePayload(hubspotBatchSchema, parseJson(req), 'HubSpot webhook batch');
}

/** The portal a (not yet verified) request is for, when all its events agree; only used to route. */
function portalOf(req: InboundRequest): string | undefined {
  let body: unknown;
  try {
    body = JSON.parse(req.rawBody.toString('utf8'));
  } catch {
    return undefined;
  }
  const batch = hubspotBatchSchema.safeParse(body);
  if (!batch.success) return undefined;
  const portals = new Set(batch.data.map((e) => String(e.portalId)));
  return portals.size === 1 ? [...portals][0] : undefined;
}

export default defineConnector({
  id: 'hubspot',
  name: 'HubSpot',
  category: 'crm',
  description: 'Receives HubSpot contact webhooks (creation, property change, deletion) as customer events.',
  config: z.object({
    portalId: z
      .string()
      .optional()
      .describe('HubSpot account (portal) id, to route webhooks sent to /hooks/hubspot'),
    appId: z.string().optional().describe('HubSpot app id'),
  }),
  secrets: z.object({
    clientSecret: z.string().min(1).describe("The HubSpot app's client secret, which signs its webhooks"),
  }),
  routeKeyOf: (config) => config.portalId,
  inbound: {
    routeKey: portalOf,
    verify: (req, ctx) => verifyHubSpotSignature(req, ctx.secrets.clientSecret),
    parse: parseBatch,
    dedupeKey: (_req, batch) => hubspotDedupeKey(batch),
    partitionKey: (_req, batch) => `hubspot:${batch[0]?.portalId ?? 'unknown'}`,
    account: (_req, batch, ctx) => String(batch[0]?.portalId ?? ctx.config.portalId ?? ctx.installationId),
    normalize: (_req, batch, ctx) => normalizeHubSpotBatch(batch, ctx.installationId),
  },
});
