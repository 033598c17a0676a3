// Canonical event types, the topic each belongs to, and the schema of its `data`. A connector's
// `normalize` output is checked against these before anything is stored: no half-made events.
import { z } from 'zod';
import {
  appSchema,
  customerSchema,
  invoiceSchema,
  orderSchema,
  paymentSchema,
  privacySchema,
  productSchema,
  refundSchema,
} from './records.ts';

export const TOPICS = [
  'order-events',
  'customer-events',
  'product-events',
  'invoice-events',
  'payment-events',
  'app-events',
  'custom-events',
] as const;
export type Topic = (typeof TOPICS)[number];

const customerDeleted = z.object({ customer_id: z.string(), external_ids: z.record(z.string(), z.string()) });
const productDeleted = z.object({ product_id: z.string(), external_ids: z.record(z.string(), z.string()) });

const endpointDisabled = z.object({
  destination_id: z.string(),
  connector: z.string(),
  reason: z.enum(['gone', 'failing']).describe('gone: it answered 410; failing: it failed for too long'),
  failing_since: z.string().nullable(),
  disabled_at: z.string(),
});
const deliveryExhausted = z.object({
  delivery_id: z.string(),
  destination_id: z.string(),
  event_id: z.string(),
  event_type: z.string(),
  attempts: z.number().int(),
  last_status_code: z.number().int().nullable(),
  last_error: z.string().nullable(),
});

export const EVENT_DATA = {
  'order.created': orderSchema,
  'order.updated': orderSchema,
  'order.paid': orderSchema,
  'order.fulfilled': orderSchema,
  'order.cancelled': orderSchema,
  'order.refunded': orderSchema,
  'refund.created': refundSchema,
  'customer.created': customerSchema,
  'customer.updated': customerSchema,
  'customer.deleted': customerDeleted,
  'product.created': productSchema,
  'product.updated': productSchema,
  'product.deleted': productDeleted,
  'invoice.created': invoiceSchema,
  'invoice.updated': invoiceSchema,
  'invoice.paid': invoiceSchema,
  'invoice.payment_failed': invoiceSchema,
  'payment.succeeded': paymentSchema,
  'payment.failed': paymentSchema,
  'app.uninstalled': appSchema,
  'privacy.data_request': privacySchema,
  'privacy.customer_redact': privacySchema,
  'privacy.shop_redact': privacySchema,
  'endpoint.disabled': endpointDisabled,
  'delivery.exhausted': deliveryExhausted,
} as const;

/** Operational events the hub itself emits about delivery; never routed back to the destination they name. */
export const SYSTEM_EVENT_TYPES = ['endpoint.disabled', 'delivery.exhausted'] as const;

export type KnownEventType = keyof typeof EVENT_DATA;
export type EventData<T extends KnownEventType> = z.infer<(typeof EVENT_DATA)[T]>;
export const KNOWN_EVENT_TYPES = Object.keys(EVENT_DATA) as KnownEventType[];

/** `custom.<name>` with dotted lowercase segments, e.g. custom.cart.abandoned. */
export const CUSTOM_TYPE = /^custom(\.[a-z0-9_]+){1,5}$/;

/**
 * A canonical type's name. Own keys only: `type in EVENT_DATA` would also take the names every
 * object inherits (`constructor`, `toString`, `__proto__`), which come from requests as any word does.
 */
export function isKnownEventType(type: string): type is KnownEventType {
  return Object.hasOwn(EVENT_DATA, type);
}

export function isEventType(type: string): boolean {
  return isKnownEventType(type) || CUSTOM_TYPE.test(type);
}

export function topicOf(type: string): Topic {
  const family = type.split('.')[0];
  switch (family) {
    case 'order':
      return 'order-events';
    case 'refund':
    case 'payment':
      return 'payment-events';
    case 'customer':
      return 'customer-events';
    case 'product':
      return 'product-events';
    case 'invoice':
      return 'invoice-events';
    case 'app':
    case 'privacy':
    case 'endpoint':
    case 'delivery':
      return 'app-events';
    default:
      return 'custom-events';
  }
}

const customData = z.record(z.string(), z.unknown());

/** Validates `data` for a known type (custom types take any JSON object). */
export function parseEventData(type: string, data: unknown): z.ZodSafeParseResult<unknown> {
  const schema: z.ZodType = isKnownEventType(type) ? EVENT_DATA[type] : customData;
  return schema.safeParse(data);
}
