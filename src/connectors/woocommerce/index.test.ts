import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CaptureServer, inboundRequest, startCaptureServer } from '../../../sim/capture-server.ts';
import {
  phpJson,
  sendWooPing,
  sendWooWebhook,
  type WooDelivery,
  wooCustomer,
  wooOrder,
  wooPingRequest,
  wooProduct,
  wooWebhookRequest,
} from '../../../sim/woocommerce.ts';
import { parseEventData } from '../../events/types.ts';
import { ConnectorError, type EventDraft, type InboundRequest, parseJson } from '../sdk.ts';
import woocommerce from './index.ts';

const SECRET = 'wc-secret-7f3a9c';
const INSTALLATION = 'ins_woo_test';
const SITE = 'https://Shop.Example.com';
const inbound = woocommerce.inbound;
if (!inbound) throw new Error('the woocommerce connector must receive webhooks');

function context(secret: string | null = SECRET) {
  return {
    installationId: INSTALLATION,
    config: { siteUrl: SITE },
    secrets: secret === null ? {} : { webhookSecret: secret },
    now: new Date(),
  };
}

/** The hub's inbound path: handshake, verify, parse, normalize, keys. */
async function receive(req: InboundRequest, secret: string | null = SECRET) {
  const ctx = context(secret);
  if (inbound?.isHandshake?.(req)) return { handshake: true, dedupeKey: '', partitionKey: '', drafts: [] };
  await inbound?.verify(req, ctx);
  const payload = inbound?.parse ? inbound.parse(req) : parseJson(req);
  const drafts = inbound?.normalize(req, payload, ctx) ?? [];
  return {
    handshake: false,
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

function delivery(topic: string, payload: unknown, extra: Partial<WooDelivery> = {}): InboundRequest {
  const { body, headers } = wooWebhookRequest({ topic, payload, secret: SECRET, ...extra });
  return inboundRequest({ url: `https://hub.example.com/hooks/${INSTALLATION}`, headers, body });
}

async function only(req: InboundRequest): Promise<EventDraft> {
  const { drafts } = await receive(req);
  expect(drafts).toHaveLength(1);
  const [draft] = drafts;
  if (!draft) throw new Error('no draft');
  const checked = parseEventData(draft.type, draft.data);
  expect(checked.success, JSON.stringify(checked.error?.issues)).toBe(true);
  return draft;
}

describe('woocommerce over HTTP', () => {
  let server: CaptureServer;
  const outcomes: string[] = [];

  beforeAll(async () => {
    server = await startCaptureServer(async (req) => {
      try {
        const result = await receive(req);
        outcomes.push(result.handshake ? 'handshake' : result.drafts.map((d) => d.type).join(','));
        return 200;
      } catch (err) {
        if (!(err instanceof ConnectorError)) throw err;
        outcomes.push(err.code);
        return err.code === 'signature_invalid' ? 401 : 400;
      }
    });
  });
  afterAll(() => server.close());

  it('answers the unsigned creation ping with 200 and no events', async () => {
    const res = await sendWooPing(server.url, 31);
    expect(res.status).toBe(200);
    expect(outcomes.at(-1)).toBe('handshake');
    expect(server.requests.at(-1)?.rawBody.toString()).toBe('webhook_id=31');
  });

  it('accepts a signed delivery, verifying the exact bytes PHP encoded', async () => {
    const res = await sendWooWebhook(server.url, {
      topic: 'order.created',
      payload: wooOrder(),
      secret: SECRET,
    });
    expect(res.status).toBe(200);
    expect(outcomes.at(-1)).toBe('order.created');
    expect(server.requests.at(-1)?.rawBody.toString()).toContain('Ship Your Idea \\u2013 Color');
  });

  it('answers 401 to a delivery signed with another secret', async () => {
    const res = await sendWooWebhook(server.url, {
      topic: 'order.created',
      payload: wooOrder(),
      secret: 'other',
    });
    expect(res.status).toBe(401);
    expect(outcomes.at(-1)).toBe('signature_invalid');
  });
});

describe('woocommerce handshake and verify', () => {
  it('treats only the bare ping as a handshake', () => {
    const ping = wooPingRequest(12);
    expect(inbound.isHandshake?.(inboundRequest({ url: 'https://hub/h', ...ping }))).toBe(true);
    const withHeader = inboundRequest({
      url: 'https://hub/h',
      body: ping.body,
      headers: { 'X-WC-Webhook-Topic': 'order.created' },
    });
    expect(inbound.isHandshake?.(withHeader)).toBe(false);
    const other = inboundRequest({ url: 'https://hub/h', body: 'webhook_id=12&x=1', headers: ping.headers });
    expect(inbound.isHandshake?.(other)).toBe(false);
    expect(inbound.isHandshake?.(delivery('order.created', wooOrder()))).toBe(false);
  });

  it('passes a valid signature, computed independently here', async () => {
    const req = delivery('customer.created', wooCustomer());
    const expected = createHmac('sha256', SECRET).update(req.rawBody).digest('base64');
    expect(req.headers['x-wc-webhook-signature']).toBe(expected);
    expect(await errorCode(() => inbound.verify(req, context()))).toBe('no error');
  });

  it('rejects a wrong secret, a changed body and a missing header as signature_invalid', async () => {
    const wrong = delivery('customer.created', wooCustomer(), { secret: 'not-it' });
    expect(await errorCode(() => inbound.verify(wrong, context()))).toBe('signature_invalid');
    const tampered = delivery('order.created', wooOrder());
    tampered.rawBody = Buffer.from(tampered.rawBody.toString().replace('"29.35"', '"0.35"'));
    expect(await errorCode(() => inbound.verify(tampered, context()))).toBe('signature_invalid');
    const req = delivery('order.created', wooOrder());
    const { 'x-wc-webhook-signature': _dropped, ...headers } = req.headers;
    expect(await errorCode(() => inbound.verify({ ...req, headers }, context()))).toBe('signature_invalid');
  });

  it('refuses to verify without the installation secret', async () => {
    expect(await errorCode(() => inbound.verify(delivery('order.created', wooOrder()), context(null)))).toBe(
      'secret_missing',
    );
  });
});

describe('woocommerce orders', () => {
  it('normalizes order.created with exact money from strings and from the numeric line price', async () => {
    const draft = await only(delivery('order.created', wooOrder()));
    expect(draft).toMatchObject({ type: 'order.created', subject: 'orders/727', customerExternalId: '26' });
    expect(draft.data).toMatchObject({
      order_id: '727',
      order_number: '727',
      total: '29.35',
      revenue: '18.00',
      tax: '1.35',
      shipping: '10.00',
      currency: 'USD',
      financial_status: 'paid',
      fulfillment_status: null,
      customer: { customer_id: '26', email: 'john.doe@example.com' },
      billing_address: { name: 'John Doe', city: 'San Francisco', region: 'CA', country_code: 'US' },
      products: [
        { product_id: '93', variant_id: null, name: 'Woo Single #1', price: '3.00', quantity: 2 },
        {
          product_id: '22',
          variant_id: '23',
          sku: 'woo-ship-your-idea-black-m',
          price: '12.00',
          quantity: 1,
        },
      ],
      external_ids: { [INSTALLATION]: '727' },
    });
    expect(draft.time).toMatch(/Z$/);
  });

  it('rounds a double line price to the currency and keeps amounts finer than the currency as sent', async () => {
    const items = [
      { id: 1, name: 'Third', product_id: 5, variation_id: 0, quantity: 3, sku: '', price: 10 / 3 },
    ];
    const order = wooOrder({ line_items: items, total: '10.005', total_tax: '0.00', shipping_total: '0.00' });
    const draft = await only(delivery('order.created', order));
    expect(draft.data).toMatchObject({ total: '10.005', revenue: '10.005', products: [{ price: '3.33' }] });
    const yen = wooOrder({
      currency: 'JPY',
      total: '1500.00',
      shipping_total: '500',
      total_tax: '0',
      line_items: [],
    });
    expect((await only(delivery('order.created', yen))).data).toMatchObject({
      total: '1500',
      revenue: '1000',
    });
  });

  it('names order.updated by status: cancelled, completed, refunded, else updated', async () => {
    const cases = [
      ['processing', 'order.updated'],
      ['cancelled', 'order.cancelled'],
      ['completed', 'order.fulfilled'],
      ['refunded', 'order.refunded'],
    ] as const;
    for (const [status, type] of cases) {
      expect((await only(delivery('order.updated', wooOrder({ status })))).type).toBe(type);
    }
    const restored = await only(delivery('order.restored', wooOrder({ status: 'on-hold' })));
    expect(restored.type).toBe('order.updated');
  });

  it('turns order.deleted (the id alone) into custom.woocommerce.order_deleted, and refuses a fuller body', async () => {
    const bare = await only(delivery('order.deleted', { id: 727 }));
    expect(bare).toMatchObject({ type: 'custom.woocommerce.order_deleted', subject: 'orders/727' });
    expect(bare.data).toEqual({ order_id: '727', external_ids: { [INSTALLATION]: '727' } });
    // WooCommerce never sends more: a whole order under order.deleted is a body posted again.
    for (const topic of ['order.deleted', 'customer.deleted', 'product.deleted'])
      expect(await errorCode(() => receive(delivery(topic, wooOrder({ status: 'trash' }))))).toBe(
        'payload_invalid',
      );
  });

  it("refuses a body under another resource's topic (an order as a customer or a product)", async () => {
    expect(await errorCode(() => receive(delivery('customer.updated', wooOrder())))).toBe('payload_invalid');
    expect(await errorCode(() => receive(delivery('product.updated', wooOrder())))).toBe('payload_invalid');
    expect(await errorCode(() => receive(delivery('product.updated', wooCustomer())))).toBe(
      'payload_invalid',
    );
    expect(await errorCode(() => receive(delivery('customer.updated', wooProduct())))).toBe(
      'payload_invalid',
    );
  });

  it('gives guest orders no customer', async () => {
    const draft = await only(delivery('order.created', wooOrder({ customer_id: 0 })));
    expect(draft.customerExternalId).toBeUndefined();
    expect(draft.data).toMatchObject({ customer: null, billing_address: { name: 'John Doe' } });
  });
});

describe('woocommerce customers and products', () => {
  it('normalizes customer.created|updated|deleted', async () => {
    const created = await only(delivery('customer.created', wooCustomer()));
    expect(created).toMatchObject({ type: 'customer.created', customerExternalId: '26' });
    expect(created.data).toMatchObject({
      customer_id: '26',
      email: 'john.doe@example.com',
      phone: '(555) 555-5555',
    });
    expect((await only(delivery('customer.updated', wooCustomer()))).type).toBe('customer.updated');
    const deleted = await only(delivery('customer.deleted', { id: 26 }));
    expect(deleted).toMatchObject({ type: 'customer.deleted', data: { customer_id: '26' } });
  });

  it('normalizes product.created|updated|restored|deleted', async () => {
    const created = await only(delivery('product.created', wooProduct()));
    expect(created.type).toBe('product.created');
    expect(created.data).toMatchObject({
      product_id: '794',
      price: '21.99',
      currency: null,
      sku: 'PQ-19',
      category: 'Clothing',
      url: 'https://shop.example.com/product/premium-quality-19/',
    });
    expect((await only(delivery('product.updated', wooProduct({ price: '' })))).data).toMatchObject({
      price: null,
    });
    expect((await only(delivery('product.restored', wooProduct()))).type).toBe('product.updated');
    const deleted = await only(delivery('product.deleted', { id: 794 }));
    expect(deleted).toMatchObject({ type: 'product.deleted', data: { product_id: '794' } });
  });
});

describe('woocommerce errors and keys', () => {
  it('keeps other topics as raw woocommerce.* events; a missing topic is topic_unknown', async () => {
    const coupon = await only(delivery('coupon.created', { id: 1, code: 'spring' }));
    expect(coupon).toMatchObject({
      type: 'woocommerce.coupon.created',
      subject: 'coupons/1',
      data: { id: 1, code: 'spring' },
    });
    expect((await only(delivery('order.archived', wooOrder()))).type).toBe('woocommerce.order.archived');
    const req = delivery('order.created', wooOrder());
    const { 'x-wc-webhook-topic': _dropped, ...headers } = req.headers;
    expect(await errorCode(() => receive({ ...req, headers }))).toBe('topic_unknown');
  });

  it('rejects payloads missing what the canonical event needs as payload_invalid', async () => {
    const { total: _total, ...noTotal } = wooOrder();
    expect(await errorCode(() => receive(delivery('order.created', noTotal)))).toBe('payload_invalid');
    expect(await errorCode(() => receive(delivery('order.created', wooOrder({ total: '29,35' }))))).toBe(
      'payload_invalid',
    );
    expect(await errorCode(() => receive(delivery('customer.deleted', {})))).toBe('payload_invalid');
  });

  it('reports a signed body that is not JSON as payload_malformed', async () => {
    expect(await errorCode(() => receive(delivery('order.created', null, { body: '{"id":' })))).toBe(
      'payload_malformed',
    );
  });

  it('keys de-duplication on what the event says: the same across deliveries, new on any change', async () => {
    const order = wooOrder({ date_modified_gmt: '2026-03-01T10:15:30' });
    const first = await receive(delivery('order.updated', order));
    const again = await receive(delivery('order.updated', order)); // a new Delivery-ID
    expect(first.dedupeKey).toMatch(/^order\.updated:orders\/727:sha256:[0-9a-f]{64}$/);
    expect(again.dedupeKey).toBe(first.dedupeKey);
    const later = await receive(
      delivery('order.updated', { ...order, date_modified_gmt: '2026-03-01T10:16:02' }),
    );
    expect(later.dedupeKey).not.toBe(first.dedupeKey);
    // Two saves within one second: the same date_modified_gmt, another status.
    const sameSecond = await receive(delivery('order.updated', { ...order, status: 'completed' }));
    expect(sameSecond.dedupeKey).not.toBe(first.dedupeKey);
    const created = await receive(delivery('order.created', order));
    expect(created.dedupeKey).not.toBe(first.dedupeKey);
  });

  it('keys a creation by the resource alone: a later state posted as order.created is a duplicate', async () => {
    const created = await receive(delivery('order.created', wooOrder()));
    const later = await receive(
      delivery('order.created', wooOrder({ date_modified_gmt: '2027-01-01T00:00:00' })),
    );
    expect(created.dedupeKey).toBe('order.created:orders/727');
    expect(later.dedupeKey).toBe(created.dedupeKey);
    const customer = await receive(delivery('customer.deleted', { id: 26 }));
    expect(customer.dedupeKey).toBe('customer.deleted:customers/26');
  });

  it('keys a deletion on its delivery, so a second deletion of a restored resource is kept', async () => {
    const req = delivery('product.deleted', { id: 794 });
    const { dedupeKey } = await receive(req);
    expect((await receive(req)).dedupeKey).toBe(dedupeKey);
    expect((await receive(delivery('product.deleted', { id: 794 }))).dedupeKey).not.toBe(dedupeKey);
  });

  it('orders by the store host from the configured site URL', async () => {
    const { partitionKey } = await receive(
      delivery('order.created', wooOrder(), { source: 'https://other.example/' }),
    );
    expect(partitionKey).toBe('shop.example.com');
  });

  it('keeps JSON escapes intact: parsed values equal the original', () => {
    const order = wooOrder();
    expect(JSON.parse(phpJson(order))).toEqual(order);
  });
});
