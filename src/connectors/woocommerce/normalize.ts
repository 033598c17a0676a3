// WooCommerce topics (X-WC-Webhook-Topic: `<resource>.<event>`) → canonical events; other topics
// → raw provider events (`woocommerce.coupon.created`).
//
// Order status rule: WooCommerce has no order.cancelled/fulfilled topics, only order.updated with
// the order as it is now, so on order.updated and order.restored the status names the event:
// cancelled → order.cancelled, completed → order.fulfilled, refunded → order.refunded, anything
// else → order.updated. WooCommerce does not say what the status was before, so a later edit of a
// completed order is order.fulfilled again: consumers treat these types as "the order is now …".
import {
  ConnectorError,
  contentKey,
  type EventDraft,
  header,
  type InboundRequest,
  parseExactJson,
  parsePayload,
  rawEvent,
  type TopicMapping,
} from '../sdk.ts';
import { customer, gmt, order, product } from './records.ts';
import { customerSchema, deletedSchema, orderSchema, productSchema } from './schemas.ts';

export function topicOf(req: InboundRequest): string {
  const topic = header(req, 'x-wc-webhook-topic');
  if (!topic) throw new ConnectorError('topic_unknown', 'no X-WC-Webhook-Topic header');
  return topic;
}

const ORDER_STATUS_TYPES = new Map<string, EventDraft['type']>([
  ['cancelled', 'order.cancelled'],
  ['completed', 'order.fulfilled'],
  ['refunded', 'order.refunded'],
]);

function orderEvent(event: string, payload: unknown, installationId: string): EventDraft {
  if (event === 'deleted') return orderDeleted(payload, installationId);
  ofResource(payload, 'order', `order.${event}`);
  const o = parsePayload(orderSchema, payload, `order.${event}`);
  const data = order(o, installationId);
  const type = event === 'created' ? 'order.created' : (ORDER_STATUS_TYPES.get(o.status) ?? 'order.updated');
  const time = event === 'created' ? o.date_created_gmt : o.date_modified_gmt;
  return {
    type,
    subject: `orders/${o.id}`,
    time: gmt(time) ?? undefined,
    data,
    customerExternalId: data.customer?.customer_id,
  };
}

/**
 * order.deleted (sent when an order is trashed or deleted) carries only `{ "id": … }`, and the
 * canonical order.cancelled needs the whole order (total, currency, products): it becomes
 * `custom.woocommerce.order_deleted` rather than a made-up order.
 */
function orderDeleted(payload: unknown, installationId: string): EventDraft {
  const orderId = String(deletedId(payload, 'order.deleted'));
  return {
    type: 'custom.woocommerce.order_deleted',
    subject: `orders/${orderId}`,
    data: { order_id: orderId, external_ids: { [installationId]: orderId } },
  };
}

/**
 * The id of a `*.deleted` body. WooCommerce sends a deleted resource as its id alone, and signs
 * only the body: a fuller body under a deleted topic is a signed order, customer or product
 * posted again under a topic it was not sent with, and is refused.
 */
function deletedId(payload: unknown, topic: string): number {
  const { id } = parsePayload(deletedSchema, payload, topic);
  const more = Object.keys(payload as object).filter((key) => key !== 'id');
  if (more.length > 0)
    throw new ConnectorError(
      'payload_invalid',
      `${topic}: WooCommerce sends a deleted resource as its id alone; this body has ${more.length} more fields`,
    );
  return id;
}

/** A top-level field that only one resource's body has (see `ofResource`). */
const MARKS: ReadonlyArray<readonly [resource: string, field: string]> = [
  ['order', 'line_items'],
  ['customer', 'username'],
  ['product', 'permalink'],
];

/**
 * A body under a resource's topic must not carry a field only another resource has: the topic
 * header is not signed, and an order's body would otherwise pass for a customer (id, billing).
 */
function ofResource(payload: unknown, resource: string, topic: string): void {
  if (payload === null || typeof payload !== 'object') return;
  const foreign = MARKS.find(([other, field]) => other !== resource && field in payload);
  if (foreign)
    throw new ConnectorError(
      'payload_invalid',
      `${topic}: ${foreign[1]}: a field of a ${foreign[0]}, not of a ${resource}`,
    );
}

function customerEvent(event: string, payload: unknown, installationId: string): EventDraft {
  if (event === 'deleted') {
    const id = String(deletedId(payload, 'customer.deleted'));
    const data = { customer_id: id, external_ids: { [installationId]: id } };
    return { type: 'customer.deleted', subject: `customers/${id}`, data, customerExternalId: id };
  }
  ofResource(payload, 'customer', `customer.${event}`);
  const c = parsePayload(customerSchema, payload, `customer.${event}`);
  const type = event === 'created' ? 'customer.created' : 'customer.updated';
  const time = event === 'created' ? c.date_created_gmt : c.date_modified_gmt;
  return {
    type,
    subject: `customers/${c.id}`,
    time: gmt(time) ?? undefined,
    data: customer(c, installationId),
    customerExternalId: String(c.id),
  };
}

