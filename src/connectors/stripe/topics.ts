// The Stripe event types this connector turns into canonical events, and into which (published by
// GET /v1/connectors). normalize.ts's builders decide; index.test.ts checks that this table names
// exactly their event types. Any other type is kept as a raw provider event (stripe.<type>).
import type { TopicMapping } from '../sdk.ts';

export const STRIPE_TOPIC_TYPES: readonly TopicMapping[] = [
  { topic: 'customer.created', types: ['customer.created'] },
  { topic: 'customer.updated', types: ['customer.updated'] },
  { topic: 'customer.deleted', types: ['customer.deleted'] },
  { topic: 'invoice.created', types: ['invoice.created'] },
  { topic: 'invoice.finalized', types: ['invoice.updated'] },
  { topic: 'invoice.paid', types: ['invoice.paid'] },
  { topic: 'invoice.payment_failed', types: ['invoice.payment_failed'] },
  { topic: 'payment_intent.succeeded', types: ['payment.succeeded'] },
  { topic: 'payment_intent.payment_failed', types: ['payment.failed'] },
  { topic: 'charge.refunded', types: ['refund.created'] },
  { topic: 'refund.created', types: ['refund.created'] },
];
