import { describe, expect, it } from 'vitest';
import { inboundRequest } from '../../../sim/capture-server.ts';
import {
  SHOPIFY_WEBHOOK_TOPICS,
  type ShopifyWebhookOptions,
  SIM_SHOP_DOMAIN,
  shopifyCustomer,
  shopifyJson,
  shopifyOrder,
  shopifyPayload,
  shopifyRefund,
  signShopifyWebhook,
} from '../../../sim/shopify.ts';
import { parseEventData } from '../../events/types.ts';
import { ConnectorError, type EventDraft, type InboundRequest, parseJson } from '../sdk.ts';
import shopify from './index.ts';

const SECRET = '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';
const INSTALLATION = 'ins_shopify_test';
const inbound = shopify.inbound;
if (!inbound) throw new Error('the shopify connector must receive webhooks');

interface Setup {
  /** The installation's client secret; null: not set. */
  secret?: string | null;
  shopDomain?: string;
}

function context({ secret = SECRET, shopDomain = SIM_SHOP_DOMAIN }: Setup = {}) {
  return {
    installationId: INSTALLATION,
    config: { shopDomain },
    secrets: secret === null ? {} : { clientSecret: secret },
    now: new Date(),
  };
}

function request(options: Partial<ShopifyWebhookOptions> & { topic: string }): InboundRequest {
  const { headers, body } = signShopifyWebhook({
    shopDomain: SIM_SHOP_DOMAIN,
    secret: SECRET,
    body: shopifyPayload('orders/create'),
    ...options,
  });
  return inboundRequest({ url: 'https://hub.example.com/hooks/shopify', headers, body });
}

/** The hub's inbound path for one request: verify, parse, normalize, keys. */
async function receive(req: InboundRequest, setup: Setup = {}) {
  const ctx = context(setup);
  await inbound?.verify(req, ctx);
  const payload = inbound?.parse ? inbound.parse(req) : parseJson(req);
  const drafts = inbound?.normalize(req, payload, ctx) ?? [];
  return {
    routeKey: inbound?.routeKey?.(req),
    dedupeKey: inbound?.dedupeKey(req, payload, ctx, drafts),
    partitionKey: inbound?.partitionKey(req, payload, ctx),
    drafts,
  };
}

async function errorCode(run: () => unknown): Promise<string> {
  try {
    await run();
  } catch (err) {
    if (err instanceof ConnectorError) return err.code;
    throw err;
  }
  return 'no error';
}

async function only(options: Partial<ShopifyWebhookOptions> & { topic: string }): Promise<EventDraft> {
  const { drafts } = await receive(request(options));
  expect(drafts).toHaveLength(1);
  const [draft] = drafts;
  if (!draft) throw new Error('no draft');
  return draft;
}

const EXPECTED_TYPES: Record<(typeof SHOPIFY_WEBHOOK_TOPICS)[number], string> = {
  'orders/create': 'order.created',
  'orders/updated': 'order.updated',
  'orders/paid': 'order.paid',
  'orders/fulfilled': 'order.fulfilled',
  'orders/cancelled': 'order.cancelled',
  'refunds/create': 'refund.created',
  'customers/create': 'customer.created',
  'customers/update': 'customer.updated',
  'customers/delete': 'customer.deleted',
  'products/create': 'product.created',
  'products/update': 'product.updated',
  'products/delete': 'product.deleted',
  'app/uninstalled': 'app.uninstalled',
  'customers/data_request': 'privacy.data_request',
  'customers/redact': 'privacy.customer_redact',
  'shop/redact': 'privacy.shop_redact',
};

