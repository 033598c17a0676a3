// Inbound Shopify webhooks through real HTTP: installation, verification (fail closed),
// de-duplication, normalization, storage, routing by shop domain, uninstall and privacy
// redaction, and every kind of bad input answered with a 4xx and nothing half-stored.
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  sendShopifyWebhook,
  shopifyCustomer,
  shopifyCustomerRedact,
  shopifyOrder,
  shopifyPayload,
  shopifyRefund,
} from '../sim/shopify.ts';
import { startTestApp, type TestApp } from './helpers/app.ts';
import { until } from './helpers/log-fixture.ts';

const SHOP = 'acme-store.myshopify.com';
const SECRET = 'shpss_test_secret_0123456789';
let t: TestApp;
let base: string;
let acme: Awaited<ReturnType<TestApp['organization']>>;
let installationId: string;

async function install(
  token: string,
  shopDomain: string,
  secrets: Record<string, string> | null = { clientSecret: SECRET },
) {
  const res = await t.call('POST', '/v1/installations', {
    token,
    body: { connector: 'shopify', config: { shopDomain }, ...(secrets ? { secrets } : {}) },
  });
  expect(res.statusCode, res.body).toBe(201);
  return res.json();
}

async function count(table: 'events' | 'inbound_requests', organizationId: string): Promise<number> {
  const rows = await t.app.store.db.execute(
    table === 'events'
      ? (await import('drizzle-orm'))
          .sql`select count(*)::int as n from events where organization_id = ${organizationId}`
      : (await import('drizzle-orm'))
          .sql`select count(*)::int as n from inbound_requests where organization_id = ${organizationId}`,
  );
  return Number((rows as unknown as { rows: Array<{ n: number }> }).rows[0]?.n);
}

beforeAll(async () => {
  t = await startTestApp();
  await t.app.server.listen({ port: 0, host: '127.0.0.1' });
  base = `http://127.0.0.1:${(t.app.server.server.address() as AddressInfo).port}`;
  acme = await t.organization('Acme');
  installationId = (await install(acme.token, SHOP)).id;
});
afterAll(() => t?.close());

describe('installing Shopify', () => {
  it('lists the connector with a config JSON Schema', async () => {
    const res = await t.call('GET', '/v1/connectors', { token: acme.token });
    const shopify = res.json().data.find((c: { id: string }) => c.id === 'shopify');
    expect(shopify).toMatchObject({ name: 'Shopify', category: 'ecommerce', capabilities: { source: true } });
    expect(shopify.config_schema.properties).toHaveProperty('shopDomain');
    expect(shopify.secret_keys).toEqual(['clientSecret']);
  });

  it('validates config, never returns secrets, and gives the inbound URL', async () => {
    const bad = await t.call('POST', '/v1/installations', {
      token: acme.token,
      body: { connector: 'shopify', config: { shopDomain: 'not a shop' } },
    });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.details[0].path).toBe('body.config.shopDomain');
    const unknown = await t.call('POST', '/v1/installations', {
      token: acme.token,
      body: { connector: 'nope', config: {} },
    });
    expect(unknown.statusCode).toBe(400);

    const got = await t.call('GET', `/v1/installations/${installationId}`, { token: acme.token });
    expect(got.json()).toMatchObject({
      connector: 'shopify',
      status: 'active',
      config: { shopDomain: SHOP },
      secrets_set: ['clientSecret'],
    });
    expect(got.json().inbound_url).toMatch(new RegExp(`/hooks/${installationId}$`));
    expect(got.body).not.toContain(SECRET);
    const [row] = await t.app.store.db.query.installations.findMany({
      where: (i, { eq }) => eq(i.id, installationId),
    });
    expect(row?.secrets).toMatch(/^v1\.[0-9a-f]{16}\./);
    expect(row?.secrets).not.toContain(SECRET);

    // Within one organization a shop is installed once (its own data, so it may say so).
    const dup = await t.call('POST', '/v1/installations', {
      token: acme.token,
      body: { connector: 'shopify', config: { shopDomain: SHOP } },
    });
    expect(dup.statusCode).toBe(409);
    expect(dup.json().error.code).toBe('conflict');
  });

  it("hides another organization's installation on every route", async () => {
    const globex = await t.organization('Globex');
    for (const [method, url, body] of [
      ['GET', `/v1/installations/${installationId}`, undefined],
      ['PATCH', `/v1/installations/${installationId}`, { name: 'x' }],
      ['DELETE', `/v1/installations/${installationId}`, undefined],
      ['POST', `/v1/installations/${installationId}/test`, undefined],
    ] as const) {
      const res = await t.call(method, url, { token: globex.token, body });
      expect(res.statusCode, `${method} ${url}`).toBe(404);
    }
    expect((await t.call('GET', '/v1/installations', { token: globex.token })).json().data).toEqual([]);
  });
});

