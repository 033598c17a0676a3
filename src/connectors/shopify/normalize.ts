// Shopify topic (X-Shopify-Topic) → canonical event type, and the payload → the event's data.
import type { EventData, KnownEventType } from '../../events/types.ts';
import { ConnectorError, type EventDraft, parsePayload } from '../sdk.ts';
import {
  customerPayload,
  customerPrivacyPayload,
  deletedPayload,
  orderPayload,
  productPayload,
  refundPayload,
  shopPayload,
  shopRedactPayload,
} from './payloads.ts';
import { customer, order, product, refund } from './records.ts';

/** Where a request comes from: the installation and what its verified headers say. */
export interface Source {
  installationId: string;
  shopDomain: string;
  /** X-Shopify-Triggered-At when it is a valid timestamp: the time of events without one of their own. */
  triggeredAt: string | undefined;
}

type Draft = Omit<EventDraft, 'type'>;
type Build = (payload: unknown, src: Source) => Draft;

const orderDraft: Build = (payload, src) => {
  const o = parsePayload(orderPayload, payload, 'order');
  return {
    subject: `orders/${o.id}`,
    time: o.updated_at ?? o.created_at ?? src.triggeredAt,
    data: order(o, src.installationId),
    customerExternalId: o.customer?.id ?? null,
  };
};

// Shopify's refund payload names no customer: the hub takes it from the order's events (order_id).
const refundDraft: Build = (payload, src) => {
  const r = parsePayload(refundPayload, payload, 'refund');
  return {
    subject: `refunds/${r.id}`,
    time: r.created_at ?? r.processed_at ?? src.triggeredAt,
    data: refund(r, src.installationId),
    customerFrom: r.order_id ? `orders/${r.order_id}` : undefined,
  };
};

const customerDraft: Build = (payload, src) => {
  const c = parsePayload(customerPayload, payload, 'customer');
  return {
    subject: `customers/${c.id}`,
    time: c.updated_at ?? c.created_at ?? src.triggeredAt,
    data: customer(c, src.installationId),
    customerExternalId: c.id,
  };
};

const customerDeletedDraft: Build = (payload, src) => {
  const { id } = parsePayload(deletedPayload, payload, 'customer');
  const data: EventData<'customer.deleted'> = { customer_id: id, external_ids: { [src.installationId]: id } };
  return { subject: `customers/${id}`, time: src.triggeredAt, data, customerExternalId: id };
};

const productDraft: Build = (payload, src) => {
  const p = parsePayload(productPayload, payload, 'product');
  return {
    subject: `products/${p.id}`,
    time: p.updated_at ?? p.created_at ?? src.triggeredAt,
    data: product(p, src.installationId, src.shopDomain),
  };
};

const productDeletedDraft: Build = (payload, src) => {
  const { id } = parsePayload(deletedPayload, payload, 'product');
  const data: EventData<'product.deleted'> = { product_id: id, external_ids: { [src.installationId]: id } };
  return { subject: `products/${id}`, time: src.triggeredAt, data };
};

const appUninstalledDraft: Build = (payload, src) => {
  parsePayload(shopPayload, payload, 'shop');
  const data: EventData<'app.uninstalled'> = { account: src.shopDomain, reason: 'uninstalled' };
  return { subject: `shop/${src.shopDomain}`, time: src.triggeredAt, data };
};

// customers/data_request and customers/redact: the mandatory compliance topics about one customer.
const customerPrivacyDraft: Build = (payload, src) => {
  const p = parsePayload(customerPrivacyPayload, payload, 'privacy request');
  const data: EventData<'privacy.data_request'> = {
    shop_domain: p.shop_domain ?? src.shopDomain,
    customer_id: p.customer.id,
    email: p.customer.email ?? null,
    orders: p.orders_requested ?? p.orders_to_redact ?? [],
    request_id: p.data_request?.id ?? null,
  };
  return {
    subject: `customers/${p.customer.id}`,
    time: src.triggeredAt,
    data,
    customerExternalId: p.customer.id,
  };
};

const shopRedactDraft: Build = (payload, src) => {
  const p = parsePayload(shopRedactPayload, payload, 'shop redact');
  const data: EventData<'privacy.shop_redact'> = { shop_domain: p.shop_domain ?? src.shopDomain };
  return { subject: `shop/${src.shopDomain}`, time: src.triggeredAt, data };
};

const ROUTES = new Map<string, { type: KnownEventType; build: Build }>([
  ['orders/create', { type: 'order.created', build: orderDraft }],
  ['orders/updated', { type: 'order.updated', build: orderDraft }],
  ['orders/paid', { type: 'order.paid', build: orderDraft }],
  ['orders/fulfilled', { type: 'order.fulfilled', build: orderDraft }],
  ['orders/cancelled', { type: 'order.cancelled', build: orderDraft }],
  ['refunds/create', { type: 'refund.created', build: refundDraft }],
  ['customers/create', { type: 'customer.created', build: customerDraft }],
  ['customers/update', { type: 'customer.updated', build: customerDraft }],
  ['customers/delete', { type: 'customer.deleted', build: customerDeletedDraft }],
  ['products/create', { type: 'product.created', build: productDraft }],
  ['products/update', { type: 'product.updated', build: productDraft }],
  ['products/delete', { type: 'product.deleted', build: productDeletedDraft }],
  ['app/uninstalled', { type: 'app.uninstalled', build: appUninstalledDraft }],
  ['customers/data_request', { type: 'privacy.data_request', build: customerPrivacyDraft }],
  ['customers/redact', { type: 'privacy.customer_redact', build: customerPrivacyDraft }],
  ['shop/redact', { type: 'privacy.shop_redact', build: shopRedactDraft }],
]);

/** The Shopify topics this connector turns into canonical events. */
export const SHOPIFY_TOPICS: readonly string[] = [...ROUTES.keys()];

/** One canonical event for a Shopify webhook; topic_unknown for a topic not in the table. */
export function normalizeShopify(topic: string | undefined, payload: unknown, src: Source): EventDraft[] {
  const route = topic === undefined ? undefined : ROUTES.get(topic);
  if (!route) {
    throw new ConnectorError(
      'topic_unknown',
      topic ? `Shopify topic ${topic} is not handled` : 'no Shopify topic header',
    );
  }
  return [{ type: route.type, ...route.build(payload, src) }];
}
