// Stripe (source): customers, invoices, payments and refunds from Stripe webhook events, verified
// with the official SDK. One installation per webhook endpoint; its whsec_ secret signs every event.
import { z } from 'zod';
import { defineConnector, type InboundRequest, parseJson, parsePayload } from '../sdk.ts';
import { normalizeStripeEvent } from './normalize.ts';
import { eventSchema, type StripeEvent } from './schemas.ts';
import { verifyStripeSignature } from './verify.ts';

function parseStripeEvent(req: InboundRequest): StripeEvent {
  return parsePayload(eventSchema, parseJson(req), 'Stripe event');
}

export default defineConnector({
  id: 'stripe',
  name: 'Stripe',
  category: 'payments',
  description: 'Receives Stripe webhook events: customers, invoices, payment intents and refunds.',
  config: z.object({
    accountId: z
      .string()
      .optional()
      .describe('Stripe account id (acct_...) used as the ordering key when events do not name one'),
  }),
  secrets: z.object({
    webhookSecret: z.string().startsWith('whsec_').describe("The webhook endpoint's signing secret"),
    apiKey: z.string().optional().describe('Secret or restricted API key, for API calls'),
  }),
  inbound: {
    verify: (req, ctx) => verifyStripeSignature(req, ctx.secrets.webhookSecret),
    parse: parseStripeEvent,
    // Stripe retries an event with the same id (evt_...), for up to three days.
    dedupeKey: (_req, event) => event.id,
    partitionKey: (_req, event, ctx) =>
      event.account ?? ctx.config.accountId ?? `stripe:${ctx.installationId}`,
    // A Connect platform's endpoint receives its connected accounts' events, each naming its own.
    account: (_req, event, ctx) => event.account ?? ctx.config.accountId ?? ctx.installationId,
    normalize: (_req, event, ctx) => normalizeStripeEvent(event, ctx.installationId),
  },
});
