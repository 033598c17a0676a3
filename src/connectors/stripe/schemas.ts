// Zod schemas of the Stripe event envelope and of the API objects this connector reads (snapshot
// events: `data.object` is the object as it was when the event happened). Only the fields used
// are declared; Stripe adds fields in every API version, so unknown ones are ignored.
import { z } from 'zod';

const timestamp = z.number().int().describe('Unix seconds');
const minorAmount = z.number().int().describe('minor units of the currency (cents; yen for JPY)');
const currency = z.string().regex(/^[a-zA-Z]{3}$/, 'an ISO 4217 code');
const text = z.string().nullable().optional();

/** An id, or the object when the field was expanded (`customer`, `invoice`, `payment_intent`). */
export const refSchema = z
  .union([z.string().min(1), z.object({ id: z.string().min(1) })])
  .nullable()
  .optional();

export function refId(ref: z.infer<typeof refSchema>): string | null {
  if (ref == null) return null;
  return typeof ref === 'string' ? ref : ref.id;
}

export const eventSchema = z.object({
  id: z.string().min(1),
  object: z.literal('event'),
  type: z.string().min(1),
  created: timestamp,
  api_version: z.string().nullable().optional(),
  livemode: z.boolean().optional(),
  /** Set on events of connected accounts (Connect). */
  account: z.string().min(1).optional(),
  /**
   * The API request that caused the event (null for automatic events); API versions before
   * 2017-05-25 send its id as a string.
   */
  request: z
    .union([z.string(), z.object({ id: z.string().nullable().optional() })])
    .nullable()
    .optional(),
  data: z.object({
    object: z.unknown(),
    /** For `*.updated`-like events: the changed fields' values before the event. */
    previous_attributes: z.record(z.string(), z.unknown()).optional(),
  }),
});
export type StripeEvent = z.infer<typeof eventSchema>;

export const addressSchema = z.object({
  line1: text,
  line2: text,
  city: text,
  state: text,
  postal_code: text,
  country: text,
});

export const customerSchema = z.object({
  id: z.string().min(1),
  object: z.literal('customer'),
  email: text,
  name: text,
  phone: text,
  address: addressSchema.nullable().optional(),
  created: timestamp.optional(),
});
export type StripeCustomer = z.infer<typeof customerSchema>;

export const invoiceSchema = z.object({
  id: z.string().min(1),
  object: z.literal('invoice'),
  number: text,
  customer: refSchema,
  status: text,
  currency,
  total: minorAmount,
  amount_due: minorAmount.nullable().optional(),
  amount_paid: minorAmount.nullable().optional(),
  due_date: timestamp.nullable().optional(),
  created: timestamp.optional(),
  lines: z
    .object({
      data: z.array(
        z.object({
          description: text,
          amount: minorAmount,
          quantity: z.number().int().nullable().optional(),
        }),
      ),
    })
    .nullable()
    .optional(),
});
export type StripeInvoice = z.infer<typeof invoiceSchema>;

export const paymentIntentSchema = z.object({
  id: z.string().min(1),
  object: z.literal('payment_intent'),
  amount: minorAmount,
  currency,
  status: z.string(),
  customer: refSchema,
  /** Removed from PaymentIntent in recent API versions; read when an older version sends it. */
  invoice: refSchema,
  last_payment_error: z.object({ code: text, decline_code: text, message: text }).nullable().optional(),
  created: timestamp.optional(),
});
export type StripePaymentIntent = z.infer<typeof paymentIntentSchema>;

export const refundSchema = z.object({
  id: z.string().min(1),
  amount: minorAmount,
  currency,
  /** Null for refunds of payments that are not charges (e.g. a customer balance). */
  charge: refSchema,
  payment_intent: refSchema,
  reason: text,
  created: timestamp,
});
export type StripeRefund = z.infer<typeof refundSchema>;

export const chargeSchema = z.object({
  id: z.string().min(1),
  object: z.literal('charge'),
  amount: minorAmount,
  amount_refunded: minorAmount,
  currency,
  customer: refSchema,
  payment_intent: refSchema,
  created: timestamp.optional(),
  /** Only present when expanded (or on API versions before 2022-11-15). */
  refunds: z
    .object({ data: z.array(refundSchema) })
    .nullable()
    .optional(),
});
export type StripeCharge = z.infer<typeof chargeSchema>;

/** What `charge.refunded` had before: the amount refunded until this refund. */
export const chargeRefundedBeforeSchema = z.object({ amount_refunded: minorAmount });

/** The id of the API request that caused the event, whichever shape the API version gives it. */
export function requestId(event: StripeEvent): string | null {
  const request = event.request;
  if (request == null) return null;
  return (typeof request === 'string' ? request : request.id) || null;
}
