// Stripe simulator: builds webhook events shaped like Stripe's (snapshot events of API objects,
// typed against the official SDK so field names and types stay Stripe's), signs them with the
// SDK's own test helper, and sends them over HTTP the way Stripe does (pretty-printed JSON).
import { randomBytes } from 'node:crypto';
import Stripe from 'stripe';

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** A Stripe-looking id: `cus_`, `in_`, `pi_`, `ch_`, `re_`, `evt_` + 24 base62 characters. */
export function stripeId(prefix: string): string {
  const bytes = randomBytes(24);
  let id = '';
  for (const b of bytes) id += ALPHABET[b % ALPHABET.length];
  return `${prefix}_${id}`;
}

const now = (): number => Math.floor(Date.now() / 1000);

export type SimCustomer = Pick<
  Stripe.Customer,
  | 'id'
  | 'object'
  | 'address'
  | 'balance'
  | 'created'
  | 'currency'
  | 'default_source'
  | 'delinquent'
  | 'description'
  | 'email'
  | 'invoice_prefix'
  | 'livemode'
  | 'metadata'
  | 'name'
  | 'phone'
  | 'shipping'
  | 'tax_exempt'
>;

export function stripeCustomer(overrides: Partial<SimCustomer> = {}): SimCustomer {
  return {
    id: stripeId('cus'),
    object: 'customer',
    address: {
      city: 'Berlin',
      country: 'DE',
      line1: 'Torstraße 1',
      line2: null,
      postal_code: '10119',
      state: null,
    },
    balance: 0,
    created: now(),
    currency: 'eur',
    default_source: null,
    delinquent: false,
    description: null,
    email: 'jenny.rosen@example.com',
    invoice_prefix: 'A1B2C3D4',
    livemode: false,
    metadata: {},
    name: 'Jenny Rosen',
    phone: '+4930123456',
    shipping: null,
    tax_exempt: 'none',
    ...overrides,
  };
}

type SimLine = Pick<
  Stripe.InvoiceLineItem,
  | 'id'
  | 'object'
  | 'amount'
  | 'currency'
  | 'description'
  | 'invoice'
  | 'livemode'
  | 'metadata'
  | 'quantity'
  | 'subtotal'
>;
export type SimInvoice = Pick<
  Stripe.Invoice,
  | 'id'
  | 'object'
  | 'account_country'
  | 'amount_due'
  | 'amount_paid'
  | 'amount_remaining'
  | 'attempt_count'
  | 'attempted'
  | 'billing_reason'
  | 'collection_method'
  | 'created'
  | 'currency'
  | 'customer'
  | 'customer_email'
  | 'due_date'
  | 'hosted_invoice_url'
  | 'livemode'
  | 'metadata'
  | 'number'
  | 'period_end'
  | 'period_start'
  | 'status'
  | 'subtotal'
  | 'total'
> & {
  lines: { object: 'list'; data: SimLine[]; has_more: boolean; total_count: number; url: string };
};

export function stripeInvoice(overrides: Partial<SimInvoice> = {}): SimInvoice {
  const id = overrides.id ?? stripeId('in');
  const currency = overrides.currency ?? 'usd';
  const total = overrides.total ?? 1999;
  const line: SimLine = {
    id: stripeId('il'),
    object: 'line_item',
    amount: total,
    currency,
    description: '1 × Pro plan (at $19.99 / month)',
    invoice: id,
    livemode: false,
    metadata: {},
    quantity: 1,
    subtotal: total,
  };
  const created = now();
  return {
    id,
    object: 'invoice',
    account_country: 'US',
    amount_due: total,
    amount_paid: 0,
    amount_remaining: total,
    attempt_count: 0,
    attempted: false,
    billing_reason: 'subscription_cycle',
    collection_method: 'charge_automatically',
    created,
    currency,
    customer: stripeId('cus'),
    customer_email: 'jenny.rosen@example.com',
    due_date: null,
    hosted_invoice_url: null,
    livemode: false,
    metadata: {},
    number: null,
    period_end: created,
    period_start: created - 30 * 86400,
    status: 'draft',
    subtotal: total,
    total,
    lines: { object: 'list', data: [line], has_more: false, total_count: 1, url: `/v1/invoices/${id}/lines` },
    ...overrides,
  };
}

export type SimPaymentIntent = Pick<
  Stripe.PaymentIntent,
  | 'id'
  | 'object'
  | 'amount'
  | 'amount_capturable'
  | 'amount_received'
  | 'capture_method'
  | 'created'
  | 'currency'
  | 'customer'
  | 'description'
  | 'last_payment_error'
  | 'latest_charge'
  | 'livemode'
  | 'metadata'
  | 'payment_method'
  | 'payment_method_types'
  | 'status'
>;

export function stripePaymentIntent(overrides: Partial<SimPaymentIntent> = {}): SimPaymentIntent {
  const amount = overrides.amount ?? 1999;
  return {
    id: stripeId('pi'),
    object: 'payment_intent',
    amount,
    amount_capturable: 0,
    amount_received: amount,
    capture_method: 'automatic_async',
    created: now(),
    currency: 'usd',
    customer: stripeId('cus'),
    description: 'Order #1001',
    last_payment_error: null,
    latest_charge: stripeId('ch'),
    livemode: false,
    metadata: {},
    payment_method: stripeId('pm'),
    payment_method_types: ['card'],
    status: 'succeeded',
    ...overrides,
  };
}

