// Shopify payloads → canonical records (src/events/records.ts). Money stays exact: amounts are
// normalized to the currency's precision (what normalizeAmount does, but failing as payload_invalid)
// and arithmetic runs on BigInt minor units.

import { fromMinorUnits, ISO_4217, toMinorUnits } from '../../events/money.ts';
import type { Address, Customer, LineItem, Order, Product, Refund } from '../../events/records.ts';
import { ConnectorError } from '../sdk.ts';
import type {
  AddressPayload,
  CustomerPayload,
  LineItemPayload,
  OrderPayload,
  ProductPayload,
  RefundPayload,
} from './payloads.ts';

/** Minor units of a Shopify amount, or payload_invalid when it is more precise than the currency. */
function minor(amount: string, currency: string, field: string): bigint {
  try {
    return toMinorUnits(amount, currency, ISO_4217);
  } catch {
    throw new ConnectorError('payload_invalid', `${field}: not a valid ${currency} amount`);
  }
}

function amount(value: string, currency: string, field: string): string {
  return fromMinorUnits(minor(value, currency, field), currency, ISO_4217);
}

function optionalAmount(value: string | null | undefined, currency: string, field: string): string | null {
  return value == null ? null : amount(value, currency, field);
}

export function address(a: AddressPayload | null | undefined): Address | null {
  if (!a) return null;
  const name = a.name ?? ([a.first_name, a.last_name].filter(Boolean).join(' ') || null);
  return {
    name,
    address1: a.address1 ?? null,
    address2: a.address2 ?? null,
    city: a.city ?? null,
    region: a.province ?? null,
    postal_code: a.zip ?? null,
    country: a.country ?? null,
    country_code: a.country_code ?? null,
  };
}

function lineItem(item: LineItemPayload, currency: string, quantity = item.quantity): LineItem {
  return {
    product_id: item.product_id ?? null,
    variant_id: item.variant_id ?? null,
    sku: item.sku || null,
    name: item.name || item.title || '',
    price: amount(item.price, currency, 'line_items.price'),
    quantity,
  };
}

/** Email consent: `email_marketing_consent.state` on current API versions, `accepts_marketing` before. */
function acceptsMarketing(c: CustomerPayload): boolean | undefined {
  if (c.email_marketing_consent) return c.email_marketing_consent.state === 'subscribed';
  return c.accepts_marketing ?? undefined;
}

export function customer(c: CustomerPayload, installationId: string): Customer {
  return {
    customer_id: c.id,
    email: c.email ?? null,
    first_name: c.first_name ?? null,
    last_name: c.last_name ?? null,
    phone: c.phone ?? null,
    ...(acceptsMarketing(c) === undefined ? {} : { accepts_marketing: acceptsMarketing(c) }),
    address: address(c.default_address),
    created_at: c.created_at ?? null,
    updated_at: c.updated_at ?? null,
    external_ids: { [installationId]: c.id },
  };
}

export function order(o: OrderPayload, installationId: string): Order {
  const cur = o.currency;
  const shippingAmount = o.total_shipping_price_set?.shop_money.amount ?? null;
  // Segment's revenue: total less shipping and tax, exact in minor units (no float drift).
  const revenue =
    minor(o.total_price, cur, 'total_price') -
    (shippingAmount === null ? 0n : minor(shippingAmount, cur, 'total_shipping_price_set')) -
    (o.total_tax == null ? 0n : minor(o.total_tax, cur, 'total_tax'));
  const codes = (o.discount_codes ?? []).map((d) => d.code).filter(Boolean);
  return {
    order_id: o.id,
    order_number: o.order_number == null ? null : String(o.order_number),
    total: amount(o.total_price, cur, 'total_price'),
    subtotal: optionalAmount(o.subtotal_price, cur, 'subtotal_price'),
    revenue: fromMinorUnits(revenue, cur, ISO_4217),
    tax: optionalAmount(o.total_tax, cur, 'total_tax'),
    shipping: optionalAmount(shippingAmount, cur, 'total_shipping_price_set'),
    discount: optionalAmount(o.total_discounts, cur, 'total_discounts'),
    currency: cur,
    coupon: codes.length > 0 ? codes.join(',') : null,
    financial_status: o.financial_status ?? null,
    fulfillment_status: o.fulfillment_status ?? null,
    products: o.line_items.map((item) => lineItem(item, cur)),
    customer: o.customer
      ? {
          customer_id: o.customer.id,
          email: o.customer.email ?? null,
          first_name: o.customer.first_name ?? null,
          last_name: o.customer.last_name ?? null,
          external_ids: { [installationId]: o.customer.id },
        }
      : null,
    billing_address: address(o.billing_address),
    shipping_address: address(o.shipping_address),
    created_at: o.created_at ?? null,
    updated_at: o.updated_at ?? null,
    cancelled_at: o.cancelled_at ?? null,
    external_ids: { [installationId]: o.id },
  };
}

/** Refund currency: the refund transactions', else the refunded lines' shop money. */
function refundCurrency(r: RefundPayload): string {
  const currencies = new Set([
    ...r.transactions.map((t) => t.currency),
    ...r.refund_line_items.flatMap((l) => (l.subtotal_set ? [l.subtotal_set.shop_money.currency_code] : [])),
  ]);
  const [first, ...rest] = currencies;
  if (first === undefined) throw new ConnectorError('payload_invalid', 'refund: transactions: no currency');
  if (rest.length > 0) throw new ConnectorError('payload_invalid', 'refund: more than one currency');
  return first;
}

/** The refunded money: the refund transactions that did not fail (pending ones are on their way). */
export function refund(r: RefundPayload, installationId: string): Refund {
  const cur = refundCurrency(r);
  const total = r.transactions
    .filter((t) => t.kind === 'refund' && t.status !== 'failure' && t.status !== 'error')
    .reduce((sum, t) => sum + minor(t.amount, cur, 'transactions.amount'), 0n);
  return {
    refund_id: r.id,
    order_id: r.order_id ?? null,
    // Filled in by the hub from the order's events (see the refund draft's `customerFrom`).
    customer_id: null,
    total: fromMinorUnits(total, cur, ISO_4217),
    currency: cur,
    reason: r.note ?? null,
    products: r.refund_line_items.map((l) => lineItem(l.line_item, cur, l.quantity)),
    created_at: r.created_at ?? r.processed_at ?? null,
    external_ids: { [installationId]: r.id },
  };
}

/**
 * Product webhooks carry no currency (prices are in the shop's currency, known only from the Admin
 * API), so prices are passed through as Shopify's decimal strings and `currency` is left null.
 */
export function product(p: ProductPayload, installationId: string, shopDomain: string): Product {
  const first = p.variants[0];
  return {
    product_id: p.id,
    name: p.title ?? null,
    sku: first?.sku || null,
    price: first?.price ?? null,
    currency: null,
    brand: p.vendor || null,
    category: p.category?.name || p.product_type || null,
    status: p.status ?? null,
    url: p.handle ? `https://${shopDomain}/products/${p.handle}` : null,
    image_url: p.image?.src ?? p.images?.[0]?.src ?? null,
    variants: p.variants.map((v) => ({
      variant_id: v.id,
      sku: v.sku || null,
      name: v.title ?? null,
      price: v.price ?? null,
    })),
    created_at: p.created_at ?? null,
    updated_at: p.updated_at ?? null,
    external_ids: { [installationId]: p.id },
  };
}
