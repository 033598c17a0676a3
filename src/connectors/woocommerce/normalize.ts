// WooCommerce topics (X-WC-Webhook-Topic: `<resource>.<event>`) → canonical events.
//
// Order status rule: WooCommerce has no order.cancelled/fulfilled topics, only order.updated with
// the order as it is now, so on order.updated and order.restored the status names the event:
// cancelled → order.cancelled, completed → order.fulfilled, refunded → order.refunded, anything
// else → order.updated. WooCommerce does not say what the status was before, so a later edit of a
// completed order is order.fulfilled again: consumers treat these types as "the order is now …".
import { ConnectorError, type EventDraft, header, type InboundRequest, parsePayload } from '../sdk.ts';
import { customer, gmt, order, product } from './records.ts';
import { customerSchema, deletedSchema, keySchema, orderSchema, productSchema } from './schemas.ts';

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
 * canonical order.cancelled needs the whole order (total, currency, products). A full order (a site
 * that filters `woocommerce_webhook_payload`) becomes order.cancelled; the bare id becomes
 * `custom.woocommerce.order_deleted` rather than a made-up order or a refused delivery.
 */
function orderDeleted(payload: unknown, installationId: string): EventDraft {
  const full = orderSchema.safeParse(payload);
  if (full.success) {
    const data = order(full.data, installationId);
    return {
      type: 'order.cancelled',
      subject: `orders/${full.data.id}`,
      data,
      customerExternalId: data.customer?.customer_id,
    };
  }
  const { id } = parsePayload(deletedSchema, payload, 'order.deleted');
  const orderId = String(id);
  return {
    type: 'custom.woocommerce.order_deleted',
    subject: `orders/${orderId}`,
    data: { order_id: orderId, external_ids: { [installationId]: orderId } },
  };
}

function customerEvent(event: string, payload: unknown, installationId: string): EventDraft {
  if (event === 'deleted') {
    const id = String(parsePayload(deletedSchema, payload, 'customer.deleted').id);
    const data = { customer_id: id, external_ids: { [installationId]: id } };
    return { type: 'customer.deleted', subject: `customers/${id}`, data, customerExternalId: id };
  }
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
    const id = String(parsePayload(deletedSchema, payload, 'product.deleted').id);
    return {
      type: 'product.deleted',
      subject: `products/${id}`,
      data: { product_id: id, external_ids: { [installationId]: id } },
    };
  }
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
 * WooCommerce sends no stable event id (X-WC-Webhook-Delivery-ID is new on every delivery), so an
 * event is its topic, resource id and modification time. A deleted payload has no time: the
 * delivery id stands in, so a resource deleted, restored and deleted again is not dropped as a
 * duplicate (deleting twice is harmless; missing the second deletion is not).
 */
export function wooDedupeKey(req: InboundRequest, payload: unknown): string {
  const topic = topicOf(req);
  const { id, date_modified_gmt, date_created_gmt } = parsePayload(keySchema, payload, topic);
  const version =
    date_modified_gmt || date_created_gmt || header(req, 'x-wc-webhook-delivery-id') || 'unversioned';
  return `${topic}:${id}:${version}`;
}
