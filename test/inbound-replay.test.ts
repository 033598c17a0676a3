// Replays of signed bodies. Shopify and WooCommerce sign only the body: the topic, event id and
// shop headers are not covered, so whoever holds a signed body can post it again under any topic.
// The hub never hands signatures out, checks each topic's body against that topic and that shop,
// and de-duplicates by what a body says rather than by the unsigned event id.
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  sendShopifyWebhook,
  shopifyCustomerRedact,
  shopifyOrder,
  shopifyShop,
  shopifyShopRedact,
} from '../sim/shopify.ts';
import { sendWooWebhook, wooOrder } from '../sim/woocommerce.ts';
import { startTestApp, type TestApp } from './helpers/app.ts';

const SECRET = 'shpss_replay_secret_0123456789';
const WOO_SECRET = 'wc-replay-secret-0123456789';
let t: TestApp;
let base: string;

beforeAll(async () => {
  t = await startTestApp();
  await t.app.server.listen({ port: 0, host: '127.0.0.1' });
  base = `http://127.0.0.1:${(t.app.server.server.address() as AddressInfo).port}`;
});
afterAll(() => t?.close());

async function shop(name: string) {
  const org = await t.organization(name);
  const domain = `${name.toLowerCase()}.myshopify.com`;
  const res = await t.call('POST', '/v1/installations', {
    token: org.token,
    body: { connector: 'shopify', config: { shopDomain: domain }, secrets: { clientSecret: SECRET } },
  });
  expect(res.statusCode, res.body).toBe(201);
  const send = (topic: string, body: unknown, eventId?: string) =>
    sendShopifyWebhook(`${base}/hooks/shopify`, { topic, shopDomain: domain, body, secret: SECRET, eventId });
  const types = async () =>
    (
      (await t.call('GET', '/v1/events?limit=100', { token: org.token })).json().data as { type: string }[]
    ).map((e) => e.type);
  return { org, domain, installationId: res.json().id as string, send, types };
}

const codeOf = (body: string) => JSON.parse(body).error?.code;

describe('what the API gives away', () => {
  it('never returns a provider signature, to a reader of requests or of events', async () => {
    const acme = await shop('Readers');
    const reader = await t.token(acme.org.client, 'events:read');
    const res = await acme.send('orders/create', shopifyOrder({ id: 4400001n }));
    expect(res.status, res.body).toBe(200);
    const { request_id: requestId, event_ids: eventIds } = JSON.parse(res.body);

    const request = await t.call('GET', `/v1/inbound-requests/${requestId}`, { token: reader });
    expect(request.statusCode).toBe(200);
    expect(request.json().headers).toMatchObject({ 'x-shopify-topic': 'orders/create' });
    expect(Object.keys(request.json().headers)).not.toContain('x-shopify-hmac-sha256');
    expect(request.body).not.toContain(res.sent.headers['X-Shopify-Hmac-Sha256']);
    const listed = await t.call('GET', `/v1/installations/${acme.installationId}/requests`, {
      token: reader,
    });
    expect(listed.body).not.toContain(res.sent.headers['X-Shopify-Hmac-Sha256']);
    const event = await t.call('GET', `/v1/events/${eventIds[0]}`, { token: reader });
    expect(event.json().request.headers).toMatchObject({ 'x-shopify-topic': 'orders/create' });
    expect(event.body).not.toContain(res.sent.headers['X-Shopify-Hmac-Sha256']);

    // Not stored either; and a row stored with one before is answered without it.
    const [row] = await t.app.store.db.query.inboundRequests.findMany({
      where: (r, { eq }) => eq(r.id, requestId),
    });
    expect(Object.keys(row?.headers ?? {})).toEqual(expect.arrayContaining(['x-shopify-topic']));
    expect(Object.keys(row?.headers ?? {})).not.toContain('x-shopify-hmac-sha256');
    const { sql } = await import('drizzle-orm');
    await t.app.store.db.execute(
      sql`update inbound_requests set headers = headers || '{"x-shopify-hmac-sha256":"c2lnbmVk","x-wc-webhook-signature":"c2lnbmVk","stripe-signature":"t=1,v1=ab"}'::jsonb where id = ${requestId}`,
    );
    const old = await t.call('GET', `/v1/inbound-requests/${requestId}`, { token: reader });
    const oldEvent = await t.call('GET', `/v1/events/${eventIds[0]}`, { token: reader });
    for (const body of [old.body, oldEvent.body]) {
      expect(body).not.toContain('c2lnbmVk');
      expect(body).not.toContain('t=1,v1=ab');
    }
  });
});

