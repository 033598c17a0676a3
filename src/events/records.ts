// Canonical records carried in event `data`. Field names follow the Segment e-commerce spec v2
// where it has one (order_id, total, revenue, products[].product_id …). Amounts are exact
// decimal strings (see money.ts). `external_ids` maps installation id → the provider's id.
import { z } from 'zod';
import { amountSchema, currencySchema } from './money.ts';

const externalIds = z.record(z.string(), z.string()).describe('installation id → the id in that provider');
const isoTime = z.iso.datetime({ offset: true });

export const addressSchema = z.object({
  name: z.string().nullable().optional(),
  address1: z.string().nullable().optional(),
  address2: z.string().nullable().optional(),
  city: z.string().nullable().optional(),
  region: z.string().nullable().optional(),
  postal_code: z.string().nullable().optional(),
  country: z.string().nullable().optional(),
  country_code: z.string().nullable().optional(),
});

export const customerSchema = z.object({
  customer_id: z.string(),
  email: z.string().nullable().optional(),
  first_name: z.string().nullable().optional(),
  last_name: z.string().nullable().optional(),
  phone: z.string().nullable().optional(),
  accepts_marketing: z.boolean().optional(),
  address: addressSchema.nullable().optional(),
  created_at: isoTime.nullable().optional(),
  updated_at: isoTime.nullable().optional(),
  external_ids: externalIds,
});

export const lineItemSchema = z.object({
  product_id: z.string().nullable(),
  variant_id: z.string().nullable().optional(),
  sku: z.string().nullable().optional(),
  name: z.string(),
  price: amountSchema,
  quantity: z.number().int(),
});

export const orderSchema = z.object({
  order_id: z.string(),
  order_number: z.string().nullable().optional(),
  total: amountSchema,
  subtotal: amountSchema.nullable().optional(),
  revenue: amountSchema.describe('total less shipping and tax'),
  tax: amountSchema.nullable().optional(),
  shipping: amountSchema.nullable().optional(),
  discount: amountSchema.nullable().optional(),
  currency: currencySchema,
  coupon: z.string().nullable().optional(),
  financial_status: z.string().nullable().optional(),
  fulfillment_status: z.string().nullable().optional(),
  products: z.array(lineItemSchema),
  customer: customerSchema.partial().extend({ customer_id: z.string() }).nullable().optional(),
  billing_address: addressSchema.nullable().optional(),
  shipping_address: addressSchema.nullable().optional(),
  created_at: isoTime.nullable().optional(),
  updated_at: isoTime.nullable().optional(),
  cancelled_at: isoTime.nullable().optional(),
  external_ids: externalIds,
});

export const refundSchema = z.object({
  refund_id: z.string(),
  order_id: z.string().nullable().optional(),
  payment_id: z.string().nullable().optional(),
  customer_id: z
    .string()
    .nullable()
    .optional()
    .describe("the provider's customer: the refunded order's or payment's when the refund names none"),
  total: amountSchema,
  currency: currencySchema,
  reason: z.string().nullable().optional(),
  products: z.array(lineItemSchema).optional(),
  created_at: isoTime.nullable().optional(),
  external_ids: externalIds,
});

export const productSchema = z.object({
  product_id: z.string(),
  name: z.string().nullable().optional(),
  sku: z.string().nullable().optional(),
  price: amountSchema.nullable().optional(),
  currency: currencySchema.nullable().optional(),
  brand: z.string().nullable().optional(),
  category: z.string().nullable().optional(),
  status: z.string().nullable().optional(),
  url: z.string().nullable().optional(),
  image_url: z.string().nullable().optional(),
  variants: z
    .array(
      z.object({
        variant_id: z.string(),
        sku: z.string().nullable().optional(),
        name: z.string().nullable().optional(),
        price: amountSchema.nullable().optional(),
      }),
    )
    .optional(),
  created_at: isoTime.nullable().optional(),
  updated_at: isoTime.nullable().optional(),
  external_ids: externalIds,
});

export const invoiceSchema = z.object({
  invoice_id: z.string(),
  number: z.string().nullable().optional(),
  customer_id: z.string().nullable().optional(),
  status: z.string().nullable().optional(),
  total: amountSchema,
  amount_due: amountSchema.nullable().optional(),
  amount_paid: amountSchema.nullable().optional(),
  currency: currencySchema,
  due_date: isoTime.nullable().optional(),
  lines: z
    .array(
      z.object({
        description: z.string().nullable().optional(),
        amount: amountSchema,
        quantity: z.number().int().nullable().optional(),
      }),
    )
    .optional(),
  created_at: isoTime.nullable().optional(),
  external_ids: externalIds,
});

export const paymentSchema = z.object({
  payment_id: z.string(),
  total: amountSchema,
  currency: currencySchema,
  status: z.string(),
  customer_id: z.string().nullable().optional(),
  invoice_id: z.string().nullable().optional(),
  failure_code: z.string().nullable().optional(),
  failure_message: z.string().nullable().optional(),
  created_at: isoTime.nullable().optional(),
  external_ids: externalIds,
});

export const privacySchema = z.object({
  shop_domain: z.string().nullable().optional(),
  customer_id: z.string().nullable().optional(),
  email: z.string().nullable().optional(),
  orders: z.array(z.string()).optional(),
  request_id: z.string().nullable().optional(),
});

export const appSchema = z.object({ account: z.string().nullable().optional(), reason: z.string() });

export type Customer = z.infer<typeof customerSchema>;
export type Order = z.infer<typeof orderSchema>;
export type LineItem = z.infer<typeof lineItemSchema>;
export type Refund = z.infer<typeof refundSchema>;
export type Product = z.infer<typeof productSchema>;
export type Invoice = z.infer<typeof invoiceSchema>;
export type Payment = z.infer<typeof paymentSchema>;
export type Address = z.infer<typeof addressSchema>;