function productEvent(event: string, payload: unknown, installationId: string): EventDraft {
  if (event === 'deleted') {
    const id = String(deletedId(payload, 'product.deleted'));
    return {
      type: 'product.deleted',
      subject: `products/${id}`,
      data: { product_id: id, external_ids: { [installationId]: id } },
    };
  }
  ofResource(payload, 'product', `product.${event}`);
  const p = parsePayload(productSchema, payload, `product.${event}`);
  const type = event === 'created' ? 'product.created' : 'product.updated';
  const time = event === 'created' ? p.date_created_gmt : p.date_modified_gmt;
  return {
    type,
    subject: `products/${p.id}`,
    time: gmt(time) ?? undefined,
    data: product(p, installationId),
  };
}

type Builder = (event: string, payload: unknown, installationId: string) => EventDraft;

/** Resource → its builder, with the events WooCommerce sends for it. */
const RESOURCES = new Map<string, { events: readonly string[]; build: Builder }>([
  ['order', { events: ['created', 'updated', 'deleted', 'restored'], build: orderEvent }],
  ['customer', { events: ['created', 'updated', 'deleted'], build: customerEvent }],
  ['product', { events: ['created', 'updated', 'deleted', 'restored'], build: productEvent }],
]);

/** The topics turned into canonical events, with their types (GET /v1/connectors). */
export const WOO_TOPIC_TYPES: readonly TopicMapping[] = [
  { topic: 'order.created', types: ['order.created'] },
  {
    topic: 'order.updated',
    types: ['order.updated', 'order.cancelled', 'order.fulfilled', 'order.refunded'],
  },
  {
    topic: 'order.restored',
    types: ['order.updated', 'order.cancelled', 'order.fulfilled', 'order.refunded'],
  },
  { topic: 'order.deleted', types: ['custom.woocommerce.order_deleted'] },
  { topic: 'customer.created', types: ['customer.created'] },
  { topic: 'customer.updated', types: ['customer.updated'] },
  { topic: 'customer.deleted', types: ['customer.deleted'] },
  { topic: 'product.created', types: ['product.created'] },
  { topic: 'product.updated', types: ['product.updated'] },
  { topic: 'product.restored', types: ['product.updated'] },
  { topic: 'product.deleted', types: ['product.deleted'] },
];

function isModeled(topic: string): boolean {
  const [resource = '', event = ''] = topic.split('.');
  return RESOURCES.get(resource)?.events.includes(event) ?? false;
}

/**
 * The canonical event of a topic in RESOURCES; any other (coupon.created, action.woocommerce_…)
 * is kept as a raw provider event with the body as sent, ids exact.
 */
export function normalizeWoo(req: InboundRequest, payload: unknown, installationId: string): EventDraft[] {
  const topic = topicOf(req);
  const [resource = '', event = ''] = topic.split('.');
  const handler = RESOURCES.get(resource);
  if (!handler?.events.includes(event)) {
    const raw = parseExactJson(req.rawBody) as { id?: unknown } | null;
    const id = raw !== null && typeof raw === 'object' ? raw.id : undefined;
    const subject = typeof id === 'number' || typeof id === 'string' ? `${resource}s/${id}` : undefined;
    return [rawEvent('woocommerce', topic, raw, { subject })];
  }
  return [handler.build(event, payload, installationId)];
}

/**
 * WooCommerce sends no stable event id (X-WC-Webhook-Delivery-ID is new on every delivery, and no
 * header is signed), so an event is what it says (`contentKey`): its topic, resource and canonical
 * data; a creation is keyed by the resource alone, as is a customer's deletion (a WordPress user
 * is not restored). An order or a product can be deleted, restored and deleted again, and a
 * deleted body is the id alone; a topic the hub does not model may repeat a body as well (an
 * action hook's argument): for those the delivery id stands in, so a real repeat is not dropped
 * (a deletion or a raw event twice is harmless; missing one is not).
 */
export function wooDedupeKey(req: InboundRequest, _payload: unknown, drafts: readonly EventDraft[]): string {
  const topic = topicOf(req);
  const event = topic.split('.')[1];
  const subjects = drafts.map((d) => d.subject ?? '').join(',');
  if (!isModeled(topic) || (event === 'deleted' && topic !== 'customer.deleted'))
    return `${topic}:${subjects}:delivery:${header(req, 'x-wc-webhook-delivery-id') ?? 'none'}`;
  return `${topic}:${contentKey(drafts, { once: event === 'created' || topic === 'customer.deleted' })}`;
}
