// Stripe events → canonical events. Amounts arrive in Stripe's minor units (1999 = $19.99,
// 500 = ¥500, 50000 = 500 kr) and become exact decimal strings (money.ts); currencies are upper-cased.
import { fromMinorUnits } from '../../events/money.ts';
import type { Address, Customer, Invoice, Payment, Refund } from '../../events/records.ts';
import { ConnectorError, type EventDraft, parsePayload } from '../sdk.ts';
import { STRIPE_MINOR_UNITS } from './currencies.ts';
import {
  chargeRefundedBeforeSchema,
  chargeSchema,
  customerSchema,
  invoiceSchema,
  paymentIntentSchema,
  refId,
  refundSchema,
  requestId,
  type StripeCharge,
  type StripeCustomer,
  type StripeEvent,
} from './schemas.ts';

/** The canonical event of a Stripe event, or undefined when it reports no change to record. */
type Builder = (event: StripeEvent, installationId: string) => EventDraft | undefined;

/** A Stripe amount, read with Stripe's minor units (not ISO's: they differ for ISK and MGA). */
const money = (minor: number, currency: string): string =>
  fromMinorUnits(minor, currency, STRIPE_MINOR_UNITS);

const iso = (seconds: number | null | undefined): string | null =>
  seconds == null ? null : new Date(seconds * 1000).toISOString();

function address(a: StripeCustomer['address']): Address | null {
  if (!a) return null;
  return {
    address1: a.line1 ?? null,
    address2: a.line2 ?? null,
    city: a.city ?? null,
    region: a.state ?? null,
    postal_code: a.postal_code ?? null,
    country_code: a.country ?? null,
  };
}

/**
 * Stripe keeps one `name`; the canonical record has first and last. The first word is the first
 * name and the rest the last ("Mary Ann Smith" → "Mary" / "Ann Smith"), a guess for display only.
 */
function splitName(name: string | null | undefined): { first_name: string | null; last_name: string | null } {
  const words = (name ?? '').trim().split(/\s+/).filter(Boolean);
  const [first, ...rest] = words;
  return { first_name: first ?? null, last_name: rest.length > 0 ? rest.join(' ') : null };
}

function customerEvent(type: 'customer.created' | 'customer.updated' | 'customer.deleted'): Builder {
  return (event, installationId) => {
    const c = parsePayload(customerSchema, event.data.object, `${event.type}: data.object`);
    const external_ids = { [installationId]: c.id };
    const base = {
      subject: `customers/${c.id}`,
      time: iso(event.created) ?? undefined,
      customerExternalId: c.id,
    };
    if (type === 'customer.deleted') return { ...base, type, data: { customer_id: c.id, external_ids } };
    const data: Customer = {
      customer_id: c.id,
      email: c.email ?? null,
      ...splitName(c.name),
      phone: c.phone ?? null,
      address: address(c.address),
      created_at: iso(c.created),
      external_ids,
    };
    return { ...base, type, data };
  };
}

function invoiceEvent(
  type: 'invoice.created' | 'invoice.updated' | 'invoice.paid' | 'invoice.payment_failed',
): Builder {
  return (event, installationId) => {
    const inv = parsePayload(invoiceSchema, event.data.object, `${event.type}: data.object`);
    const cur = inv.currency.toUpperCase();
    const customerId = refId(inv.customer);
    const data: Invoice = {
      invoice_id: inv.id,
      number: inv.number ?? null,
      customer_id: customerId,
      status: inv.status ?? null,
      total: money(inv.total, cur),
      amount_due: inv.amount_due == null ? null : money(inv.amount_due, cur),
      amount_paid: inv.amount_paid == null ? null : money(inv.amount_paid, cur),
      currency: cur,
      due_date: iso(inv.due_date),
      lines: (inv.lines?.data ?? []).map((l) => ({
        description: l.description ?? null,
        amount: money(l.amount, cur),
        quantity: l.quantity ?? null,
      })),
      created_at: iso(inv.created),
      external_ids: { [installationId]: inv.id },
    };
    return {
      type,
      subject: `invoices/${inv.id}`,
      time: iso(event.created) ?? undefined,
      data,
      customerExternalId: customerId,
    };
  };
}

function paymentEvent(type: 'payment.succeeded' | 'payment.failed'): Builder {
  return (event, installationId) => {
    const pi = parsePayload(paymentIntentSchema, event.data.object, `${event.type}: data.object`);
    const cur = pi.currency.toUpperCase();
    const customerId = refId(pi.customer);
    const failure = type === 'payment.failed' ? pi.last_payment_error : null;
    const data: Payment = {
      payment_id: pi.id,
      total: money(pi.amount, cur),
      currency: cur,
      // Canonical status, whatever the intent's own (a failed intent is `requires_payment_method`).
      status: type === 'payment.succeeded' ? 'succeeded' : 'failed',
      customer_id: customerId,
      invoice_id: refId(pi.invoice),
      failure_code: failure?.decline_code ?? failure?.code ?? null,
      failure_message: failure?.message ?? null,
      created_at: iso(pi.created),
      external_ids: { [installationId]: pi.id },
    };
    return {
      type,
      subject: `payment_intents/${pi.id}`,
      time: iso(event.created) ?? undefined,
      data,
      customerExternalId: customerId,
    };
  };
}

