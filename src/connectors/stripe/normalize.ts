// Stripe events → canonical events. Amounts arrive in Stripe's minor units (1999 = $19.99,
// 500 = ¥500, 50000 = 500 kr) and become exact decimal strings (money.ts); currencies are upper-cased.
import { fromMinorUnits } from '../../events/money.ts';
import type { Address, Customer, Invoice, Payment, Refund } from '../../events/records.ts';
import { ConnectorError, type EventDraft, parsePayload } from '../sdk.ts';
import { STRIPE_MINOR_UNITS } from './currencies.ts';
import {
  chargeSchema,
  customerSchema,
  invoiceSchema,
  paymentIntentSchema,
  refId,
  type StripeCustomer,
  type StripeEvent,
} from './schemas.ts';

type Builder = (event: StripeEvent, installationId: string) => EventDraft;

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
 * charge.refunded → refund.created. With the charge's refunds list (expanded, or API versions
 * before 2022-11-15) the newest refund is the one this event is about: its id and amount. Without
 * it the refund is named by the charge id and carries the charge's `amount_refunded` (the total
 * refunded so far), so a later partial refund updates the same record rather than adding a wrong one.
 */
const refundEvent: Builder = (event, installationId) => {
  const ch = parsePayload(chargeSchema, event.data.object, `${event.type}: data.object`);
  const cur = ch.currency.toUpperCase();
  const refunds = ch.refunds?.data ?? [];
  const latest =
    refunds.length > 0 ? refunds.reduce((newest, r) => (r.created > newest.created ? r : newest)) : undefined;
  const refundId = latest?.id ?? ch.id;
  const customerId = refId(ch.customer);
  const data: Refund = {
    refund_id: refundId,
    payment_id: refId(ch.payment_intent) ?? ch.id,
    total: money(latest?.amount ?? ch.amount_refunded, cur),
    currency: cur,
    reason: latest?.reason ?? null,
    created_at: iso(latest?.created ?? event.created),
    external_ids: { [installationId]: refundId },
  };
  return {
    type: 'refund.created',
    subject: `charges/${ch.id}`,
    time: iso(event.created) ?? undefined,
    data,
    customerExternalId: customerId,
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
  ['charge.refunded', refundEvent],
]);

/** The Stripe event types this connector turns into canonical events (for the endpoint's `enabled_events`). */
export const STRIPE_EVENT_TYPES = [...BUILDERS.keys()];

export function normalizeStripeEvent(event: StripeEvent, installationId: string): EventDraft[] {
  const build = BUILDERS.get(event.type);
  if (!build) throw new ConnectorError('topic_unknown', `Stripe event type ${event.type} is not handled`);
  return [build(event, installationId)];
}
