// WooCommerce simulator: REST API v3 payloads (orders, customers, products) as a store's webhooks
// carry them, encoded the way PHP's wp_json_encode does (escaped slashes, \u escapes), signed
// with base64 HMAC-SHA256, with every X-WC-Webhook-* header; plus the unsigned creation ping.
import { createHash, createHmac } from 'node:crypto';

export const WC_USER_AGENT = 'WooCommerce/9.8.5 Hookshot (WordPress/6.8.1)';

/** `2026-03-01T10:15:30`: WooCommerce's `*_gmt` form (UTC, no offset) of a Date. */
export function wcGmt(date: Date): string {
  return date.toISOString().slice(0, 19);
}

function address(kind: 'billing' | 'shipping') {
  return {
    first_name: 'John',
    last_name: 'Doe',
    company: '',
    address_1: '969 Market',
    address_2: '',
    city: 'San Francisco',
    state: 'CA',
    postcode: '94103',
    country: 'US',
    ...(kind === 'billing' ? { email: 'john.doe@example.com', phone: '(555) 555-5555' } : { phone: '' }),
  };
}

const at = (offsetMs: number) => new Date(Date.now() + offsetMs);

/** An order as GET /wp-json/wc/v3/orders/<id> returns it (trimmed of rarely used fields). */
export function wooOrder(overrides: Record<string, unknown> = {}) {
  const created = at(-3600_000);
  const modified = at(-60_000);
  return {
    id: 727,
    parent_id: 0,
    status: 'processing',
    currency: 'USD',
    version: '9.8.5',
    prices_include_tax: false,
    date_created: wcGmt(created),
    date_modified: wcGmt(modified),
    discount_total: '0.00',
    discount_tax: '0.00',
    shipping_total: '10.00',
    shipping_tax: '0.00',
    cart_tax: '1.35',
    total: '29.35',
    total_tax: '1.35',
    customer_id: 26,
    order_key: 'wc_order_58d2d042d1d',
    billing: address('billing'),
    shipping: address('shipping'),
    payment_method: 'bacs',
    payment_method_title: 'Direct Bank Transfer',
    transaction_id: '',
    customer_ip_address: '',
    customer_user_agent: '',
    created_via: 'checkout',
    customer_note: '',
    date_completed: null,
    date_paid: wcGmt(created),
    cart_hash: '',
    number: '727',
    meta_data: [],
    line_items: [
      {
        id: 315,
        name: 'Woo Single #1',
        product_id: 93,
        variation_id: 0,
        quantity: 2,
        tax_class: '',
        subtotal: '6.00',
        subtotal_tax: '0.45',
        total: '6.00',
        total_tax: '0.45',
        taxes: [{ id: 75, total: '0.45', subtotal: '0.45' }],
        meta_data: [],
        sku: '',
        price: 3,
        image: { id: '', src: '' },
        parent_name: null,
      },
      {
        id: 316,
        name: 'Ship Your Idea – Color: Black, Size: M Test',
        product_id: 22,
        variation_id: 23,
        quantity: 1,
        tax_class: '',
        subtotal: '12.00',
        subtotal_tax: '0.90',
        total: '12.00',
        total_tax: '0.90',
        taxes: [{ id: 75, total: '0.9', subtotal: '0.9' }],
        meta_data: [],
        sku: 'woo-ship-your-idea-black-m',
        price: 12,
        image: { id: '', src: '' },
        parent_name: 'Ship Your Idea',
      },
    ],
    tax_lines: [
      {
        id: 318,
        rate_code: 'US-CA-STATE TAX',
        rate_id: 75,
        label: 'State Tax',
        compound: false,
        tax_total: '1.35',
      },
    ],
    shipping_lines: [
      { id: 317, method_title: 'Flat Rate', method_id: 'flat_rate', total: '10.00', total_tax: '0.00' },
    ],
    fee_lines: [],
    coupon_lines: [],
    refunds: [],
    currency_symbol: '$',
    ...overrides,
    // The *_gmt twins follow their local fields unless given (the store runs on UTC here).
    date_created_gmt: overrides.date_created_gmt ?? wcGmt(created),
    date_modified_gmt: overrides.date_modified_gmt ?? wcGmt(modified),
    date_paid_gmt: overrides.date_paid_gmt === undefined ? wcGmt(created) : overrides.date_paid_gmt,
    date_completed_gmt: overrides.date_completed_gmt ?? null,
  };
}

