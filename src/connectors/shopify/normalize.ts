// Shopify topic (X-Shopify-Topic) → canonical event type, and the payload → the event's data;
// other topics are kept as raw provider events.
// The topic header is not signed (the HMAC covers the body alone), so each body is checked to be
// what its topic says: the topic's kind of resource, and for compliance and uninstall topics, this shop.
import type { z } from 'zod';
import type { EventData, KnownEventType } from '../../events/types.ts';
import { ConnectorError, type EventDraft, parsePayload, rawEvent, type TopicMapping } from '../sdk.ts';
import {
  customerPayload,
  customerPrivacyPayload,
  deletedPayload,
  notOfKind,
  type OrderPayload,
  orderPayload,
  productPayload,
  type ResourceKind,
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

const invalid = (what: string, reason: string) => new ConnectorError('payload_invalid', `${what}: ${reason}`);

/** The body as the topic's kind of resource (see `notOfKind`), parsed by its schema. */
function resource<T extends z.ZodType>(
  schema: T,
  payload: unknown,
  kind: ResourceKind,
  what: string,
): z.infer<T> {
  const reason = notOfKind(payload, kind);
  if (reason) throw invalid(what, reason);
  return parsePayload(schema, payload, what);
}

/** A compliance or uninstall body names its shop: it must be this installation's. */
function ofThisShop(domain: string, src: Source, what: string, field: string): void {
  if (domain.trim().toLowerCase() !== src.shopDomain)
    throw invalid(what, `${field}: not this installation's shop`);
}

/** What an order topic's body must say of the order, beyond being one (a cancelled order has cancelled_at). */
type OrderState = (o: OrderPayload) => string | undefined;

const orderDraft =
  (state?: OrderState): Build =>
  (payload, src) => {
    const o = resource(orderPayload, payload, 'Order', 'order');
    const reason = state?.(o);
    if (reason) throw invalid('order', reason);
    return {
      subject: `orders/${o.id}`,
      time: o.updated_at ?? o.created_at ?? src.triggeredAt,
      data: order(o, src.installationId),
      customerExternalId: o.customer?.id ?? null,
    };
  };

const cancelled: OrderState = (o) =>
  o.cancelled_at ? undefined : 'cancelled_at: the order is not cancelled';
const fulfilled: OrderState = (o) =>
  o.fulfillment_status === 'fulfilled' ? undefined : 'fulfillment_status: the order is not fulfilled';

// Shopify's refund payload names no customer: the hub takes it from the order's events (order_id).
const refundDraft: Build = (payload, src) => {
  const r = resource(refundPayload, payload, 'Refund', 'refund');
  return {
    subject: `refunds/${r.id}`,
    time: r.created_at ?? r.processed_at ?? src.triggeredAt,
    data: refund(r, src.installationId),
    customerFrom: r.order_id ? `orders/${r.order_id}` : undefined,
  };
};

const customerDraft: Build = (payload, src) => {
  const c = resource(customerPayload, payload, 'Customer', 'customer');
  return {
    subject: `customers/${c.id}`,
    time: c.updated_at ?? c.created_at ?? src.triggeredAt,
    data: customer(c, src.installationId),
    customerExternalId: c.id,
  };
};

const customerDeletedDraft: Build = (payload, src) => {
  const { id } = resource(deletedPayload, payload, 'Customer', 'customer');
  const data: EventData<'customer.deleted'> = { customer_id: id, external_ids: { [src.installationId]: id } };
  return { subject: `customers/${id}`, time: src.triggeredAt, data, customerExternalId: id };
};

const productDraft: Build = (payload, src) => {
  const p = resource(productPayload, payload, 'Product', 'product');
  return {
    subject: `products/${p.id}`,
    time: p.updated_at ?? p.created_at ?? src.triggeredAt,
    data: product(p, src.installationId, src.shopDomain),
  };
};

const productDeletedDraft: Build = (payload, src) => {
  const { id } = resource(deletedPayload, payload, 'Product', 'product');
  const data: EventData<'product.deleted'> = { product_id: id, external_ids: { [src.installationId]: id } };
  return { subject: `products/${id}`, time: src.triggeredAt, data };
};

const appUninstalledDraft: Build = (payload, src) => {
  const shop = parsePayload(shopPayload, payload, 'shop');
  ofThisShop(shop.myshopify_domain, src, 'shop', 'myshopify_domain');
  const data: EventData<'app.uninstalled'> = { account: src.shopDomain, reason: 'uninstalled' };
  return { subject: `shop/${src.shopDomain}`, time: src.triggeredAt, data };
};

// customers/data_request and customers/redact: the mandatory compliance topics about one customer.
const customerPrivacyDraft: Build = (payload, src) => {
  const p = parsePayload(customerPrivacyPayload, payload, 'privacy request');
  ofThisShop(p.shop_domain, src, 'privacy request', 'shop_domain');
  const data: EventData<'privacy.data_request'> = {
    shop_domain: src.shopDomain,
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
  ofThisShop(p.shop_domain, src, 'shop redact', 'shop_domain');
  const data: EventData<'privacy.shop_redact'> = { shop_domain: src.shopDomain };
  return { subject: `shop/${src.shopDomain}`, time: src.triggeredAt, data };
};

const ROUTES = new Map<string, { type: KnownEventType; build: Build }>([
  ['orders/create', { type: 'order.created', build: orderDraft() }],
  ['orders/updated', { type: 'order.updated', build: orderDraft() }],
  ['orders/paid', { type: 'order.paid', build: orderDraft() }],
  ['orders/fulfilled', { type: 'order.fulfilled', build: orderDraft(fulfilled) }],
  ['orders/cancelled', { type: 'order.cancelled', build: orderDraft(cancelled) }],
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

/** Each topic with its canonical type, for GET /v1/connectors. */
export const SHOPIFY_TOPIC_TYPES: readonly TopicMapping[] = [...ROUTES].map(([topic, { type }]) => ({
  topic,
  types: [type],
}));

/**
 * One canonical event for a Shopify webhook, or for a topic not in the table, a raw provider event
 * (`shopify.inventory_levels.update`) with the payload as sent. No topic header: topic_unknown.
 */
export function normalizeShopify(topic: string | undefined, payload: unknown, src: Source): EventDraft[] {
  if (!topic) throw new ConnectorError('topic_unknown', 'no Shopify topic header');
  const route = ROUTES.get(topic);
  if (!route)
    return [
      rawEvent('shopify', topic, payload, { subject: rawSubject(topic, payload), time: src.triggeredAt }),
    ];
  return [{ type: route.type, ...route.build(payload, src) }];
}

/** `<resource>/<id>` of a raw event's payload (`inventory_items/808950810`), when it has an id. */
function rawSubject(topic: string, payload: unknown): string | undefined {
  const id = payload !== null && typeof payload === 'object' ? (payload as { id?: unknown }).id : undefined;
  const resource = topic.split('/')[0];
  return (typeof id === 'string' || typeof id === 'number') && resource ? `${resource}/${id}` : undefined;
}
