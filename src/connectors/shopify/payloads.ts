// Zod schemas of the Shopify webhook payloads Interchange reads (REST-format JSON, as in Shopify's
// documented examples). Only the fields the canonical records need; unknown fields are dropped.
import { z } from 'zod';

/** Shopify ids are JSON integers; json.ts turns those beyond 2^53 into digit strings first. */
export const shopifyId = z
  .union([z.number().int().nonnegative(), z.string().regex(/^\d+$/, 'an integer id')])
  .transform((id) => String(id));

/** Money as Shopify sends it: a decimal string ("19.99"), never a float. */
export const money = z.string().regex(/^-?\d+(\.\d+)?$/, 'a decimal amount as a string');

export const currency = z
  .string()
  .regex(/^[A-Za-z]{3}$/, 'an ISO 4217 code')
  .transform((code) => code.toUpperCase());

const time = z.iso.datetime({ offset: true });
const text = z.string().nullish();

/** `{ shop_money: { amount, currency_code }, presentment_money: ... }`: we read the shop's money. */
export const moneySet = z.object({ shop_money: z.object({ amount: money, currency_code: currency }) });

export const addressPayload = z.object({
  name: text,
  first_name: text,
  last_name: text,
  address1: text,
  address2: text,
  city: text,
  province: text,
  province_code: text,
  zip: text,
  country: text,
  country_code: text,
});

export const lineItemPayload = z
  .object({
    id: shopifyId.nullish(),
    product_id: shopifyId.nullish(),
    variant_id: shopifyId.nullish(),
    sku: text,
    name: text,
    title: text,
    price: money,
    quantity: z.number().int(),
  })
  .refine((item) => Boolean(item.name || item.title), {
    message: 'a line item needs a name or title',
    path: ['title'],
  });

export const customerPayload = z.object({
  id: shopifyId,
  email: text,
  first_name: text,
  last_name: text,
  phone: text,
  /** Older API versions; replaced by email_marketing_consent. */
  accepts_marketing: z.boolean().nullish(),
  email_marketing_consent: z.object({ state: z.string() }).nullish(),
  default_address: addressPayload.nullish(),
  created_at: time.nullish(),
  updated_at: time.nullish(),
});

export const orderPayload = z.object({
  id: shopifyId,
  order_number: z.union([z.number().int(), z.string()]).nullish(),
  currency,
  total_price: money,
  subtotal_price: money.nullish(),
  total_tax: money.nullish(),
  total_discounts: money.nullish(),
  total_shipping_price_set: moneySet.nullish(),
  discount_codes: z.array(z.object({ code: z.string() })).nullish(),
  financial_status: text,
  fulfillment_status: text,
  line_items: z.array(lineItemPayload),
  customer: customerPayload.nullish(),
  billing_address: addressPayload.nullish(),
  shipping_address: addressPayload.nullish(),
  created_at: time.nullish(),
  updated_at: time.nullish(),
  cancelled_at: time.nullish(),
});

export const refundPayload = z.object({
  id: shopifyId,
  order_id: shopifyId.nullish(),
  note: text,
  created_at: time.nullish(),
  processed_at: time.nullish(),
  refund_line_items: z
    .array(
      z.object({ quantity: z.number().int(), line_item: lineItemPayload, subtotal_set: moneySet.nullish() }),
    )
    .default([]),
  transactions: z
    .array(z.object({ id: shopifyId, kind: z.string(), status: text, amount: money, currency }))
    .default([]),
});

export const productPayload = z.object({
  id: shopifyId,
  title: text,
  handle: text,
  vendor: text,
  product_type: text,
  /** Newer API versions: the standard product taxonomy category. */
  category: z.object({ name: text }).nullish(),
  status: text,
  variants: z.array(z.object({ id: shopifyId, sku: text, title: text, price: money.nullish() })).default([]),
  image: z.object({ src: z.string() }).nullish(),
  images: z.array(z.object({ src: z.string() })).nullish(),
  created_at: time.nullish(),
  updated_at: time.nullish(),
});

/** customers/delete and products/delete carry little more than the id. */
export const deletedPayload = z.object({ id: shopifyId });

/** app/uninstalled sends the shop object: its permanent domain says which shop left. */
export const shopPayload = z.object({ id: shopifyId.nullish(), myshopify_domain: z.string() });

const privacyCustomer = z.object({ id: shopifyId, email: text, phone: text });

/** customers/data_request and customers/redact (mandatory compliance topics). */
export const customerPrivacyPayload = z.object({
  shop_id: shopifyId,
  shop_domain: z.string(),
  customer: privacyCustomer,
  orders_requested: z.array(shopifyId).nullish(),
  orders_to_redact: z.array(shopifyId).nullish(),
  data_request: z.object({ id: shopifyId }).nullish(),
});

/** shop/redact: sent 48 hours after uninstall. */
export const shopRedactPayload = z.object({ shop_id: shopifyId, shop_domain: z.string() });

/** The kinds of resource a webhook body is about, as its GraphQL id names them. */
export type ResourceKind = 'Order' | 'Refund' | 'Customer' | 'Product';

/** A top-level field that only one kind of body has: a body with another kind's is not of this kind. */
const MARKS: ReadonlyArray<readonly [ResourceKind, string]> = [
  ['Order', 'line_items'],
  ['Refund', 'refund_line_items'],
  ['Product', 'variants'],
];

/**
 * The signature covers the body, not the topic header: a body must show that it is the topic's
 * kind of resource. Its `admin_graphql_api_id` (gid://shopify/Order/123), when it has one, must
 * name that kind and its id, and it must not carry a field only another kind has (an order's
 * `line_items` under products/delete). Returns the reason it is not, or undefined.
 */
export function notOfKind(payload: unknown, kind: ResourceKind): string | undefined {
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) return undefined;
  const body = payload as Record<string, unknown>;
  const gid = body.admin_graphql_api_id;
  if (gid !== undefined && gid !== null) {
    const prefix = `gid://shopify/${kind}/`;
    if (typeof gid !== 'string' || !gid.startsWith(prefix)) return `admin_graphql_api_id: not a ${kind}`;
    if (gid.slice(prefix.length) !== String(body.id)) return 'admin_graphql_api_id: not this id';
  }
  const foreign = MARKS.find(([other, field]) => other !== kind && field in body);
  return foreign ? `${foreign[1]}: a field of a ${foreign[0]}, not of a ${kind}` : undefined;
}

export type OrderPayload = z.infer<typeof orderPayload>;
export type CustomerPayload = z.infer<typeof customerPayload>;
export type LineItemPayload = z.infer<typeof lineItemPayload>;
export type AddressPayload = z.infer<typeof addressPayload>;
export type RefundPayload = z.infer<typeof refundPayload>;
export type ProductPayload = z.infer<typeof productPayload>;
