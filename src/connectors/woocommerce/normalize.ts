// WooCommerce topics (X-WC-Webhook-Topic: `<resource>.<event>`) → canonical events.
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
  parsePayload,
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

export function normalizeWoo(req: InboundRequest, payload: unknown, installationId: string): EventDraft[] {
  const topic = topicOf(req);
  const [resource = '', event = ''] = topic.split('.');
  const handler = RESOURCES.get(resource);
  if (!handler?.events.includes(event)) {
    throw new ConnectorError('topic_unknown', `WooCommerce topic ${topic} is not handled`);
  }
  return [handler.build(event, payload, installationId)];
}

/**
 * WooCommerce sends no stable event id (X-WC-Webhook-Delivery-ID is new on every delivery, and no
 * header is signed), so an event is what it says (`contentKey`): its topic, resource and canonical
 * data; a creation is keyed by the resource alone, as is a customer's deletion (a WordPress user
 * is not restored). An order or a product can be deleted, restored and deleted again, and a
 * deleted body is the id alone: the delivery id stands in, so the second deletion is not dropped
 * (deleting twice is harmless; missing the second deletion is not).
 */
export function wooDedupeKey(req: InboundRequest, payload: unknown, drafts: readonly EventDraft[]): string {
  const topic = topicOf(req);
  const event = topic.split('.')[1];
  if (event === 'deleted' && topic !== 'customer.deleted') {
    const id = parsePayload(deletedSchema, payload, topic).id;
    return `${topic}:${id}:${header(req, 'x-wc-webhook-delivery-id') ?? 'unversioned'}`;
  }
  return `${topic}:${contentKey(drafts, { once: event === 'created' || topic === 'customer.deleted' })}`;
}
