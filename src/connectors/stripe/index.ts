// Stripe (source): customers, invoices, payments and refunds from Stripe webhook events, verified
// with the official SDK; other event types are kept as raw provider events. One installation per
// webhook endpoint; its whsec_ secret signs every event.
import { z } from 'zod';
import {
  defineConnector,
  type EventDraft,
  type InboundRequest,
  parseExactJson,
  parseJson,
  parsePayload,
  rawEvent,
} from '../sdk.ts';
import { normalizeStripeEvent, STRIPE_EVENT_TYPES } from './normalize.ts';
import { eventSchema, type StripeEvent } from './schemas.ts';
import { STRIPE_TOPIC_TYPES } from './topics.ts';
import { verifyStripeSignature } from './verify.ts';

function parseStripeEvent(req: InboundRequest): StripeEvent {
  return parsePayload(eventSchema, parseJson(req), 'Stripe event');
}

/**
 * An event type without a canonical one (checkout.session.completed): a raw provider event whose
 * data is the whole Stripe event as sent, ids exact, about `<object>/<id>` of its data.object.
 */
function stripeRawEvent(req: InboundRequest, event: StripeEvent): EventDraft {
  const object = event.data.object as { object?: unknown; id?: unknown } | null;
  const subject =
    typeof object?.object === 'string' && typeof object.id === 'string'
      ? `${object.object}/${object.id}`
      : undefined;
  return rawEvent('stripe', event.type, parseExactJson(req.rawBody), {
    subject,
    time: new Date(event.created * 1000).toISOString(),
  });
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
    topics: STRIPE_TOPIC_TYPES,
    verify: (req, ctx) => verifyStripeSignature(req, ctx.secrets.webhookSecret),
    parse: parseStripeEvent,
    // Stripe retries an event with the same id (evt_...), for up to three days.
    dedupeKey: (_req, event) => event.id,
    partitionKey: (_req, event, ctx) =>
      event.account ?? ctx.config.accountId ?? `stripe:${ctx.installationId}`,
    // A Connect platform's endpoint receives its connected accounts' events, each naming its own.
    account: (_req, event, ctx) => event.account ?? ctx.config.accountId ?? ctx.installationId,
    normalize: (req, event, ctx) =>
      STRIPE_EVENT_TYPES.includes(event.type)
        ? normalizeStripeEvent(event, ctx.installationId)
        : [stripeRawEvent(req, event)],
  },
});