describe('receiving webhooks', () => {
  it('stores a signed orders/create once, as order.created keyed by the shop, with the user id', async () => {
    const user = (
      await t.call('POST', '/v1/users', {
        token: acme.token,
        body: { external_ids: { shopify: '115310627314723954' } },
      })
    ).json();
    const order = shopifyOrder({ id: 5550001n });
    const webhook = {
      topic: 'orders/create',
      shopDomain: SHOP,
      body: order,
      secret: SECRET,
      eventId: 'evt-order-1',
    };
    const first = await sendShopifyWebhook(`${base}/hooks/${installationId}`, webhook);
    expect(first.status, first.body).toBe(200);
    const accepted = JSON.parse(first.body);
    expect(accepted).toMatchObject({ status: 'accepted' });
    expect(accepted.event_ids).toHaveLength(1);

    // Shopify retries with the same event id: nothing new is stored.
    const retry = await sendShopifyWebhook(`${base}/hooks/${installationId}`, webhook);
    expect(retry.status).toBe(200);
    expect(JSON.parse(retry.body)).toMatchObject({ status: 'duplicate', event_ids: accepted.event_ids });

    const list = (await t.call('GET', '/v1/events?type=order.*', { token: acme.token })).json();
    const mine = list.data.filter((e: { subject: string }) => e.subject === 'orders/5550001');
    expect(mine).toHaveLength(1);
    expect(mine[0]).toMatchObject({
      id: accepted.event_ids[0],
      type: 'order.created',
      partitionkey: SHOP,
      source: `/installations/${installationId}`,
      userid: user.id,
      data: { order_id: '5550001', currency: 'USD' },
    });
    const one = (await t.call('GET', `/v1/events/${accepted.event_ids[0]}`, { token: acme.token })).json();
    expect(one.request).toMatchObject({ method: 'POST', status: 'accepted' });
    expect(one.request.headers['x-shopify-topic']).toBe('orders/create');
  });

  it("gives refunds/create, which names no customer, the order's customer and user", async () => {
    const user = (
      await t.call('POST', '/v1/users', { token: acme.token, body: { external_ids: { shopify: '4242' } } })
    ).json();
    const send = (topic: string, body: unknown, eventId: string) =>
      sendShopifyWebhook(`${base}/hooks/${installationId}`, {
        topic,
        shopDomain: SHOP,
        body,
        secret: SECRET,
        eventId,
      });
    const order = shopifyOrder({ id: 5550042n }, { customer: shopifyCustomer({ id: 4242n }) });
    expect((await send('orders/create', order, 'evt-order-42')).status).toBe(200);
    const refunded = await send(
      'refunds/create',
      shopifyRefund({ id: 7770042n, orderId: 5550042n }),
      'evt-refund-42',
    );
    expect(refunded.status, refunded.body).toBe(200);
    const [refundId] = JSON.parse(refunded.body).event_ids;
    const refund = (await t.call('GET', `/v1/events/${refundId}`, { token: acme.token })).json();
    expect(refund).toMatchObject({
      type: 'refund.created',
      userid: user.id,
      data: { refund_id: '7770042', order_id: '5550042', customer_id: '4242' },
    });
    // A refund of an order the hub never received has no customer.
    const orphan = await send(
      'refunds/create',
      shopifyRefund({ id: 7770043n, orderId: 5559999n }),
      'evt-refund-43',
    );
    const [orphanId] = JSON.parse(orphan.body).event_ids;
    const lone = (await t.call('GET', `/v1/events/${orphanId}`, { token: acme.token })).json();
    expect(lone).toMatchObject({ userid: null, data: { order_id: '5559999', customer_id: null } });
  });

  it('routes POST /hooks/shopify by the shop domain header', async () => {
    const res = await sendShopifyWebhook(`${base}/hooks/shopify`, {
      topic: 'products/create',
      shopDomain: SHOP,
      body: shopifyPayload('products/create', SHOP),
      secret: SECRET,
    });
    expect(res.status, res.body).toBe(200);
    expect(JSON.parse(res.body).status).toBe('accepted');
    const unknownShop = await sendShopifyWebhook(`${base}/hooks/shopify`, {
      topic: 'products/create',
      shopDomain: 'elsewhere.myshopify.com',
      body: shopifyPayload('products/create', 'elsewhere.myshopify.com'),
      secret: SECRET,
    });
    expect(unknownShop.status).toBe(404);
  });

  it('refuses bad signatures with 401 and stores nothing', async () => {
    const before = await count('inbound_requests', acme.id);
    const wrongSecret = await sendShopifyWebhook(`${base}/hooks/${installationId}`, {
      topic: 'orders/create',
      shopDomain: SHOP,
      body: shopifyOrder(),
      secret: 'not-the-secret',
    });
    expect(wrongSecret.status).toBe(401);
    expect(JSON.parse(wrongSecret.body).error.code).toBe('signature_invalid');
    const unsigned = await fetch(`${base}/hooks/${installationId}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-shopify-topic': 'orders/create',
        'x-shopify-shop-domain': SHOP,
      },
      body: '{}',
    });
    expect(unsigned.status).toBe(401);
    expect(await count('inbound_requests', acme.id)).toBe(before);
  });

  it('fails closed when the installation has no secret, and logs a configuration error', async () => {
    const org = await t.organization('NoSecret');
    const bare = await install(org.token, 'bare-shop.myshopify.com', null);
    const res = await sendShopifyWebhook(`${base}/hooks/${bare.id}`, {
      topic: 'orders/create',
      shopDomain: 'bare-shop.myshopify.com',
      body: shopifyOrder(),
      secret: 'anything',
    });
    expect(res.status).toBe(401);
    expect(JSON.parse(res.body).error.code).toBe('secret_missing');
    expect(t.logs()).toContain('configuration error');
    expect(await count('events', org.id)).toBe(0);
  });

  it('answers unknown installations 404 and bodies over 1 MB 413', async () => {
    const missing = await sendShopifyWebhook(`${base}/hooks/ins_00000000000000000000000000000000`, {
      topic: 'orders/create',
      shopDomain: SHOP,
      body: shopifyOrder(),
      secret: SECRET,
    });
    expect(missing.status).toBe(404);
    expect(JSON.parse(missing.body).error.code).toBe('installation_not_found');
    const huge = await sendShopifyWebhook(`${base}/hooks/${installationId}`, {
      topic: 'orders/create',
      shopDomain: SHOP,
      body: JSON.stringify({ note: 'x'.repeat(1024 * 1024 + 10) }),
      secret: SECRET,
    });
    expect(huge.status).toBe(413);
    expect(JSON.parse(huge.body).error.code).toBe('payload_too_large');
  });

  it('keeps signed but unusable requests for debugging, answers 400, and makes no event', async () => {
    const events = await count('events', acme.id);
    const cases: Array<[string, unknown, string]> = [
      ['orders/create', '{"id": 1,', 'payload_malformed'],
      ['orders/exploded', shopifyOrder(), 'topic_unknown'],
      ['orders/create', { ...shopifyOrder(), currency: undefined, id: undefined }, 'payload_invalid'],
    ];
    for (const [topic, body, code] of cases) {
      const res = await sendShopifyWebhook(`${base}/hooks/${installationId}`, {
        topic,
        shopDomain: SHOP,
        body,
        secret: SECRET,
      });
      expect(res.status, `${topic}: ${res.body}`).toBe(400);
      expect(JSON.parse(res.body).error.code).toBe(code);
    }
    expect(await count('events', acme.id)).toBe(events);
    const rejected = await t.app.store.db.query.inboundRequests.findMany({
      where: (r, { and, eq }) => and(eq(r.organizationId, acme.id), eq(r.status, 'rejected')),
    });
    expect(rejected.map((r) => r.errorCode).sort()).toEqual([
      'payload_invalid',
      'payload_malformed',
      'topic_unknown',
    ]);
    expect(rejected.every((r) => r.body !== null && r.body.length > 0)).toBe(true);
  });

  it('redacts a customer on customers/redact: personal data gone from events and raw bodies', async () => {
    // The redaction is the worker's (the `privacy` consumer group), after the webhook's 200.
    t.app.startWorker();
    const org = await t.organization('Privacy');
    const shop = 'privacy-shop.myshopify.com';
    const ins = await install(org.token, shop);
    const customer = {
      id: 191167n,
      email: 'john.privacy@example.com',
      first_name: 'John',
      last_name: 'Private',
    };
    const other = { id: 5550002n, email: 'kept@example.com', first_name: 'Kim', last_name: 'Kept' };
    for (const [id, who] of [
      [777n, customer],
      [778n, other],
    ] as const)
      expect(
        (
          await sendShopifyWebhook(`${base}/hooks/${ins.id}`, {
            topic: 'orders/create',
            shopDomain: shop,
            body: shopifyOrder({ id, customer: who }),
            secret: SECRET,
          })
        ).status,
      ).toBe(200);
    const redact = await sendShopifyWebhook(`${base}/hooks/${ins.id}`, {
      topic: 'customers/redact',
      shopDomain: shop,
      body: shopifyCustomerRedact(shop),
      secret: SECRET,
    });
    expect(redact.status, redact.body).toBe(200);
    const list = async () => (await t.call('GET', '/v1/events?limit=100', { token: org.token })).json();
    await until(
      async () => !JSON.stringify(await list()).includes('john.privacy@example.com'),
      10_000,
      'the redaction',
    );
    const all = await list();
    expect(all.data.map((e: { type: string }) => e.type)).toEqual([
      'order.created',
      'order.created',
      'privacy.customer_redact',
    ]);
    expect(JSON.stringify(all)).not.toContain('Private');
    expect(all.data[0].data.order_id).toBe('777');
    expect(all.data[0].data.customer).toMatchObject({ customer_id: '191167', email: null, last_name: null });
    // Another customer's order is untouched, and so is its raw body.
    expect(all.data[1].data.customer).toMatchObject({ email: 'kept@example.com', last_name: 'Kept' });
    const bodies = await t.app.store.db.query.inboundRequests.findMany({
      where: (r, { eq }) => eq(r.organizationId, org.id),
    });
    const withBody = bodies.filter((r) => r.body !== null).map((r) => r.body?.toString('utf8') ?? '');
    expect(withBody.some((b) => b.includes('kept@example.com'))).toBe(true);
    expect(withBody.some((b) => b.includes('john.privacy@example.com'))).toBe(false);
    // The group's progress is in /metrics: nothing of app-events left for it once it is done.
    await until(
      async () =>
        (await t.call('GET', '/metrics')).body.includes(
          'interchange_consumer_lag{group="privacy",topic="app-events"} 0',
        ),
      10_000,
      'the privacy group caught up in /metrics',
    );
    expect((await t.call('GET', '/metrics')).body).toMatch(
      /interchange_consumer_lag\{group="router",topic="order-events"\} \d+/,
    );
  });

  it('marks the installation uninstalled on app/uninstalled, and answers 410 after', async () => {
    const org = await t.organization('Leaving');
    const shop = 'leaving-shop.myshopify.com';
    const ins = await install(org.token, shop);
    const res = await sendShopifyWebhook(`${base}/hooks/${ins.id}`, {
      topic: 'app/uninstalled',
      shopDomain: shop,
      body: shopifyPayload('app/uninstalled', shop),
      secret: SECRET,
    });
    expect(res.status, res.body).toBe(200);
    const got = (await t.call('GET', `/v1/installations/${ins.id}`, { token: org.token })).json();
    expect(got.status).toBe('uninstalled');
    expect(got.uninstalled_at).not.toBeNull();
    const after = await sendShopifyWebhook(`${base}/hooks/${ins.id}`, {
      topic: 'orders/create',
      shopDomain: shop,
      body: shopifyOrder(),
      secret: SECRET,
    });
    expect(after.status).toBe(410);
    expect(JSON.parse(after.body).error.code).toBe('installation_uninstalled');
  });
});

describe('one shop installed by two organizations (two apps on one hub)', () => {
  it('lets both install it, and routes POST /hooks/shopify by whose secret signed the webhook', async () => {
    const shop = 'shared-shop.myshopify.com';
    const [secretA, secretB] = ['shpss_app_a_0123456789', 'shpss_app_b_0123456789'];
    const a = await t.organization('App A');
    const b = await t.organization('App B');
    const insA = await install(a.token, shop, { clientSecret: secretA });
    const order = (id: bigint, secret: string) =>
      sendShopifyWebhook(`${base}/hooks/shopify`, {
        topic: 'orders/create',
        shopDomain: shop,
        body: shopifyOrder({ id }),
        secret,
      });
    // Before B installs, so the route's cached candidates must not hide B's installation after.
    const toA = await order(7100001n, secretA);
    expect(toA.status, toA.body).toBe(200);

    // No 409: B must not learn that another organization installed the shop.
    const insB = await install(b.token, shop, { clientSecret: secretB });
    const toB = await order(7100002n, secretB);
    expect(toB.status, toB.body).toBe(200);

    const toNeither = await order(7100003n, 'shpss_someone_else');
    expect(toNeither.status).toBe(401);
    expect(JSON.parse(toNeither.body).error.code).toBe('signature_invalid');

    const eventsOf = async (token: string) =>
      (await t.call('GET', '/v1/events?limit=100', { token })).json().data as Array<{
        subject: string;
        source: string;
      }>;
    expect((await eventsOf(a.token)).map((e) => [e.subject, e.source])).toEqual([
      ['orders/7100001', `/installations/${insA.id}`],
    ]);
    expect((await eventsOf(b.token)).map((e) => [e.subject, e.source])).toEqual([
      ['orders/7100002', `/installations/${insB.id}`],
    ]);
    expect(await count('inbound_requests', a.id)).toBe(1);
    expect(await count('inbound_requests', b.id)).toBe(1);
    const strays = await t.app.store.db.query.events.findMany({
      where: (e, { eq }) => eq(e.subject, 'orders/7100003'),
    });
    expect(strays).toEqual([]);

    // A's app is uninstalled from the shop: B's webhooks still arrive, A's are refused.
    const uninstalled = await sendShopifyWebhook(`${base}/hooks/shopify`, {
      topic: 'app/uninstalled',
      shopDomain: shop,
      body: shopifyPayload('app/uninstalled', shop),
      secret: secretA,
    });
    expect(uninstalled.status, uninstalled.body).toBe(200);
    expect((await t.call('GET', `/v1/installations/${insA.id}`, { token: a.token })).json().status).toBe(
      'uninstalled',
    );
    expect((await order(7100004n, secretB)).status).toBe(200);
    expect((await order(7100005n, secretA)).status).toBe(401);
    expect((await eventsOf(b.token)).map((e) => e.subject)).toEqual(['orders/7100002', 'orders/7100004']);
    expect(await count('events', a.id)).toBe(2); // the order and app.uninstalled
  });
});

describe('the log behind it', () => {
  it("lets a consumer group read the shop's events in order", async () => {
    const org = await t.organization('Ordered');
    const shop = 'ordered-shop.myshopify.com';
    const ins = await install(org.token, shop);
    const sent: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await sendShopifyWebhook(`${base}/hooks/${ins.id}`, {
        topic: i % 2 ? 'orders/updated' : 'orders/create',
        shopDomain: shop,
        body: shopifyOrder({ id: BigInt(9000 + i) }),
        secret: SECRET,
      });
      sent.push(JSON.parse(res.body).event_ids[0]);
    }
    const seen: Array<{ id: string; offset: number; partition: number }> = [];
    const consumer = t.app.services.log.consume({
      group: 'test-reader',
      topics: ['order-events'],
      pollMs: 20,
      handler: async (records) => {
        for (const r of records)
          if (r.event.partitionkey === shop)
            seen.push({ id: r.event.id, offset: r.offset, partition: r.partition });
      },
    });
    const deadline = Date.now() + 15_000;
    while (seen.length < sent.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await consumer.stop();
    expect(seen.map((s) => s.id)).toEqual(sent);
    expect(new Set(seen.map((s) => s.partition)).size).toBe(1);
    expect(seen.map((s) => s.offset)).toEqual([...seen.map((s) => s.offset)].sort((a, b) => a - b));
  });
});
