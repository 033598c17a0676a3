// Canonical events → Mixpanel records: Segment e-commerce spec v2 events for /import (Order
// Completed, Product Purchased, Order Refunded) and `$set` profile updates for /engage. Pure: no I/O.
import { createHash } from 'node:crypto';
import {
  type Customer,
  customerSchema,
  type LineItem,
  type Order,
  orderSchema,
  type Refund,
  refundSchema,
} from '../../events/records.ts';
import type { DeliveryItem } from '../sdk.ts';

/** The canonical types this destination maps; every other type is refused by `accepts`. */
export const MAPPED_TYPES = [
  'order.created',
  'order.refunded',
  'refund.created',
  'customer.created',
  'customer.updated',
] as const;

/** One event for POST /import. */
export interface MixpanelEvent {
  event: string;
  properties: { time: number; distinct_id: string; $insert_id: string } & Record<string, unknown>;
}

/** One profile update for POST /engage, without `$token` (a secret, added when sending). */
export interface ProfileUpdate {
  $distinct_id: string;
  $set: Record<string, string | number | boolean>;
}

/** What one delivery item becomes. */
export type Mapped =
  | { kind: 'events'; events: MixpanelEvent[] }
  | { kind: 'profile'; profile: ProfileUpdate }
  | { kind: 'invalid'; error: string };

export interface MappingOptions {
  /** Also send one `Product Purchased` per line item of a completed order. */
  productEvents: boolean;
}

/** Mixpanel rejects array properties of 255 elements or more. */
const MAX_ARRAY = 254;

/**
 * The one place an amount becomes a number. Canonical amounts are exact decimal strings; Mixpanel
 * stores and sums numbers (IEEE-754 doubles), so at this boundary "19.99" becomes the nearest
 * double, 19.99 — exact to 15 significant digits, which any real amount fits.
 */
export function amountToNumber(amount: string): number {
  if (!/^-?\d+(\.\d+)?$/.test(amount)) throw new RangeError(`not a decimal amount: ${amount}`);
  return Number(amount);
}

function optionalAmount(amount: string | null | undefined): number | undefined {
  return amount == null ? undefined : amountToNumber(amount);
}

/**
 * `$insert_id`, Mixpanel's de-duplication key: the same on every retry (it depends only on the
 * canonical event id and which derived Mixpanel event this is), distinct otherwise, and within
 * Mixpanel's rules (≤ 36 bytes of [A-Za-z0-9-]): the first 36 hex digits of a SHA-256.
 */
export function insertId(eventId: string, index: number): string {
  return createHash('sha256').update(`${eventId}\n${index}`).digest('hex').slice(0, 36);
}

/**
 * Who the event is about: the organization's user id when the hub knows it, else the provider's
 * customer id prefixed by the source connector (`shopify:7390`), so ids of different providers
 * never collide (events sent to the API carry the organization's own ids: no prefix). A refund
 * has its order's customer (the hub fills it in when the provider names none). With no customer
 * at all (a guest order, or a refund of an order the hub never received) it is the empty string:
 * Mixpanel's documented value for a server-side event that belongs to no user (accepted, left out
 * of user analyses). Leaving distinct_id out instead would make Mixpanel invent one user, from the
 * sending address, for all such events.
 */
export function distinctId(item: DeliveryItem, customerId: string | null | undefined): string {
  if (item.event.userid) return item.event.userid;
  if (!customerId) return '';
  return item.sourceConnector ? `${item.sourceConnector}:${customerId}` : customerId;
}

/** Drops null and undefined values: Mixpanel would store them as "null" and overwrite real ones. */
function compact<T>(record: Record<string, T | null | undefined>): Record<string, T> {
  const out: Record<string, T> = {};
  for (const [key, value] of Object.entries(record)) if (value != null) out[key] = value;
  return out;
}

function product(li: LineItem) {
  return compact<string | number>({
    product_id: li.product_id,
    variant_id: li.variant_id,
    sku: li.sku,
    name: li.name,
    price: amountToNumber(li.price),
    quantity: li.quantity,
  });
}

function products(items: LineItem[] | undefined) {
  return items === undefined ? undefined : items.slice(0, MAX_ARRAY).map(product);
}

