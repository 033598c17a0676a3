// A local fake of Shopify's webhook sender, for tests and the demo: payloads shaped like Shopify's
// documented examples (REST-format JSON: integer ids, often beyond 2^53; money as strings), signed
// the way Shopify signs them, and sent over real HTTP. Personal data is fictional (example.com).
import { createHmac, randomUUID } from 'node:crypto';

export const SHOPIFY_WEBHOOK_TOPICS = [
  'orders/create',
  'orders/updated',
  'orders/paid',
  'orders/fulfilled',
  'orders/cancelled',
  'refunds/create',
  'customers/create',
  'customers/update',
  'customers/delete',
  'products/create',
  'products/update',
  'products/delete',
  'app/uninstalled',
  'customers/data_request',
  'customers/redact',
  'shop/redact',
] as const;
export type ShopifyWebhookTopic = (typeof SHOPIFY_WEBHOOK_TOPICS)[number];

export const SIM_SHOP_DOMAIN = 'interchange-demo.myshopify.com';

type Json = Record<string, unknown>;

/**
 * JSON as Shopify writes it: bigint values become bare integer literals, so ids beyond 2^53
 * (which a JS number cannot hold) reach the receiver digit for digit. Undefined fields are left out.
 */
export function shopifyJson(value: unknown): string {
  if (typeof value === 'bigint') return value.toString();
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(shopifyJson).join(',')}]`;
  const fields = Object.entries(value).filter(([, v]) => v !== undefined);
  return `{${fields.map(([k, v]) => `${JSON.stringify(k)}:${shopifyJson(v)}`).join(',')}}`;
}

// Exact decimal arithmetic on Shopify's money strings (the sim stays independent of src/).
const scaleOf = (amount: string): number => amount.split('.')[1]?.length ?? 0;
function scaled(amount: string, scale: number): bigint {
  const [whole = '0', fraction = ''] = amount.replace('-', '').split('.');
  const value = BigInt(whole + fraction.padEnd(scale, '0'));
  return amount.startsWith('-') ? -value : value;
}
/** Σ amount × factor, written with the largest number of decimals among the amounts. */
function combine(terms: ReadonlyArray<readonly [amount: string, factor: number]>): string {
  const scale = Math.max(0, ...terms.map(([a]) => scaleOf(a)));
  const value = terms.reduce((sum, [a, k]) => sum + scaled(a, scale) * BigInt(k), 0n);
  const digits = (value < 0n ? -value : value).toString().padStart(scale + 1, '0');
  const text = scale === 0 ? digits : `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
  return value < 0n ? `-${text}` : text;
}

const moneySet = (amount: string, currency: string) => ({
  shop_money: { amount, currency_code: currency },
  presentment_money: { amount, currency_code: currency },
});

export function shopifyAddress(overrides: Json = {}): Json {
  return {
    first_name: 'Steve',
    address1: '123 Shipping Street',
    phone: '555-555-0100',
    city: 'Shippington',
    zip: '40003',
    province: 'Kentucky',
    country: 'United States',
    last_name: 'Shipper',
    address2: null,
    company: 'Shipping Company',
    latitude: null,
    longitude: null,
    name: 'Steve Shipper',
    country_code: 'US',
    province_code: 'KY',
    ...overrides,
  };
}

export function shopifyCustomer(overrides: Json & { id?: bigint } = {}): Json {
  const id = overrides.id ?? 706405506930370084n;
  return {
    id,
    email: 'bob.biller@example.com',
    created_at: '2024-05-01T10:15:30-04:00',
    updated_at: '2024-05-02T08:00:00-04:00',
    first_name: 'Bob',
    last_name: 'Biller',
    state: 'enabled',
    note: null,
    verified_email: true,
    multipass_identifier: null,
    tax_exempt: false,
    phone: null,
    email_marketing_consent: { state: 'subscribed', opt_in_level: 'single_opt_in', consent_updated_at: null },
    sms_marketing_consent: null,
    tags: '',
    currency: 'USD',
    tax_exemptions: [],
    admin_graphql_api_id: `gid://shopify/Customer/${id}`,
    default_address: shopifyAddress({ id: 1053317292n, customer_id: id, default: true }),
    addresses: [shopifyAddress({ id: 1053317292n, customer_id: id, default: true })],
    ...overrides,
  };
}

