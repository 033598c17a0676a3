// Zod schemas of the WooCommerce webhook payloads this connector reads: the REST API v3
// representation of the resource (what WooCommerce sends for created/updated/restored), or just
// `{ "id": … }` for deleted. Only the fields used are declared; unknown ones are ignored.
import { z } from 'zod';

const id = z.number().int().nonnegative();
/** Money as WooCommerce's REST API writes it: a decimal string ("29.35"). */
const money = z.string();
/** `*_gmt` dates: ISO 8601 without an offset ("2026-03-01T10:15:30"), UTC by definition. */
const gmtDate = z.string().nullable().optional();
const text = z.string().nullable().optional();

export const addressSchema = z.object({
  first_name: text,
  last_name: text,
  company: text,
  address_1: text,
  address_2: text,
  city: text,
  state: text,
  postcode: text,
  country: text,
  email: text,
  phone: text,
});
export type WooAddress = z.infer<typeof addressSchema>;

export const lineItemSchema = z.object({
  id: id.optional(),
  name: z.string(),
  product_id: id,
  variation_id: id.optional(),
  quantity: z.number().int(),
  sku: text,
  /** The unit price: a JSON number (a double), unlike every other amount. */
  price: z.union([z.number(), z.string()]),
});
export type WooLineItem = z.infer<typeof lineItemSchema>;

export const orderSchema = z.object({
  id: id,
  number: z.string().optional(),
  status: z.string(),
  currency: z.string().regex(/^[a-zA-Z]{3}$/, 'an ISO 4217 code'),
  date_created_gmt: gmtDate,
  date_modified_gmt: gmtDate,
  date_paid_gmt: gmtDate,
  discount_total: money.optional(),
  shipping_total: money.optional(),
  total: money,
  total_tax: money.optional(),
  customer_id: id,
  billing: addressSchema.nullable().optional(),
  shipping: addressSchema.nullable().optional(),
  line_items: z.array(lineItemSchema),
  coupon_lines: z.array(z.object({ code: z.string() })).optional(),
});
export type WooOrder = z.infer<typeof orderSchema>;

export const customerSchema = z.object({
  id: id,
  email: text,
  first_name: text,
  last_name: text,
  date_created_gmt: gmtDate,
  date_modified_gmt: gmtDate,
  billing: addressSchema.nullable().optional(),
});
export type WooCustomer = z.infer<typeof customerSchema>;

export const productSchema = z.object({
  id: id,
  name: text,
  type: text,
  status: text,
  permalink: text,
  sku: text,
  /** The current price; "" for a product without one (e.g. a variable product's parent). */
  price: text,
  date_created_gmt: gmtDate,
  date_modified_gmt: gmtDate,
  categories: z.array(z.object({ name: z.string() })).optional(),
  images: z.array(z.object({ src: z.string() })).optional(),
  variations: z.array(id).optional(),
});
export type WooProduct = z.infer<typeof productSchema>;

/** What WooCommerce sends for a `*.deleted` topic: the id alone (normalize refuses anything more). */
export const deletedSchema = z.object({ id: id });