describe('shopify: verification', () => {
  it('accepts a request signed with the client secret, with either header spelling', async () => {
    for (const legacyPrefix of [true, false]) {
      const req = request({ topic: 'orders/create', legacyPrefix });
      const names = Object.keys(req.headers);
      expect(names.some((n) => n.startsWith('x-shopify-'))).toBe(legacyPrefix);
      await expect(receive(req)).resolves.toMatchObject({ routeKey: SIM_SHOP_DOMAIN });
    }
  });

  it('rejects a wrong secret, a tampered body and a missing signature', async () => {
    const wrong = request({ topic: 'orders/create', secret: 'shpss_someone_else' });
    expect(await errorCode(() => receive(wrong))).toBe('signature_invalid');

    const good = request({ topic: 'orders/create' });
    const tampered = { ...good, rawBody: Buffer.from(good.rawBody.toString().replace('199.00', '1.00')) };
    expect(tampered.rawBody.equals(good.rawBody)).toBe(false);
    expect(await errorCode(() => receive(tampered))).toBe('signature_invalid');

    const { 'x-shopify-hmac-sha256': _, ...unsigned } = good.headers;
    expect(await errorCode(() => receive({ ...good, headers: unsigned }))).toBe('signature_invalid');

    const truncated = { ...good, headers: { ...good.headers, 'x-shopify-hmac-sha256': 'AAAA' } };
    expect(await errorCode(() => receive(truncated))).toBe('signature_invalid');
  });

  it('fails closed when the installation has no secret', async () => {
    const req = request({ topic: 'orders/create' });
    expect(await errorCode(() => receive(req, { secret: null }))).toBe('secret_missing');
    expect(await errorCode(() => receive(req, { secret: '' }))).toBe('secret_missing');
  });

  it("rejects a valid signature for another shop: the app's secret signs every shop's webhooks", async () => {
    const req = request({ topic: 'orders/create', shopDomain: 'other-shop.myshopify.com' });
    expect(await errorCode(() => receive(req))).toBe('signature_invalid');
    // The shop header is compared case-insensitively, as Shopify domains are.
    const upper = request({ topic: 'orders/create', shopDomain: SIM_SHOP_DOMAIN.toUpperCase() });
    await expect(receive(upper)).resolves.toMatchObject({ partitionKey: SIM_SHOP_DOMAIN });
  });

  it('normalizes the shop domain in the installation config', () => {
    const parsed = shopify.config.parse({ shopDomain: '  Interchange-Demo.MyShopify.com ' });
    expect(parsed).toEqual({ shopDomain: SIM_SHOP_DOMAIN });
    expect(shopify.config.safeParse({ shopDomain: 'https://evil.example.com' }).success).toBe(false);
  });
});