export interface SimLineItem {
  productId?: bigint | null;
  variantId?: bigint | null;
  sku?: string | null;
  title: string;
  variantTitle?: string | null;
  /** Unit price, as Shopify writes it ("199.00"; "1500" for JPY). */
  price: string;
  quantity: number;
}

export function shopifyLineItem(item: SimLineItem, currency: string, index = 0): Json {
  const id = 866550311766439020n + BigInt(index);
  const zero = scaleOf(item.price) === 0 ? '0' : '0.00';
  return {
    id,
    admin_graphql_api_id: `gid://shopify/LineItem/${id}`,
    current_quantity: item.quantity,
    fulfillable_quantity: item.quantity,
    fulfillment_service: 'manual',
    fulfillment_status: null,
    gift_card: false,
    grams: 567,
    name: item.variantTitle ? `${item.title} - ${item.variantTitle}` : item.title,
    price: item.price,
    price_set: moneySet(item.price, currency),
    product_exists: item.productId !== null,
    product_id: item.productId === undefined ? 632910392n : item.productId,
    properties: [],
    quantity: item.quantity,
    requires_shipping: true,
    sku: item.sku === undefined ? 'IPOD2008PINK' : item.sku,
    taxable: true,
    title: item.title,
    total_discount: zero,
    total_discount_set: moneySet(zero, currency),
    variant_id: item.variantId === undefined ? 808950810n : item.variantId,
    variant_inventory_management: 'shopify',
    variant_title: item.variantTitle ?? null,
    vendor: null,
    tax_lines: [],
    duties: [],
    discount_allocations: [],
  };
}

export interface OrderOptions {
  id?: bigint;
  orderNumber?: number;
  currency?: string;
  lineItems?: SimLineItem[];
  /** Order-level amounts; totals are derived exactly: subtotal = Σ lines − discount, total = subtotal + shipping + tax. */
  shipping?: string;
  tax?: string;
  discount?: string;
  discountCode?: string;
  /** null: a guest checkout without a customer. */
  customer?: Json | null;
  financialStatus?: string;
  fulfillmentStatus?: string | null;
  createdAt?: string;
  updatedAt?: string;
  cancelledAt?: string | null;
}

const DEFAULT_LINES: SimLineItem[] = [
  { title: 'IPod Nano - 8GB', variantTitle: 'Pink', price: '199.00', quantity: 1 },
  {
    productId: 632910393n,
    variantId: 808950811n,
    sku: 'CASE-BLK',
    title: 'Leather Case',
    price: '24.50',
    quantity: 2,
  },
];

export function shopifyOrder(options: OrderOptions = {}, overrides: Json = {}): Json {
  const id = options.id ?? 820982911946154508n;
  const currency = options.currency ?? 'USD';
  const lines = options.lineItems ?? DEFAULT_LINES;
  const zero = currency === 'JPY' ? '0' : '0.00';
  const [shipping, tax, discount] = [
    options.shipping ?? '10.00',
    options.tax ?? zero,
    options.discount ?? zero,
  ];
  const lineTotal = combine(lines.map((l) => [l.price, l.quantity] as const));
  const subtotal = combine([
    [lineTotal, 1],
    [discount, -1],
  ]);
  const total = combine([
    [subtotal, 1],
    [shipping, 1],
    [tax, 1],
  ]);
  const createdAt = options.createdAt ?? '2024-05-03T14:22:05-04:00';
  const number = options.orderNumber ?? 1001;
  return {
    id,
    admin_graphql_api_id: `gid://shopify/Order/${id}`,
    app_id: null,
    browser_ip: null,
    buyer_accepts_marketing: true,
    cancel_reason: options.cancelledAt ? 'customer' : null,
    cancelled_at: options.cancelledAt ?? null,
    confirmation_number: 'ZC9KDSWE2',
    confirmed: true,
    contact_email: 'jon.doe@example.com',
    created_at: createdAt,
    currency,
    current_subtotal_price: subtotal,
    current_total_price: total,
    current_total_tax: tax,
    customer_locale: 'en',
    discount_codes: options.discountCode
      ? [{ code: options.discountCode, amount: discount, type: 'fixed_amount' }]
      : [],
    email: 'jon.doe@example.com',
    financial_status: options.financialStatus ?? 'paid',
    fulfillment_status: options.fulfillmentStatus === undefined ? null : options.fulfillmentStatus,
    name: `#${number}`,
    number: number - 1000,
    order_number: number,
    presentment_currency: currency,
    processed_at: createdAt,
    subtotal_price: subtotal,
    subtotal_price_set: moneySet(subtotal, currency),
    tags: '',
    taxes_included: false,
    test: false,
    total_discounts: discount,
    total_discounts_set: moneySet(discount, currency),
    total_line_items_price: lineTotal,
    total_price: total,
    total_price_set: moneySet(total, currency),
    total_shipping_price_set: moneySet(shipping, currency),
    total_tax: tax,
    total_tax_set: moneySet(tax, currency),
    total_weight: 0,
    updated_at: options.updatedAt ?? createdAt,
    billing_address: shopifyAddress(),
    customer:
      options.customer === undefined
        ? shopifyCustomer({
            id: 115310627314723954n,
            email: 'jon.doe@example.com',
            first_name: 'Jon',
            last_name: 'Doe',
          })
        : options.customer,
    fulfillments: [],
    line_items: lines.map((l, i) => shopifyLineItem(l, currency, i)),
    refunds: [],
    shipping_address: shopifyAddress(),
    shipping_lines: [
      {
        id: 271878346596884015n,
        code: 'Standard',
        price: shipping,
        price_set: moneySet(shipping, currency),
        source: 'shopify',
        title: 'Standard',
        tax_lines: [],
      },
    ],
    ...overrides,
  };
}