/**
 * The de-duplication key of a refund, the same whichever Stripe event reports it. Stripe sends
 * `refund.created` and `charge.refunded` for one refund, both caused by the API request that made
 * it: keyed by that request (and the charge), the second to arrive is a duplicate of the first,
 * so an endpoint that receives both counts each refund once. An automatic refund has no request:
 * it is keyed by the refund's id.
 */
function refundKey(event: StripeEvent, chargeId: string | null, refundId: string): string {
  const request = requestId(event);
  return request && chargeId ? `refund:${chargeId}:request:${request}` : `refund:${refundId}`;
}

/**
 * refund.created → refund.created: one refund, with its own id and amount. A refund names no
 * customer: the hub takes it from the payment's events (payment_intent.succeeded names it).
 */
const refundCreated: Builder = (event, installationId) => {
  const r = parsePayload(refundSchema, event.data.object, `${event.type}: data.object`);
  const cur = r.currency.toUpperCase();
  const chargeId = refId(r.charge);
  const paymentIntentId = refId(r.payment_intent);
  const data: Refund = {
    refund_id: r.id,
    payment_id: paymentIntentId ?? chargeId,
    customer_id: null,
    total: money(r.amount, cur),
    currency: cur,
    reason: r.reason ?? null,
    created_at: iso(r.created),
    external_ids: { [installationId]: r.id },
  };
  return {
    type: 'refund.created',
    subject: `refunds/${r.id}`,
    time: iso(event.created) ?? undefined,
    data,
    customerFrom: paymentIntentId ? `payment_intents/${paymentIntentId}` : undefined,
    dedupeKey: refundKey(event, chargeId, r.id),
  };
};

/**
 * The refund a `charge.refunded` event is about. With the charge's refunds list (expanded, or API
 * versions before 2022-11-15) it is the newest refund. Without it (Stripe's default) the charge
 * names no refund: it is what `amount_refunded` grew by since `previous_attributes`, named
 * `<charge id>:<amount refunded so far>`, the same on every retry. Undefined when nothing grew.
 */
function refundOfCharge(
  event: StripeEvent,
  ch: StripeCharge,
): { id: string; subject: string; amount: number; reason: string | null; created: number } | undefined {
  const listed = ch.refunds?.data ?? [];
  if (listed.length > 0) {
    const newest = listed.reduce((a, b) => (b.created > a.created ? b : a));
    const { id, amount, created } = newest;
    return { id, subject: `refunds/${id}`, amount, reason: newest.reason ?? null, created };
  }
  const before = parsePayload(
    chargeRefundedBeforeSchema,
    event.data.previous_attributes ?? {},
    `${event.type}: data.previous_attributes (needed without the charge's refunds list)`,
  );
  const amount = ch.amount_refunded - before.amount_refunded;
  if (amount <= 0) return undefined;
  const id = `${ch.id}:${ch.amount_refunded}`;
  return { id, subject: `charges/${ch.id}`, amount, reason: null, created: event.created };
}

/**
 * charge.refunded → refund.created for the refund it reports (never the charge's cumulative
 * `amount_refunded`: a $10 then a $15 refund are refunds of 10 and 15). No event when the amount
 * refunded did not grow.
 */
const chargeRefunded: Builder = (event, installationId) => {
  const ch = parsePayload(chargeSchema, event.data.object, `${event.type}: data.object`);
  const refund = refundOfCharge(event, ch);
  if (!refund) return undefined;
  const cur = ch.currency.toUpperCase();
  const customerId = refId(ch.customer);
  const data: Refund = {
    refund_id: refund.id,
    payment_id: refId(ch.payment_intent) ?? ch.id,
    customer_id: customerId,
    total: money(refund.amount, cur),
    currency: cur,
    reason: refund.reason,
    created_at: iso(refund.created),
    external_ids: { [installationId]: refund.id },
  };
  return {
    type: 'refund.created',
    subject: refund.subject,
    time: iso(event.created) ?? undefined,
    data,
    customerExternalId: customerId,
    dedupeKey: refundKey(event, ch.id, refund.id),
  };
};

/** Stripe event type → builder of its canonical event. */
const BUILDERS = new Map<string, Builder>([
  ['customer.created', customerEvent('customer.created')],
  ['customer.updated', customerEvent('customer.updated')],
  ['customer.deleted', customerEvent('customer.deleted')],
  ['invoice.created', invoiceEvent('invoice.created')],
  ['invoice.finalized', invoiceEvent('invoice.updated')],
  ['invoice.paid', invoiceEvent('invoice.paid')],
  ['invoice.payment_failed', invoiceEvent('invoice.payment_failed')],
  ['payment_intent.succeeded', paymentEvent('payment.succeeded')],
  ['payment_intent.payment_failed', paymentEvent('payment.failed')],
  ['charge.refunded', chargeRefunded],
  ['refund.created', refundCreated],
]);

/** The Stripe event types this connector turns into canonical events (for the endpoint's `enabled_events`). */
export const STRIPE_EVENT_TYPES = [...BUILDERS.keys()];

export function normalizeStripeEvent(event: StripeEvent, installationId: string): EventDraft[] {
  const build = BUILDERS.get(event.type);
  if (!build) throw new ConnectorError('topic_unknown', `Stripe event type ${event.type} is not handled`);
  const draft = build(event, installationId);
  return draft ? [draft] : [];
}