describe('shopify: normalization', () => {
  it.each(SHOPIFY_WEBHOOK_TOPICS)('%s becomes a valid canonical event', async (topic) => {
    const draft = await only({ topic, body: shopifyPayload(topic) });
    expect(draft.type).toBe(EXPECTED_TYPES[topic]);
    expect(draft.subject).toMatch(/^(orders|refunds|customers|products|shop)\//);
    // The data passes the canonical schema of its type: what every consumer relies on.
    expect(() => parseEventData(draft.type, draft.data)).not.toThrow();
  });

  it('keeps ids beyond 2^53 digit for digit and money as exact decimal strings', async () => {
    const draft = await only({
      topic: 'orders/paid',
      body: shopifyOrder({
        id: 9007199254740993123n,
        lineItems: [
          { title: 'A', price: '0.10', quantity: 3 },
          { title: 'B', price: '0.20', quantity: 1 },
        ],
        shipping: '4.99',
        tax: '0.07',
      }),
    });
    const data = draft.data as Record<string, unknown>;
    expect(data.order_id).toBe('9007199254740993123');
    expect(draft.subject).toBe('orders/9007199254740993123');
    // 0.30 + 0.20 = 0.50 subtotal; + 4.99 + 0.07 = 5.56 total; revenue = total − shipping − tax.
    expect(data).toMatchObject({
      subtotal: '0.50',
      total: '5.56',
      shipping: '4.99',
      tax: '0.07',
      revenue: '0.50',
      currency: 'USD',
    });
    expect(draft.customerExternalId).toBe('115310627314723954');
  });

  it('writes zero-decimal currencies without decimals (JPY)', async () => {
    const draft = await only({
      topic: 'orders/create',
      body: shopifyOrder({
        currency: 'JPY',
        lineItems: [{ title: 'Tea', price: '1500', quantity: 2 }],
        shipping: '500',
      }),
    });
    expect(draft.data).toMatchObject({ currency: 'JPY', total: '3500', shipping: '500', revenue: '3000' });
  });

  it('gives a guest checkout no customer', async () => {
    const draft = await only({ topic: 'orders/create', body: shopifyOrder({ customer: null }) });
    expect((draft.data as Record<string, unknown>).customer).toBeNull();
    expect(draft.customerExternalId ?? null).toBeNull();
  });

  it('sums only the refund transactions that did not fail', async () => {
    const body = shopifyRefund({ amount: '12.34' });
    const transactions = (body.transactions as Array<Record<string, unknown>>) ?? [];
    expect(transactions.length).toBeGreaterThan(0);
    const failed = { ...transactions[0], id: 1n, status: 'failure', amount: '99.00' };
    const draft = await only({
      topic: 'refunds/create',
      body: { ...body, transactions: [...transactions, failed] },
    });
    expect(draft.data).toMatchObject({ total: '12.34', currency: 'USD' });
  });

  it('maps customers/create to a customer with its external id', async () => {
    const draft = await only({
      topic: 'customers/create',
      body: shopifyCustomer({ id: 207119551n, email: 'ada@example.com' }),
    });
    expect(draft.data).toMatchObject({
      customer_id: '207119551',
      email: 'ada@example.com',
      external_ids: { [INSTALLATION]: '207119551' },
    });
    expect(draft.customerExternalId).toBe('207119551');
  });

  it('answers payload_invalid for a body that is not the topic’s shape', async () => {
    const cases: unknown[] = [
      '{"id": 1, "line_items": "not-a-list"}',
      { ...shopifyOrder(), total_price: 12.5 },
      { ...shopifyOrder(), total_price: '12.345' }, // more precise than USD
      { ...shopifyOrder(), currency: 'dollars' },
      '[]',
    ];
    for (const body of cases) {
      const req = request({ topic: 'orders/create', body });
      expect(await errorCode(() => receive(req)), shopifyJson(body)).toBe('payload_invalid');
    }
    const garbage = request({ topic: 'orders/create', body: 'not json at all' });
    expect(await errorCode(() => receive(garbage))).toBe('payload_malformed');
  });

  it('keeps a topic it does not model as a raw shopify.* event; no topic is topic_unknown', async () => {
    const body =
      '{"inventory_item_id":808950810,"location_id":905684977,"available":6,"id":9007199254740993123}';
    const draft = await only({ topic: 'inventory_levels/update', body });
    expect(draft).toMatchObject({
      type: 'shopify.inventory_levels.update',
      subject: 'inventory_levels/9007199254740993123',
      data: { inventory_item_id: 808950810, available: 6, id: '9007199254740993123' },
    });
    const req = request({ topic: 'orders/create' });
    const { 'x-shopify-topic': _, ...headers } = req.headers;
    expect(await errorCode(() => receive({ ...req, headers }))).toBe('topic_unknown');
    expect(await errorCode(() => receive(request({ topic: 'carts//create', body: {} })))).toBe(
      'topic_unknown',
    );
  });

  it("refuses a body that is not the topic's kind of resource (the topic header is not signed)", async () => {
    const order = shopifyPayload('orders/create');
    for (const topic of [
      'refunds/create',
      'customers/create',
      'customers/update',
      'customers/delete',
      'products/create',
      'products/update',
      'products/delete',
    ])
      expect(await errorCode(() => receive(request({ topic, body: order }))), topic).toBe('payload_invalid');
    for (const topic of ['orders/create', 'orders/updated', 'customers/update', 'products/delete'])
      expect(await errorCode(() => receive(request({ topic, body: shopifyRefund() }))), topic).toBe(
        'payload_invalid',
      );
    const customer = shopifyCustomer();
    for (const topic of ['products/update', 'orders/create', 'refunds/create'])
      expect(await errorCode(() => receive(request({ topic, body: customer }))), topic).toBe(
        'payload_invalid',
      );
    // A GraphQL id naming another resource, or another id.
    const renamed = { ...shopifyCustomer({ id: 5n }), admin_graphql_api_id: 'gid://shopify/Customer/6' };
    expect(await errorCode(() => receive(request({ topic: 'customers/update', body: renamed })))).toBe(
      'payload_invalid',
    );
  });

  it('refuses an order under orders/cancelled or orders/fulfilled that is not cancelled or fulfilled', async () => {
    const open = shopifyOrder();
    expect(await errorCode(() => receive(request({ topic: 'orders/cancelled', body: open })))).toBe(
      'payload_invalid',
    );
    expect(await errorCode(() => receive(request({ topic: 'orders/fulfilled', body: open })))).toBe(
      'payload_invalid',
    );
  });

  it('takes compliance and uninstall bodies only about this shop', async () => {
    for (const topic of [
      'app/uninstalled',
      'customers/data_request',
      'customers/redact',
      'shop/redact',
    ] as const) {
      expect(
        await errorCode(() => receive(request({ topic, body: shopifyPayload(topic, 'else.myshopify.com') }))),
        topic,
      ).toBe('payload_invalid');
      expect(
        await errorCode(() => receive(request({ topic, body: shopifyPayload('orders/create') }))),
        topic,
      ).toBe('payload_invalid');
      const upper = shopifyPayload(topic, SIM_SHOP_DOMAIN.toUpperCase());
      expect((await receive(request({ topic, body: upper }))).drafts).toHaveLength(1);
    }
    // shop/redact names the shop by id too.
    const noId = { shop_domain: SIM_SHOP_DOMAIN };
    expect(await errorCode(() => receive(request({ topic: 'shop/redact', body: noId })))).toBe(
      'payload_invalid',
    );
  });

  it('takes a time from the payload, else from X-Shopify-Triggered-At when it is valid', async () => {
    const withTime = await only({ topic: 'orders/updated', body: shopifyPayload('orders/updated') });
    expect(withTime.time).toBe('2024-05-03T15:00:00-04:00');
    const triggeredAt = '2024-06-01T10:00:00.000Z';
    const deleted = await only({ topic: 'products/delete', body: { id: 1n }, triggeredAt });
    expect(deleted.time).toBe(triggeredAt);
    const garbage = await only({ topic: 'products/delete', body: { id: 1n }, triggeredAt: 'yesterday' });
    expect(garbage.time).toBeUndefined();
  });
});

describe('shopify: keys', () => {
  it('de-duplicates on what the event says, never on the unsigned event id', async () => {
    const body = shopifyJson(shopifyOrder());
    const first = await receive(request({ topic: 'orders/paid', body, eventId: 'ev-1' }));
    const retry = await receive(request({ topic: 'orders/paid', body, eventId: 'ev-1' }));
    const replayed = await receive(request({ topic: 'orders/paid', body, eventId: 'ev-2', webhookId: null }));
    const otherTopic = await receive(request({ topic: 'orders/updated', body, eventId: 'ev-1' }));
    expect(first.dedupeKey).toMatch(/:orders\/paid:orders\/820982911946154508:sha256:[0-9a-f]{64}$/);
    expect(retry.dedupeKey).toBe(first.dedupeKey);
    expect(replayed.dedupeKey).toBe(first.dedupeKey);
    expect(otherTopic.dedupeKey).not.toBe(first.dedupeKey);
    // The same event at another API version (fields the hub does not read differ): one event.
    const versioned = shopifyJson(shopifyOrder({}, { new_field_of_2026: true }));
    expect((await receive(request({ topic: 'orders/paid', body: versioned }))).dedupeKey).toBe(
      first.dedupeKey,
    );
    const changed = await receive(
      request({ topic: 'orders/paid', body: shopifyJson(shopifyOrder({ id: 2n })) }),
    );
    expect(changed.dedupeKey).not.toBe(first.dedupeKey);
  });

  it('keys a creation or a deletion by the resource alone', async () => {
    const created = await receive(request({ topic: 'orders/create', body: shopifyOrder() }));
    const later = shopifyOrder({ updatedAt: '2024-06-01T00:00:00Z', financialStatus: 'refunded' });
    expect(created.dedupeKey).toBe(`${SIM_SHOP_DOMAIN}:orders/create:orders/820982911946154508`);
    expect((await receive(request({ topic: 'orders/create', body: later }))).dedupeKey).toBe(
      created.dedupeKey,
    );
    const deleted = await receive(request({ topic: 'products/delete', body: { id: 7n } }));
    expect(deleted.dedupeKey).toBe(`${SIM_SHOP_DOMAIN}:products/delete:products/7`);
  });

  it('partitions by shop, so one shop’s events keep their order', async () => {
    const order = await receive(request({ topic: 'orders/create' }));
    const product = await receive(
      request({ topic: 'products/create', body: shopifyPayload('products/create') }),
    );
    expect(order.partitionKey).toBe(SIM_SHOP_DOMAIN);
    expect(product.partitionKey).toBe(SIM_SHOP_DOMAIN);
  });
});