export interface RefundOptions {
  id?: bigint;
  orderId?: bigint;
  currency?: string;
  /** Refunded lines; the refunded money defaults to Σ price × quantity. */
  lineItems?: SimLineItem[];
  amount?: string;
  note?: string | null;
  transactionStatus?: string;
}

export function shopifyRefund(options: RefundOptions = {}, overrides: Json = {}): Json {
  const id = options.id ?? 890088186047892319n;
  const orderId = options.orderId ?? 820982911946154508n;
  const currency = options.currency ?? 'USD';
  const lines = options.lineItems ?? DEFAULT_LINES.slice(0, 1);
  const amount = options.amount ?? combine(lines.map((l) => [l.price, l.quantity] as const));
  return {
    id,
    order_id: orderId,
    created_at: '2024-05-05T09:00:00-04:00',
    note: options.note === undefined ? 'Item arrived damaged' : options.note,
    user_id: 548380009n,
    processed_at: '2024-05-05T09:00:00-04:00',
    restock: false,
    duties: [],
    admin_graphql_api_id: `gid://shopify/Refund/${id}`,
    refund_line_items: lines.map((l, i) => {
      const subtotal = combine([[l.price, l.quantity]]);
      return {
        id: 487817672276298554n + BigInt(i),
        quantity: l.quantity,
        line_item_id: 866550311766439020n + BigInt(i),
        location_id: null,
        restock_type: 'no_restock',
        subtotal: Number(subtotal), // Shopify sends this one as a float: readers must use subtotal_set
        total_tax: 0,
        subtotal_set: moneySet(subtotal, currency),
        total_tax_set: moneySet(currency === 'JPY' ? '0' : '0.00', currency),
        line_item: shopifyLineItem(l, currency, i),
      };
    }),
    transactions: [
      {
        id: 245135271310201542n,
        order_id: orderId,
        kind: 'refund',
        gateway: 'bogus',
        status: options.transactionStatus ?? 'success',
        message: null,
        created_at: '2024-05-05T09:00:00-04:00',
        test: false,
        parent_id: 389404469n,
        processed_at: '2024-05-05T09:00:00-04:00',
        source_name: 'web',
        amount,
        currency,
        admin_graphql_api_id: 'gid://shopify/OrderTransaction/245135271310201542',
      },
    ],
    order_adjustments: [],
    ...overrides,
  };
}