export type SimRefund = Pick<
  Stripe.Refund,
  'id' | 'object' | 'amount' | 'charge' | 'created' | 'currency' | 'payment_intent' | 'reason' | 'status'
>;
export type SimCharge = Pick<
  Stripe.Charge,
  | 'id'
  | 'object'
  | 'amount'
  | 'amount_captured'
  | 'amount_refunded'
  | 'captured'
  | 'created'
  | 'currency'
  | 'customer'
  | 'description'
  | 'livemode'
  | 'metadata'
  | 'paid'
  | 'payment_intent'
  | 'refunded'
  | 'status'
> & {
  refunds?: { object: 'list'; data: SimRefund[]; has_more: boolean; total_count: number; url: string };
};

export function stripeRefund(overrides: Partial<SimRefund> = {}): SimRefund {
  return {
    id: stripeId('re'),
    object: 'refund',
    amount: 1999,
    charge: stripeId('ch'),
    created: now(),
    currency: 'usd',
    payment_intent: stripeId('pi'),
    reason: 'requested_by_customer',
    status: 'succeeded',
    ...overrides,
  };
}

/** A refunded charge; with `refunds`, the charge's refund list as an expanded field. */
export function stripeCharge(overrides: Partial<SimCharge> = {}): SimCharge {
  const amount = overrides.amount ?? 1999;
  return {
    id: stripeId('ch'),
    object: 'charge',
    amount,
    amount_captured: amount,
    amount_refunded: amount,
    captured: true,
    created: now(),
    currency: 'usd',
    customer: stripeId('cus'),
    description: 'Order #1001',
    livemode: false,
    metadata: {},
    paid: true,
    payment_intent: stripeId('pi'),
    refunded: true,
    status: 'succeeded',
    ...overrides,
  };
}

export interface SimStripeEvent {
  id: string;
  object: 'event';
  api_version: string;
  created: number;
  data: { object: unknown; previous_attributes?: Record<string, unknown> };
  livemode: boolean;
  pending_webhooks: number;
  request: { id: string | null; idempotency_key: string | null };
  type: string;
  account?: string;
}

/** Wraps an API object in a Stripe event envelope. */
export function stripeEvent(
  type: string,
  object: unknown,
  overrides: Partial<SimStripeEvent> = {},
): SimStripeEvent {
  return {
    id: stripeId('evt'),
    object: 'event',
    api_version: Stripe.API_VERSION,
    created: now(),
    data: { object },
    livemode: false,
    pending_webhooks: 1,
    request: { id: stripeId('req'), idempotency_key: null },
    type,
    ...overrides,
  };
}

/**
 * The two events Stripe sends for one refund of `charge` (which already counts it in
 * `amount_refunded`): `refund.created` with the refund, and `charge.refunded` with the charge and,
 * in `previous_attributes`, what it had refunded before. Both carry the id of the API request that
 * made the refund; the refund names the charge and its payment intent. Since API version 2022-11-15 the charge's `refunds` list is not included; pass
 * `listed` to include it (an expanded field, or an older API version).
 */
export function stripeRefundEvents(
  charge: SimCharge,
  refund: SimRefund,
  options: { listed?: SimRefund[]; requestId?: string | null } = {},
): { refundCreated: SimStripeEvent; chargeRefunded: SimStripeEvent } {
  const request = {
    id: options.requestId === undefined ? stripeId('req') : options.requestId,
    idempotency_key: null,
  };
  const before = charge.amount_refunded - refund.amount;
  const object = options.listed
    ? {
        ...charge,
        refunds: {
          object: 'list' as const,
          data: options.listed,
          has_more: false,
          total_count: options.listed.length,
          url: `/v1/charges/${charge.id}/refunds`,
        },
      }
    : charge;
  const previous: Record<string, unknown> = { amount_refunded: before };
  if (charge.refunded && before < charge.amount) previous.refunded = false;
  const chargeRefunded = stripeEvent('charge.refunded', object, { request });
  chargeRefunded.data.previous_attributes = previous;
  const ofCharge = { ...refund, charge: charge.id, payment_intent: charge.payment_intent };
  return { refundCreated: stripeEvent('refund.created', ofCharge, { request }), chargeRefunded };
}

export interface StripeSigning {
  secret: string;
  /** Unix seconds of the signature; now by default. */
  timestamp?: number;
}

/** The body and headers Stripe would send for this event, signed with the SDK's test helper. */
export function stripeWebhookRequest(event: SimStripeEvent | string, signing: StripeSigning) {
  const body = typeof event === 'string' ? event : JSON.stringify(event, null, 2);
  const signature = Stripe.webhooks.generateTestHeaderString({
    payload: body,
    secret: signing.secret,
    timestamp: signing.timestamp ?? now(),
  });
  const headers: Record<string, string> = {
    'Content-Type': 'application/json; charset=utf-8',
    'User-Agent': 'Stripe/1.0 (+https://stripe.com/docs/webhooks)',
    'Stripe-Signature': signature,
  };
  return { body, headers };
}

/** POSTs the signed event to `url` over HTTP, as Stripe delivers it. */
export async function sendStripeWebhook(
  url: string,
  event: SimStripeEvent | string,
  signing: StripeSigning,
): Promise<Response> {
  const { body, headers } = stripeWebhookRequest(event, signing);
  return fetch(url, { method: 'POST', headers, body });
}
