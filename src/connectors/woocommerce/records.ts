// WooCommerce REST v3 resources → canonical records (src/events/records.ts). WooCommerce ids are
// integers; canonical ids are their decimal strings. Guest orders have customer_id 0: no customer.
import type { Address, Customer, LineItem, Order, Product } from '../../events/records.ts';
import { amountFromNumber, exactAmount, subtractAmounts } from './money.ts';
import type { WooAddress, WooCustomer, WooLineItem, WooOrder, WooProduct } from './schemas.ts';

/** `*_gmt` dates carry no offset but are UTC: "2026-03-01T10:15:30" → "2026-03-01T10:15:30Z". */
export function gmt(date: string | null | undefined): string | null {
  if (!date) return null;
  const iso = /(Z|[+-]\d\d:\d\d)$/.test(date) ? date : `${date}Z`;
  return Number.isNaN(Date.parse(iso)) ? null : iso;
}

const orNull = (value: string | null | undefined): string | null => (value ? value : null);
const idOrNull = (value: number | undefined): string | null => (value ? String(value) : null);

export function address(a: WooAddress | null | undefined): Address | null {
  if (!a) return null;
  const out: Address = {
    name: orNull([a.first_name, a.last_name].filter(Boolean).join(' ')),
    address1: orNull(a.address_1),
    address2: orNull(a.address_2),
    city: orNull(a.city),
    region: orNull(a.state),
    postal_code: orNull(a.postcode),
    country_code: orNull(a.country),
  };
  return Object.values(out).some((v) => v !== null) ? out : null;
}

function lineItem(item: WooLineItem, currency: string): LineItem {
  return {
    product_id: idOrNull(item.product_id),
    variant_id: idOrNull(item.variation_id),
    sku: orNull(item.sku),
    name: item.name,
    price:
      typeof item.price === 'number'
        ? amountFromNumber(item.price, currency, 'line_items.price')
        : exactAmount(item.price, currency, 'line_items.price'),
    quantity: item.quantity,
  };
}

/**
 * WooCommerce has one order status; the canonical record has two. Financial: refunded and failed
 * as such, otherwise paid once `date_paid` is set, else pending. Fulfillment: `completed` means
 * fulfilled (WooCommerce core has no partial fulfillment); anything else is unknown (null).
 */
function financialStatus(o: WooOrder): string {
  if (o.status === 'refunded' || o.status === 'failed') return o.status;
  return o.date_paid_gmt ? 'paid' : 'pending';
}

export function order(o: WooOrder, installationId: string): Order {
  const cur = o.currency.toUpperCase();
  const total = exactAmount(o.total, cur, 'total');
  const shipping = o.shipping_total ? exactAmount(o.shipping_total, cur, 'shipping_total') : null;
  const tax = o.total_tax ? exactAmount(o.total_tax, cur, 'total_tax') : null;
  const codes = (o.coupon_lines ?? []).map((c) => c.code).filter(Boolean);
  const customerId = idOrNull(o.customer_id);
  return {
    order_id: String(o.id),
    order_number: o.number ?? String(o.id),
    total,
    // Segment's revenue: total less shipping and tax (total_tax includes the shipping tax).
    revenue: subtractAmounts(total, [shipping ?? '0', tax ?? '0'], cur),
    tax,
    shipping,
    discount: o.discount_total ? exactAmount(o.discount_total, cur, 'discount_total') : null,
    currency: cur,
    coupon: codes.length > 0 ? codes.join(',') : null,
    financial_status: financialStatus(o),
    fulfillment_status: o.status === 'completed' ? 'fulfilled' : null,
    products: o.line_items.map((item) => lineItem(item, cur)),
    customer: customerId
      ? {
          customer_id: customerId,
          email: orNull(o.billing?.email),
          first_name: orNull(o.billing?.first_name),
          last_name: orNull(o.billing?.last_name),
          phone: orNull(o.billing?.phone),
          external_ids: { [installationId]: customerId },
        }
      : null,
    billing_address: address(o.billing),
    shipping_address: address(o.shipping),
    created_at: gmt(o.date_created_gmt),
    updated_at: gmt(o.date_modified_gmt),
    external_ids: { [installationId]: String(o.id) },
  };
}

export function customer(c: WooCustomer, installationId: string): Customer {
  const id = String(c.id);
  return {
    customer_id: id,
    email: orNull(c.email),
    first_name: orNull(c.first_name),
    last_name: orNull(c.last_name),
    phone: orNull(c.billing?.phone),
    address: address(c.billing),
    created_at: gmt(c.date_created_gmt),
    updated_at: gmt(c.date_modified_gmt),
    external_ids: { [installationId]: id },
  };
}

/** Product payloads carry no currency (prices are in the store's): prices stay as sent, currency null. */
export function product(p: WooProduct, installationId: string): Product {
  const id = String(p.id);
  return {
    product_id: id,
    name: orNull(p.name),
    sku: orNull(p.sku),
    price: p.price ? exactAmount(p.price, null, 'price') : null,
    currency: null,
    category: orNull(p.categories?.[0]?.name),
    status: orNull(p.status),
    url: orNull(p.permalink),
    image_url: orNull(p.images?.[0]?.src),
    ...(p.variations && p.variations.length > 0
      ? { variants: p.variations.map((v) => ({ variant_id: String(v) })) }
      : {}),
    created_at: gmt(p.date_created_gmt),
    updated_at: gmt(p.date_modified_gmt),
    external_ids: { [installationId]: id },
  };
}