export function shopifyProduct(overrides: Json & { id?: bigint } = {}): Json {
  const id = overrides.id ?? 788032119674292922n;
  const variant = (variantId: bigint, title: string, sku: string, position: number) => ({
    admin_graphql_api_id: `gid://shopify/ProductVariant/${variantId}`,
    barcode: null,
    compare_at_price: '24.99',
    created_at: '2024-04-01T12:00:00-04:00',
    id: variantId,
    inventory_policy: 'deny',
    position,
    price: '19.99',
    product_id: id,
    sku,
    taxable: true,
    title,
    updated_at: '2024-04-02T12:00:00-04:00',
    option1: title,
    option2: null,
    option3: null,
    image_id: null,
    inventory_item_id: null,
    inventory_quantity: 75,
    old_inventory_quantity: 75,
  });
  return {
    admin_graphql_api_id: `gid://shopify/Product/${id}`,
    body_html: 'An example T-Shirt',
    created_at: '2024-04-01T12:00:00-04:00',
    handle: 'example-t-shirt',
    id,
    product_type: 'Shirts',
    published_at: '2024-04-01T12:00:00-04:00',
    template_suffix: null,
    title: 'Example T-Shirt',
    updated_at: '2024-04-02T12:00:00-04:00',
    vendor: 'Acme',
    status: 'active',
    published_scope: 'web',
    tags: 'example, mens, t-shirt',
    variants: [
      variant(642667041472713922n, 'Small', 'example-shirt-s', 1),
      variant(757650484644203962n, 'Medium', 'example-shirt-m', 2),
    ],
    options: [
      { id: 527050010214937811n, product_id: id, name: 'Size', position: 1, values: ['Small', 'Medium'] },
    ],
    images: [
      {
        id: 850703190n,
        product_id: id,
        position: 1,
        src: 'https://cdn.shopify.com/s/files/1/example-t-shirt.jpg',
      },
    ],
    image: {
      id: 850703190n,
      product_id: id,
      position: 1,
      src: 'https://cdn.shopify.com/s/files/1/example-t-shirt.jpg',
    },
    media: [],
    has_variants_that_requires_components: false,
    category: null,
    ...overrides,
  };
}

/** app/uninstalled sends the shop, as the Admin API's Shop resource. */
export function shopifyShop(shopDomain = SIM_SHOP_DOMAIN, overrides: Json = {}): Json {
  return {
    id: 548380009n,
    name: 'Super Toys',
    email: 'owner@example.com',
    domain: shopDomain,
    province: 'Tennessee',
    country: 'US',
    address1: '190 MacLaren Street',
    zip: '37178',
    city: 'Houston',
    phone: '555-555-0199',
    primary_locale: 'en',
    created_at: '2023-01-10T10:00:00-05:00',
    updated_at: '2024-05-01T10:00:00-04:00',
    country_code: 'US',
    country_name: 'United States',
    currency: 'USD',
    customer_email: 'support@example.com',
    iana_timezone: 'America/New_York',
    shop_owner: 'Jane Owner',
    // Shopify's own placeholder syntax, not a template literal.
    // biome-ignore lint/suspicious/noTemplateCurlyInString: Shopify money format
    money_format: '${{amount}}',
    plan_name: 'basic',
    myshopify_domain: shopDomain,
    ...overrides,
  };
}

const PRIVACY_CUSTOMER = { id: 191167n, email: 'john.privacy@example.com', phone: '555-555-0142' };

/** customers/data_request: the customer asked the shop for their data. */
export function shopifyDataRequest(shopDomain = SIM_SHOP_DOMAIN, overrides: Json = {}): Json {
  return {
    shop_id: 954889n,
    shop_domain: shopDomain,
    orders_requested: [299938n, 280263n, 220458n],
    customer: PRIVACY_CUSTOMER,
    data_request: { id: 9999n },
    ...overrides,
  };
}

/** customers/redact: erase the customer's personal data. */
export function shopifyCustomerRedact(shopDomain = SIM_SHOP_DOMAIN, overrides: Json = {}): Json {
  return {
    shop_id: 954889n,
    shop_domain: shopDomain,
    customer: PRIVACY_CUSTOMER,
    orders_to_redact: [299938n, 280263n],
    ...overrides,
  };
}

/** shop/redact: 48 hours after uninstall, erase the shop's data. */
export function shopifyShopRedact(shopDomain = SIM_SHOP_DOMAIN, overrides: Json = {}): Json {
  return { shop_id: 954889n, shop_domain: shopDomain, ...overrides };
}