/** A customer as GET /wp-json/wc/v3/customers/<id> returns it. */
export function wooCustomer(overrides: Record<string, unknown> = {}) {
  return {
    id: 26,
    date_created: wcGmt(at(-86_400_000)),
    date_created_gmt: wcGmt(at(-86_400_000)),
    date_modified: wcGmt(at(-60_000)),
    date_modified_gmt: wcGmt(at(-60_000)),
    email: 'john.doe@example.com',
    first_name: 'John',
    last_name: 'Doe',
    role: 'customer',
    username: 'john.doe',
    billing: address('billing'),
    shipping: address('shipping'),
    is_paying_customer: true,
    avatar_url: 'https://secure.gravatar.com/avatar/8eb1b522f60d11fa897de1dc6351b7e8?s=96',
    meta_data: [],
    ...overrides,
  };
}

/** A simple product as GET /wp-json/wc/v3/products/<id> returns it. */
export function wooProduct(overrides: Record<string, unknown> = {}) {
  return {
    id: 794,
    name: 'Premium Quality',
    slug: 'premium-quality-19',
    permalink: 'https://shop.example.com/product/premium-quality-19/',
    date_created: wcGmt(at(-86_400_000)),
    date_created_gmt: wcGmt(at(-86_400_000)),
    date_modified: wcGmt(at(-60_000)),
    date_modified_gmt: wcGmt(at(-60_000)),
    type: 'simple',
    status: 'publish',
    featured: false,
    catalog_visibility: 'visible',
    description: '<p>Pellentesque habitant morbi tristique senectus et netus.</p>\n',
    short_description: '<p>Pellentesque habitant morbi tristique.</p>\n',
    sku: 'PQ-19',
    price: '21.99',
    regular_price: '21.99',
    sale_price: '',
    on_sale: false,
    purchasable: true,
    total_sales: 0,
    virtual: false,
    downloadable: false,
    tax_status: 'taxable',
    manage_stock: false,
    stock_quantity: null,
    stock_status: 'instock',
    categories: [{ id: 9, name: 'Clothing', slug: 'clothing' }],
    tags: [],
    images: [
      {
        id: 792,
        src: 'https://shop.example.com/wp-content/uploads/2026/03/T_2_front-4.jpg',
        name: '',
        alt: '',
      },
    ],
    attributes: [],
    variations: [],
    meta_data: [],
    ...overrides,
  };
}

/** PHP's json_encode defaults, as wp_json_encode uses them: "/" → "\/", non-ASCII → \uXXXX. */
export function phpJson(value: unknown): string {
  return JSON.stringify(value)
    .replace(/\//g, '\\/')
    .replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export function signWooBody(body: string | Buffer, secret: string): string {
  return createHmac('sha256', secret).update(body).digest('base64');
}

export interface WooDelivery {
  /** e.g. `order.updated`. */
  topic: string;
  payload: unknown;
  secret: string;
  /** The store's home URL, sent as X-WC-Webhook-Source. */
  source?: string;
  webhookId?: number;
  /** Body override (raw bytes exactly as sent); otherwise phpJson(payload). */
  body?: string;
}

/** The body and headers of one delivery, as WC_Webhook::deliver() builds them. */
export function wooWebhookRequest(delivery: WooDelivery) {
  const body = delivery.body ?? phpJson(delivery.payload);
  const [resource = '', event = ''] = delivery.topic.split('.');
  const webhookId = delivery.webhookId ?? 12;
  const headers: Record<string, string> = {
    'Content-Type': 'application/json',
    'User-Agent': WC_USER_AGENT,
    'X-WC-Webhook-Source': delivery.source ?? 'https://shop.example.com/',
    'X-WC-Webhook-Topic': delivery.topic,
    'X-WC-Webhook-Resource': resource,
    'X-WC-Webhook-Event': event,
    'X-WC-Webhook-Signature': signWooBody(body, delivery.secret),
    'X-WC-Webhook-ID': String(webhookId),
    // wp_hash(webhook id . time()): new on every delivery.
    'X-WC-Webhook-Delivery-ID': createHash('md5')
      .update(`${webhookId}${Date.now()}${Math.random()}`)
      .digest('hex'),
  };
  return { body, headers };
}

/** The unsigned ping WooCommerce sends when a webhook is saved (WC_Webhook::deliver_ping). */
export function wooPingRequest(webhookId = 12) {
  return {
    body: `webhook_id=${webhookId}`,
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'User-Agent': WC_USER_AGENT },
  };
}

export async function sendWooWebhook(url: string, delivery: WooDelivery): Promise<Response> {
  const { body, headers } = wooWebhookRequest(delivery);
  return fetch(url, { method: 'POST', headers, body });
}

export async function sendWooPing(url: string, webhookId = 12): Promise<Response> {
  const { body, headers } = wooPingRequest(webhookId);
  return fetch(url, { method: 'POST', headers, body });
}