describe('a signed Shopify order body replayed under other topics', () => {
  it('is refused as shop/redact: no redaction is ordered', async () => {
    const victim = await shop('Redactee');
    const order = await victim.send('orders/create', shopifyOrder({ id: 4400101n }));
    expect(order.status).toBe(200);
    const replay = await victim.send('shop/redact', order.sent.body, 'evt-new-1');
    expect(replay.status, replay.body).toBe(400);
    expect(codeOf(replay.body)).toBe('payload_invalid');
    expect(await victim.types()).toEqual(['order.created']);
  });

  it('is refused as app/uninstalled: the installation stays active', async () => {
    const victim = await shop('Uninstallee');
    const order = await victim.send('orders/create', shopifyOrder({ id: 4400201n }));
    const replay = await victim.send('app/uninstalled', order.sent.body, 'evt-new-2');
    expect(replay.status, replay.body).toBe(400);
    expect(codeOf(replay.body)).toBe('payload_invalid');
    const got = await t.call('GET', `/v1/installations/${victim.installationId}`, {
      token: victim.org.token,
    });
    expect(got.json().status).toBe('active');
    expect((await victim.send('orders/create', shopifyOrder({ id: 4400202n }))).status).toBe(200);
  });

  it('is a duplicate under its own topic with a new event id, and as orders/create once updated', async () => {
    const victim = await shop('Doubled');
    const order = await victim.send('orders/create', shopifyOrder({ id: 4400301n }), 'evt-a');
    const first = JSON.parse(order.body);
    const replay = await victim.send('orders/create', order.sent.body, 'evt-b');
    expect(replay.status).toBe(200);
    expect(JSON.parse(replay.body)).toMatchObject({ status: 'duplicate', event_ids: first.event_ids });
    // A later state of the same order, replayed as its creation: still one order.created.
    const later = shopifyOrder({ id: 4400301n, updatedAt: '2024-05-06T10:00:00-04:00' });
    const updated = await victim.send('orders/updated', later, 'evt-c');
    expect(JSON.parse(updated.body).status).toBe('accepted');
    const asCreate = await victim.send('orders/create', updated.sent.body, 'evt-d');
    expect(JSON.parse(asCreate.body).status).toBe('duplicate');
    expect(await victim.types()).toEqual(['order.created', 'order.updated']);
  });

  it('still takes what Shopify really re-sends and what really changed', async () => {
    const acme = await shop('Genuine');
    // Two subscriptions to one topic: one event id, one event.
    const a = await acme.send('orders/updated', shopifyOrder({ id: 4400401n }), 'evt-1');
    const b = await acme.send('orders/updated', shopifyOrder({ id: 4400401n }), 'evt-1');
    expect([JSON.parse(a.body).status, JSON.parse(b.body).status]).toEqual(['accepted', 'duplicate']);
    // A new state of the order (a new updated_at), and the same moment under another topic.
    const paid = shopifyOrder({ id: 4400401n, updatedAt: '2024-05-07T10:00:00-04:00' });
    expect(JSON.parse((await acme.send('orders/updated', paid)).body).status).toBe('accepted');
    expect(JSON.parse((await acme.send('orders/paid', paid)).body).status).toBe('accepted');
    // A change the timestamp does not show (same updated_at, another status) is a new event too.
    const refunded = shopifyOrder({
      id: 4400401n,
      updatedAt: '2024-05-07T10:00:00-04:00',
      financialStatus: 'refunded',
    });
    expect(JSON.parse((await acme.send('orders/updated', refunded)).body).status).toBe('accepted');
    expect(await acme.types()).toEqual(['order.updated', 'order.updated', 'order.paid', 'order.updated']);
  });
});

describe('compliance and uninstall bodies must be about the installation’s shop', () => {
  it('takes them for this shop, and refuses another shop’s', async () => {
    const acme = await shop('Compliant');
    const other = 'someone-else.myshopify.com';
    for (const [topic, body] of [
      ['shop/redact', shopifyShopRedact(other)],
      ['customers/redact', shopifyCustomerRedact(other)],
      ['app/uninstalled', shopifyShop(other)],
      ['shop/redact', { shop_domain: acme.domain }],
    ] as const) {
      const res = await acme.send(topic, body);
      expect(res.status, `${topic}: ${res.body}`).toBe(400);
      expect(codeOf(res.body)).toBe('payload_invalid');
    }
    expect(await acme.types()).toEqual([]);
    expect((await acme.send('customers/redact', shopifyCustomerRedact(acme.domain))).status).toBe(200);
    expect((await acme.send('app/uninstalled', shopifyShop(acme.domain))).status).toBe(200);
    expect(await acme.types()).toEqual(['privacy.customer_redact', 'app.uninstalled']);
  });
});

describe('a signed WooCommerce order body replayed as order.deleted', () => {
  it('is refused: WooCommerce sends a deleted order as its id alone', async () => {
    const org = await t.organization('Woo replay');
    const created = await t.call('POST', '/v1/installations', {
      token: org.token,
      body: {
        connector: 'woocommerce',
        config: { siteUrl: 'https://replay.example.com' },
        secrets: { webhookSecret: WOO_SECRET },
      },
    });
    const url = `${base}/hooks/${created.json().id}`;
    const body = JSON.stringify(wooOrder({ id: 880 }));
    const send = (topic: string) => sendWooWebhook(url, { topic, payload: null, body, secret: WOO_SECRET });
    expect((await send('order.created')).status).toBe(200);
    const replay = await send('order.deleted');
    expect(replay.status).toBe(400);
    expect(codeOf(await replay.text())).toBe('payload_invalid');
    const deleted = await sendWooWebhook(url, {
      topic: 'order.deleted',
      payload: { id: 880 },
      secret: WOO_SECRET,
    });
    expect(deleted.status).toBe(200);
    // A later state of the order posted as its creation is the same creation.
    const later = wooOrder({ id: 880, date_modified_gmt: '2026-04-01T09:00:00' });
    const asCreated = await sendWooWebhook(url, {
      topic: 'order.created',
      payload: later,
      secret: WOO_SECRET,
    });
    expect(JSON.parse(await asCreated.text()).status).toBe('duplicate');
    const types = (await t.call('GET', '/v1/events', { token: org.token }))
      .json()
      .data.map((e: { type: string }) => e.type);
    expect(types).toEqual(['order.created', 'custom.woocommerce.order_deleted']);
  });
});
