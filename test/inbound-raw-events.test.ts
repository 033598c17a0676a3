// Webhooks of topics the hub has no canonical type for (Stripe checkout.session.completed, Shopify
// inventory_levels/update, HubSpot deal.creation): verified, stored and answered 200 as raw
// provider events a destination can subscribe to, rather than refused (providers retry a refusal
// and then disable the endpoint). Through a running hub, its worker and a real receiver.
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hubspotEvent, hubspotWebhookRequest } from '../sim/hubspot.ts';
import {
  sendShopifyWebhook,
  shopifyCustomerRedact,
  shopifyOrder,
  shopifyShopRedact,
} from '../sim/shopify.ts';
import { sendStripeWebhook, stripeEvent } from '../sim/stripe.ts';
import { startTestApp, type TestApp } from './helpers/app.ts';
import { until } from './helpers/log-fixture.ts';
import { type Receiver, startReceiver } from './helpers/receiver.ts';

const SHOP = 'raw-shop.myshopify.com';
const SHOP_SECRET = 'shpss_raw_secret_0123456789';
const STRIPE_SECRET = 'whsec_raw_test_0123456789abcdef';
const HUBSPOT_SECRET = 'hubspot-raw-secret-0123456789';
const PORTAL = 71_001;

let t: TestApp;
let base: string;
let receiver: Receiver;
let everything: Receiver;
let org: Awaited<ReturnType<TestApp['organization']>>;
const ins = { shopify: '', stripe: '', hubspot: '' };

async function install(body: Record<string, unknown>, token = org.token) {
  const res = await t.call('POST', '/v1/installations', { token, body });
  expect(res.statusCode, res.body).toBe(201);
  return res.json().id as string;
}

beforeAll(async () => {
  t = await startTestApp({
    INTERCHANGE_EGRESS_ALLOW: '127.0.0.1/32',
    INTERCHANGE_RETRY_SCHEDULE: '100ms,100ms',
  });
  await t.app.server.listen({ port: 0, host: '127.0.0.1' });
  base = `http://127.0.0.1:${(t.app.server.server.address() as AddressInfo).port}`;
  t.app.startWorker();
  receiver = await startReceiver();
  everything = await startReceiver();
  org = await t.organization('Raw');
  ins.shopify = await install({
    connector: 'shopify',
    config: { shopDomain: SHOP },
    secrets: { clientSecret: SHOP_SECRET },
  });
  ins.stripe = await install({ connector: 'stripe', secrets: { webhookSecret: STRIPE_SECRET } });
  ins.hubspot = await install({
    connector: 'hubspot',
    config: { portalId: String(PORTAL) },
    secrets: { clientSecret: HUBSPOT_SECRET },
  });
  await install({
    connector: 'webhook',
    config: { url: receiver.url },
    subscription: { event_types: ['shopify.*', 'stripe.*', 'hubspot.*'] },
  });
  await install({ connector: 'webhook', config: { url: everything.url } });
});
afterAll(async () => {
  await receiver?.close();
  await everything?.close();
  await t?.close();
});

const inventory =
  '{"inventory_item_id":808950810,"location_id":905684977,"available":6,"updated_at":"2024-05-03T14:22:05-04:00","big":9007199254740993123}';

describe('a topic without a canonical type', () => {
  const sent: Record<string, { status: number; body: { status?: string; event_ids?: string[] } }> = {};

  beforeAll(async () => {
    const shop = await sendShopifyWebhook(`${base}/hooks/shopify`, {
      topic: 'inventory_levels/update',
      shopDomain: SHOP,
      body: inventory,
      secret: SHOP_SECRET,
    });
    sent.shopify = { status: shop.status, body: JSON.parse(shop.body) };
    const checkout = stripeEvent('checkout.session.completed', {
      id: 'cs_test_a1',
      object: 'checkout.session',
      amount_total: 2000,
    });
    const stripe = await sendStripeWebhook(`${base}/hooks/${ins.stripe}`, checkout, {
      secret: STRIPE_SECRET,
    });
    sent.stripe = { status: stripe.status, body: JSON.parse(await stripe.text()) };
    // HubSpot signs the URL it was given: the installation's inbound URL.
    const url = (await t.call('GET', `/v1/installations/${ins.hubspot}`, { token: org.token })).json()
      .inbound_url;
    const deal = hubspotEvent('deal.creation', { objectId: 4242, portalId: PORTAL });
    const signed = hubspotWebhookRequest({ url, events: [deal], secret: HUBSPOT_SECRET });
    const hubspot = await fetch(`${base}/hooks/${ins.hubspot}`, {
      method: 'POST',
      headers: signed.headers,
      body: signed.body,
    });
    sent.hubspot = { status: hubspot.status, body: JSON.parse(await hubspot.text()) };
  });

  it('is answered 200 and stored as a raw event listed under its type', async () => {
    for (const [source, res] of Object.entries(sent)) {
      expect(res.status, `${source}: ${JSON.stringify(res.body)}`).toBe(200);
      expect(res.body.status).toBe('accepted');
      expect(res.body.event_ids).toHaveLength(1);
    }
    const list = async (type: string) =>
      (await t.call('GET', `/v1/events?type=${type}`, { token: org.token })).json().data as Array<{
        id: string;
        type: string;
        subject: string | null;
        source: string;
        data: Record<string, unknown>;
      }>;
    const [shop] = await list('shopify.*');
    expect(shop).toMatchObject({
      id: sent.shopify?.body.event_ids?.[0],
      type: 'shopify.inventory_levels.update',
      source: `/installations/${ins.shopify}`,
      // The payload as sent, ids exact.
      data: { inventory_item_id: 808950810, available: 6, big: '9007199254740993123' },
    });
    const [stripe] = await list('stripe.checkout.session.completed');
    expect(stripe).toMatchObject({
      type: 'stripe.checkout.session.completed',
      subject: 'checkout.session/cs_test_a1',
      data: {
        type: 'checkout.session.completed',
        data: { object: { id: 'cs_test_a1', amount_total: 2000 } },
      },
    });
    const [deal] = await list('hubspot.*');
    expect(deal).toMatchObject({
      type: 'hubspot.deal.creation',
      subject: 'deals/4242',
      data: { subscriptionType: 'deal.creation', objectId: 4242 },
    });
  });

  it('reaches a destination subscribed to its family, not one subscribed to everything', async () => {
    await receiver.until((r) => r.length >= 3);
    expect(receiver.received.map((r) => r.json.type).sort()).toEqual([
      'hubspot.deal.creation',
      'shopify.inventory_levels.update',
      'stripe.checkout.session.completed',
    ]);
    // `*` is every canonical and custom event: a later one arrives, the raw ones never did.
    const custom = await t.call('POST', '/v1/events', {
      token: org.token,
      body: { type: 'custom.raw.marker', data: {} },
    });
    expect(custom.statusCode).toBe(201);
    await everything.until((r) => r.some((x) => x.json.type === 'custom.raw.marker'));
    expect(everything.received.map((r) => r.json.type)).toEqual(['custom.raw.marker']);
  });

  it('cannot be sent through the API', async () => {
    const res = await t.call('POST', '/v1/events', {
      token: org.token,
      body: { type: 'shopify.inventory_levels.update', data: { available: 1 } },
    });
    expect(res.statusCode).toBe(400);
  });
});