function orderCompleted(o: Order, source: string | null) {
  return compact<unknown>({
    order_id: o.order_id,
    order_number: o.order_number,
    total: amountToNumber(o.total),
    subtotal: optionalAmount(o.subtotal),
    revenue: amountToNumber(o.revenue),
    tax: optionalAmount(o.tax),
    shipping: optionalAmount(o.shipping),
    discount: optionalAmount(o.discount),
    coupon: o.coupon,
    currency: o.currency,
    financial_status: o.financial_status,
    products: products(o.products),
    source_connector: source,
  });
}

function orderRefunded(o: Order, source: string | null) {
  return compact<unknown>({
    order_id: o.order_id,
    total: amountToNumber(o.total),
    currency: o.currency,
    products: products(o.products),
    source_connector: source,
  });
}

function refundCreated(r: Refund, source: string | null) {
  return compact<unknown>({
    order_id: r.order_id,
    refund_id: r.refund_id,
    payment_id: r.payment_id,
    total: amountToNumber(r.total),
    currency: r.currency,
    reason: r.reason,
    products: products(r.products),
    source_connector: source,
  });
}

function profile(c: Customer, source: string | null) {
  const name = [c.first_name, c.last_name].filter(Boolean).join(' ');
  return compact<string | number | boolean>({
    $email: c.email,
    $first_name: c.first_name,
    $last_name: c.last_name,
    $name: name || undefined,
    $phone: c.phone,
    $city: c.address?.city,
    $region: c.address?.region,
    $country_code: c.address?.country_code,
    $created: c.created_at,
    accepts_marketing: c.accepts_marketing,
    [`${source ?? 'api'}_customer_id`]: c.customer_id,
  });
}

/** Maps one delivery item; never throws (a bad item is `invalid`, not a failed batch). */
export function mapItem(item: DeliveryItem, options: MappingOptions): Mapped {
  const { event, sourceConnector: source } = item;
  const time = Date.parse(event.time);
  if (Number.isNaN(time)) return { kind: 'invalid', error: `event time is not a date: ${event.time}` };
  const make = (index: number, name: string, props: Record<string, unknown>, customerId?: string | null) => ({
    event: name,
    properties: {
      time,
      distinct_id: distinctId(item, customerId),
      $insert_id: insertId(event.id, index),
      // Mixpanel would otherwise locate every event at the hub's own IP address.
      ip: 0,
      ...props,
    },
  });
  switch (event.type) {
    case 'order.created': {
      const o = orderSchema.safeParse(event.data);
      if (!o.success) return invalid(event.type);
      const customerId = o.data.customer?.customer_id;
      const events: MixpanelEvent[] = [
        make(0, 'Order Completed', orderCompleted(o.data, source), customerId),
      ];
      if (options.productEvents) {
        o.data.products.forEach((li, i) => {
          const props = { order_id: o.data.order_id, currency: o.data.currency, ...product(li) };
          events.push(make(i + 1, 'Product Purchased', props, customerId));
        });
      }
      return { kind: 'events', events };
    }
    case 'order.refunded': {
      const o = orderSchema.safeParse(event.data);
      if (!o.success) return invalid(event.type);
      const props = orderRefunded(o.data, source);
      return { kind: 'events', events: [make(0, 'Order Refunded', props, o.data.customer?.customer_id)] };
    }
    case 'refund.created': {
      const r = refundSchema.safeParse(event.data);
      if (!r.success) return invalid(event.type);
      const props = refundCreated(r.data, source);
      return { kind: 'events', events: [make(0, 'Order Refunded', props, r.data.customer_id)] };
    }
    case 'customer.created':
    case 'customer.updated': {
      const c = customerSchema.safeParse(event.data);
      if (!c.success) return invalid(event.type);
      const $distinct_id = distinctId(item, c.data.customer_id);
      return { kind: 'profile', profile: { $distinct_id, $set: profile(c.data, source) } };
    }
    default:
      return { kind: 'invalid', error: `Mixpanel does not take ${event.type} events` };
  }
}

function invalid(type: string): Mapped {
  return { kind: 'invalid', error: `event data is not a valid canonical ${type}` };
}