/** A realistic payload for any topic (defaults; use the builders above to vary it). */
export function shopifyPayload(topic: ShopifyWebhookTopic, shopDomain = SIM_SHOP_DOMAIN): Json {
  switch (topic) {
    case 'orders/create':
      return shopifyOrder({ financialStatus: 'pending' });
    case 'orders/updated':
      return shopifyOrder({ updatedAt: '2024-05-03T15:00:00-04:00' });
    case 'orders/paid':
      return shopifyOrder({ financialStatus: 'paid', updatedAt: '2024-05-03T14:23:00-04:00' });
    case 'orders/fulfilled':
      return shopifyOrder({ fulfillmentStatus: 'fulfilled', updatedAt: '2024-05-04T09:30:00-04:00' });
    case 'orders/cancelled':
      return shopifyOrder({
        financialStatus: 'refunded',
        cancelledAt: '2024-05-04T11:00:00-04:00',
        updatedAt: '2024-05-04T11:00:00-04:00',
      });
    case 'refunds/create':
      return shopifyRefund();
    case 'customers/create':
    case 'customers/update':
      return shopifyCustomer();
    case 'customers/delete':
      return {
        id: 706405506930370084n,
        phone: null,
        addresses: [],
        tax_exemptions: [],
        email_marketing_consent: null,
        admin_graphql_api_id: 'gid://shopify/Customer/706405506930370084',
      };
    case 'products/create':
    case 'products/update':
      return shopifyProduct();
    case 'products/delete':
      return { id: 788032119674292922n };
    case 'app/uninstalled':
      return shopifyShop(shopDomain);
    case 'customers/data_request':
      return shopifyDataRequest(shopDomain);
    case 'customers/redact':
      return shopifyCustomerRedact(shopDomain);
    case 'shop/redact':
      return shopifyShopRedact(shopDomain);
  }
}

export interface ShopifyWebhookOptions {
  topic: string;
  shopDomain: string;
  /** A string is sent byte for byte; anything else is written with shopifyJson. */
  body: unknown;
  /** The app's client secret. */
  secret: string;
  /** X-Shopify-Event-Id: the same on retries of one event. Random by default; null leaves it out. */
  eventId?: string | null;
  /** X-Shopify-Webhook-Id. Random by default; null leaves it out. */
  webhookId?: string | null;
  triggeredAt?: string | Date;
  apiVersion?: string;
  /** true (default): classic `X-Shopify-*` headers; false: the Events delivery's `Shopify-*`. */
  legacyPrefix?: boolean;
}

export interface SignedShopifyWebhook {
  headers: Record<string, string>;
  body: string;
}

/** Headers and body exactly as Shopify would POST them: `base64(HMAC-SHA256(secret, raw body))`. */
export function signShopifyWebhook(options: ShopifyWebhookOptions): SignedShopifyWebhook {
  const body = typeof options.body === 'string' ? options.body : shopifyJson(options.body);
  const prefix = options.legacyPrefix === false ? 'Shopify-' : 'X-Shopify-';
  const triggeredAt = options.triggeredAt ?? new Date();
  const fields: Array<[string, string | null]> = [
    ['Topic', options.topic],
    ['Hmac-Sha256', createHmac('sha256', options.secret).update(body, 'utf8').digest('base64')],
    ['Shop-Domain', options.shopDomain],
    ['API-Version', options.apiVersion ?? '2025-07'],
    ['Webhook-Id', options.webhookId === undefined ? randomUUID() : options.webhookId],
    ['Event-Id', options.eventId === undefined ? randomUUID() : options.eventId],
    ['Triggered-At', typeof triggeredAt === 'string' ? triggeredAt : triggeredAt.toISOString()],
  ];
  const headers: Record<string, string> = { 'Content-Type': 'application/json' };
  for (const [name, value] of fields) if (value !== null) headers[`${prefix}${name}`] = value;
  return { headers, body };
}

export interface ShopifySendResult {
  status: number;
  body: string;
  sent: SignedShopifyWebhook;
}

/** Signs and POSTs a webhook over real HTTP, giving up after Shopify's 5 s like Shopify does. */
export async function sendShopifyWebhook(
  url: string | URL,
  options: ShopifyWebhookOptions & { timeoutMs?: number },
): Promise<ShopifySendResult> {
  const sent = signShopifyWebhook(options);
  const response = await fetch(url, {
    method: 'POST',
    headers: sent.headers,
    body: sent.body,
    redirect: 'manual',
    signal: AbortSignal.timeout(options.timeoutMs ?? 5000),
  });
  return { status: response.status, body: await response.text(), sent };
}