describe('subscribing to raw provider events', () => {
  it('takes a raw type or family, and refuses the raw type of a topic that becomes a canonical event', async () => {
    const exact = await t.call('POST', '/v1/installations', {
      token: org.token,
      body: {
        connector: 'webhook',
        config: { url: 'http://127.0.0.1:9/raw' },
        subscription: { event_types: ['shopify.inventory_levels.update', 'stripe.checkout.*'] },
      },
    });
    expect(exact.statusCode, exact.body).toBe(201);
    const never = await t.call('POST', '/v1/installations', {
      token: org.token,
      body: {
        connector: 'webhook',
        config: { url: 'http://127.0.0.1:9/raw' },
        subscription: { event_types: ['shopify.orders.create'] },
      },
    });
    expect(never.statusCode).toBe(400);
    expect(never.json().error).toMatchObject({ code: 'event_type_unknown' });
    expect(never.json().error.message).toContain('order.created');
  });

  it('finds each source’s topics and raw family in GET /v1/connectors', async () => {
    const data = (await t.call('GET', '/v1/connectors', { token: org.token })).json().data as Array<{
      id: string;
      topics: Array<{ topic: string; types: string[] }>;
      raw_event_types: string | null;
    }>;
    const byId = new Map(data.map((c) => [c.id, c]));
    expect(byId.get('shopify')?.topics).toContainEqual({ topic: 'orders/create', types: ['order.created'] });
    expect(byId.get('stripe')?.topics).toContainEqual({
      topic: 'charge.refunded',
      types: ['refund.created'],
    });
    expect(byId.get('hubspot')?.topics).toContainEqual({
      topic: 'contact.creation',
      types: ['customer.created'],
    });
    expect(byId.get('woocommerce')?.topics).toContainEqual({
      topic: 'order.deleted',
      types: ['custom.woocommerce.order_deleted'],
    });
    for (const id of ['shopify', 'stripe', 'woocommerce', 'hubspot'])
      expect(byId.get(id)?.raw_event_types).toBe(`${id}.*`);
    expect(byId.get('webhook')).toMatchObject({ topics: [], raw_event_types: null });
  });
});

describe('privacy redaction', () => {
  it('covers the raw events of the shop: all of them on shop/redact, the customer’s on customers/redact', async () => {
    const other = await t.organization('Raw privacy');
    const shop = 'raw-private.myshopify.com';
    const id = await install(
      { connector: 'shopify', config: { shopDomain: shop }, secrets: { clientSecret: SHOP_SECRET } },
      other.token,
    );
    const send = (topic: string, body: unknown) =>
      sendShopifyWebhook(`${base}/hooks/${id}`, { topic, shopDomain: shop, body, secret: SHOP_SECRET });
    // The privacy customer of the simulator is 191167, john.privacy@example.com.
    const theirs = '{"customer_id":191167,"email_address":"John.Privacy@example.com","state":"subscribed"}';
    const byEmail = '{"id":5,"contact":"john.privacy@example.com"}';
    const someoneElse = '{"customer_id":1911670,"email_address":"kim@example.com","state":"subscribed"}';
    for (const body of [theirs, byEmail, someoneElse])
      expect((await send('customers_email_marketing_consent/update', body)).status).toBe(200);
    expect((await send('orders/create', shopifyOrder({ id: 4500001n }))).status).toBe(200);
    expect((await send('customers/redact', shopifyCustomerRedact(shop))).status).toBe(200);

    const raw = async () =>
      (
        (await t.call('GET', '/v1/events?type=shopify.*', { token: other.token })).json().data as Array<{
          data: Record<string, unknown>;
        }>
      ).map((e) => e.data);
    await until(async () => (await raw())[0]?.redacted === true, 15_000, 'the customer redaction');
    expect(await raw()).toEqual([{ redacted: true }, { redacted: true }, JSON.parse(someoneElse)]);

    expect((await send('shop/redact', shopifyShopRedact(shop))).status).toBe(200);
    await until(async () => (await raw())[2]?.redacted === true, 15_000, 'the shop redaction');
    expect(await raw()).toEqual([{ redacted: true }, { redacted: true }, { redacted: true }]);
  });
});
