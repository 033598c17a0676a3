// Inbound Stripe, WooCommerce and HubSpot webhooks through a running hub (POST /hooks/:installation
// over a real socket, sent by the simulators), plus custom events sent to the API, checked the way a
// user sees them: GET /v1/events, scoped to the organization that owns them.
import type { AddressInfo } from 'node:net';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  hubspotEvent,
  hubspotPropertyChange,
  hubspotRetry,
  hubspotWebhookRequest,
  type SimHubSpotEvent as SimEvent,
} from '../sim/hubspot.ts';
import {
  type SimRefund,
  type SimStripeEvent,
  sendStripeWebhook,
  stripeCharge,
  stripeCustomer,
  stripeEvent,
  stripeId,
  stripeInvoice,
  stripePaymentIntent,
  stripeRefund,
  stripeRefundEvents,
} from '../sim/stripe.ts';
import { sendWooPing, sendWooWebhook, wooOrder, wooProduct } from '../sim/woocommerce.ts';
import { startTestApp, type TestApp } from './helpers/app.ts';

const STRIPE_SECRET = 'whsec_interchange_test_0123456789abcdef';
const WOO_SECRET = 'wc-webhook-secret-0123456789';
const HUBSPOT_SECRET = 'hubspot-client-secret-0123456789';
const PORTAL = 62_515;
let t: TestApp;
let base: string;
let acme: Awaited<ReturnType<TestApp['organization']>>;
const ins = { stripe: '', woocommerce: '', hubspot: '' };
/** Every event id acme got, to check another organization sees none of them. */
const acmeEventIds: string[] = [];

interface Envelope {
  id: string;
  type: string;
  subject: string | null;
  source: string;
  partitionkey: string;
  userid: string | null;
  data: Record<string, unknown>;
}
interface Inbound {
  status: number;
  body: { status?: string; event_ids?: string[]; error?: { code: string } };
}

async function install(connector: string, config: Record<string, unknown>, secrets: Record<string, string>) {
  const res = await t.call('POST', '/v1/installations', {
    token: acme.token,
    body: { connector, config, secrets },
  });
  expect(res.statusCode, res.body).toBe(201);
  return res.json().id as string;
}

async function user(externalIds: Record<string, string>): Promise<string> {
  const res = await t.call('POST', '/v1/users', { token: acme.token, body: { external_ids: externalIds } });
  expect(res.statusCode, res.body).toBe(201);
  return res.json().id;
}

/** The organization's events, oldest first (query e.g. `type=order.*`). */
async function events(query = '', token = acme.token): Promise<Envelope[]> {
  const res = await t.call('GET', `/v1/events?limit=100${query ? `&${query}` : ''}`, { token });
  expect(res.statusCode, res.body).toBe(200);
  return res.json().data;
}

async function subjects(installationId: string): Promise<Array<string | null>> {
  return (await events(`installation_id=${installationId}`)).map((e) => e.subject);
}

async function storedRequests(): Promise<number> {
  const rows = await t.app.store.db.execute(
    sql`select count(*)::int as n from inbound_requests where organization_id = ${acme.id}`,
  );
  return Number((rows as unknown as { rows: Array<{ n: number }> }).rows[0]?.n);
}

async function inbound(res: Response): Promise<Inbound> {
  const body = JSON.parse(await res.text());
  if (res.status === 200) acmeEventIds.push(...(body.event_ids ?? []));
  return { status: res.status, body };
}

/** A HubSpot batch signed for `url` (the URL HubSpot was given) but sent to `sentTo`. */
async function hubspot(
  batch: unknown[],
  { url, sentTo, timestamp }: { url: string; sentTo: string; timestamp?: number },
) {
  const { body, headers } = hubspotWebhookRequest({ url, events: batch, secret: HUBSPOT_SECRET, timestamp });
  return inbound(await fetch(sentTo, { method: 'POST', headers, body }));
}

beforeAll(async () => {
  t = await startTestApp();
  await t.app.server.listen({ port: 0, host: '127.0.0.1' });
  base = `http://127.0.0.1:${(t.app.server.server.address() as AddressInfo).port}`;
  acme = await t.organization('Acme');
  ins.stripe = await install('stripe', { accountId: 'acct_1AcmePlatform' }, { webhookSecret: STRIPE_SECRET });
  const siteUrl = 'https://shop.example.com';
  ins.woocommerce = await install('woocommerce', { siteUrl }, { webhookSecret: WOO_SECRET });
  ins.hubspot = await install('hubspot', { portalId: String(PORTAL) }, { clientSecret: HUBSPOT_SECRET });
});
afterAll(() => t?.close());

describe('Stripe', () => {
  const customer = stripeCustomer({ name: 'Mary Ann Smith', email: 'mary@example.com' });
  const cents = { total: 123456, amount_due: 123456, amount_paid: 123456 };
  const invoice = stripeInvoice({ customer: customer.id, status: 'paid', ...cents });
  const paid = stripeEvent('invoice.paid', invoice);
  const send = (event: SimStripeEvent, secret = STRIPE_SECRET, timestamp?: number) =>
    sendStripeWebhook(`${base}/hooks/${ins.stripe}`, event, { secret, timestamp }).then(inbound);

  it('stores customer, invoice, payment and refund events with exact amounts and the known user', async () => {
    const userId = await user({ stripe: customer.id });
    const pi = stripePaymentIntent({ customer: customer.id, amount: 500, currency: 'jpy' });
    const charge = stripeCharge({
      customer: customer.id,
      amount: 5000,
      amount_refunded: 1505,
      currency: 'eur',
    });
    const { chargeRefunded } = stripeRefundEvents(charge, stripeRefund({ amount: 1505, charge: charge.id }));
    const sent = [
      stripeEvent('customer.created', customer),
      paid,
      stripeEvent('payment_intent.succeeded', pi),
      chargeRefunded,
    ];
    for (const event of sent) {
      const res = await send(event, STRIPE_SECRET, Math.floor(Date.now() / 1000) - 120);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      expect(res.body.status).toBe('accepted');
    }
    const got = await events(`installation_id=${ins.stripe}`);
    expect(got.map((e) => [e.type, e.subject, e.partitionkey, e.userid])).toEqual([
      ['customer.created', `customers/${customer.id}`, 'acct_1AcmePlatform', userId],
      ['invoice.paid', `invoices/${invoice.id}`, 'acct_1AcmePlatform', userId],
      ['payment.succeeded', `payment_intents/${pi.id}`, 'acct_1AcmePlatform', userId],
      ['refund.created', `charges/${charge.id}`, 'acct_1AcmePlatform', userId],
    ]);
    expect(new Set(got.map((e) => e.source))).toEqual(new Set([`/installations/${ins.stripe}`]));
    const [created, invoiced, payment, refund] = got;
    expect(created?.data).toMatchObject({
      customer_id: customer.id,
      email: 'mary@example.com',
      first_name: 'Mary',
      last_name: 'Ann Smith',
    });
    expect(invoiced?.data).toMatchObject({
      total: '1234.56',
      amount_due: '1234.56',
      amount_paid: '1234.56',
      currency: 'USD',
      status: 'paid',
      lines: [{ amount: '1234.56', quantity: 1 }],
    });
    expect(payment?.data).toMatchObject({
      payment_id: pi.id,
      total: '500',
      currency: 'JPY',
      status: 'succeeded',
    });
    expect(refund?.data).toMatchObject({ refund_id: `${charge.id}:1505`, total: '15.05', currency: 'EUR' });
  });

  it('stores each refund once, whether Stripe sends refund.created, charge.refunded or both', async () => {
    const charge = stripeCharge({ amount: 5000, amount_refunded: 0, refunded: false, currency: 'usd' });
    const refunds = [1000, 1500].map((amount) => stripeRefund({ amount, charge: charge.id }));
    const [first, second] = [
      stripeRefundEvents({ ...charge, amount_refunded: 1000 }, refunds[0] as SimRefund),
      stripeRefundEvents({ ...charge, amount_refunded: 2500 }, refunds[1] as SimRefund),
    ];
    if (!first || !second) throw new Error('two refunds');
    // Stripe does not promise an order: the charge's event first for one, the refund's for the other.
    const answers = [];
    for (const event of [
      first.chargeRefunded,
      first.refundCreated,
      second.refundCreated,
      second.chargeRefunded,
    ])
      answers.push((await send(event)).body.status);
    expect(answers).toEqual(['accepted', 'duplicate', 'accepted', 'duplicate']);
    const stored = (await events(`installation_id=${ins.stripe}&type=refund.created`)).filter(
      (e) => (e.data as { payment_id?: string }).payment_id === charge.payment_intent,
    );
    expect(stored.map((e) => e.data.total)).toEqual(['10.00', '15.00']);
    // A retry of either event later changes nothing.
    expect((await send(second.chargeRefunded)).body.status).toBe('duplicate');
  });

  it('answers a retry of the same evt_ (re-signed later) with duplicate and stores nothing new', async () => {
    const before = await events(`installation_id=${ins.stripe}`);
    const original = before.find((e) => e.type === 'invoice.paid');
    const retry = await send(paid);
    expect(retry.status).toBe(200);
    expect(retry.body).toMatchObject({ status: 'duplicate', event_ids: [original?.id] });
    expect(await events(`installation_id=${ins.stripe}`)).toEqual(before);
  });

  it('refuses a wrong secret (401, nothing stored) and a signature older than 300 s (timestamp_stale)', async () => {
    const requests = await storedRequests();
    const count = (await events()).length;
    const event = stripeEvent('customer.created', stripeCustomer());
    const forged = await send(event, 'whsec_not_the_installation_secret');
    expect(forged.status).toBe(401);
    expect(forged.body.error?.code).toBe('signature_invalid');
    const stale = await send(event, STRIPE_SECRET, Math.floor(Date.now() / 1000) - 301);
    expect(stale.status).toBe(401);
    expect(stale.body.error?.code).toBe('timestamp_stale');
    expect(await storedRequests()).toBe(requests);
    expect((await events()).length).toBe(count);
    // Neither refusal took the event id: signed now, the same event is accepted.
    const fresh = await send(event);
    expect(fresh.body.status).toBe('accepted');
  });
});

describe('WooCommerce', () => {
  const order = wooOrder({ id: 4242, customer_id: 26 });
  const url = () => `${base}/hooks/${ins.woocommerce}`;
  const send = (topic: string, payload: unknown, secret = WOO_SECRET) =>
    sendWooWebhook(url(), { topic, payload, secret }).then(inbound);

  it('answers the unsigned creation ping 200 ignored, making no event', async () => {
    const requests = await storedRequests();
    const res = await inbound(await sendWooPing(url(), 31));
    expect(res).toEqual({ status: 200, body: { status: 'ignored', request_id: null, event_ids: [] } });
    expect(await events(`installation_id=${ins.woocommerce}`)).toEqual([]);
    expect(await storedRequests()).toBe(requests);
  });

  it('stores signed order.created and product.updated keyed by the site, with exact money', async () => {
    const userId = await user({ woocommerce: '26' });
    const created = await send('order.created', order);
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    const product = wooProduct({ id: 795, price: '1234.50', regular_price: '1234.50' });
    const updated = await send('product.updated', product);
    expect(updated.body.status).toBe('accepted');
    const got = await events(`installation_id=${ins.woocommerce}`);
    expect(got.map((e) => [e.type, e.subject, e.partitionkey, e.userid])).toEqual([
      ['order.created', 'orders/4242', 'shop.example.com', userId],
      ['product.updated', 'products/795', 'shop.example.com', null],
    ]);
    expect(got[0]?.id).toBe(created.body.event_ids?.[0]);
    expect(got[0]?.data).toMatchObject({
      order_id: '4242',
      total: '29.35',
      shipping: '10.00',
      tax: '1.35',
      revenue: '18.00',
      currency: 'USD',
      financial_status: 'paid',
      customer: { customer_id: '26', email: 'john.doe@example.com' },
      products: [
        { price: '3.00', quantity: 2 },
        { price: '12.00', quantity: 1 },
      ],
    });
    expect(got[1]?.data).toMatchObject({ product_id: '795', price: '1234.50', currency: null });
  });

  it('drops a re-delivery (new delivery id, same resource, topic and date_modified) as a duplicate', async () => {
    const before = await events(`installation_id=${ins.woocommerce}`);
    const again = await send('order.created', order);
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ status: 'duplicate', event_ids: [before[0]?.id] });
    // A real change (a new date_modified) is a new event.
    const edited = { ...order, status: 'completed', date_modified_gmt: '2031-01-01T00:00:00' };
    const changed = await send('order.updated', edited);
    expect(changed.body.status).toBe('accepted');
    const after = await events(`installation_id=${ins.woocommerce}`);
    expect(after.map((e) => e.type)).toEqual(['order.created', 'product.updated', 'order.fulfilled']);
  });

  it("attributes each store's customer 12 to that store's user, never to another store's", async () => {
    const second = await install(
      'woocommerce',
      { siteUrl: 'https://second.example.com' },
      { webhookSecret: WOO_SECRET },
    );
    const sendTo = (installation: string, id: number) =>
      sendWooWebhook(`${base}/hooks/${installation}`, {
        topic: 'order.created',
        payload: wooOrder({ id, customer_id: 12 }),
        secret: WOO_SECRET,
      }).then(inbound);
    const first = await user({ 'woocommerce@shop.example.com': '12' });
    // The second store's customer 12 is someone else: nobody's until a user holds that id there.
    const before = await sendTo(second, 7001);
    expect(before.status, JSON.stringify(before.body)).toBe(200);
    const secondUser = await user({ 'woocommerce@second.example.com': '12' });
    await sendTo(ins.woocommerce, 7002);
    await sendTo(second, 7003);
    const got = [
      ...(await events(`installation_id=${ins.woocommerce}`)),
      ...(await events(`installation_id=${second}`)),
    ];
    const userOf = (subject: string) => got.find((e) => e.subject === subject)?.userid;
    expect(['orders/7001', 'orders/7002', 'orders/7003'].map(userOf)).toEqual([null, first, secondUser]);
  });

  it('refuses a bad signature with 401 and stores nothing', async () => {
    const requests = await storedRequests();
    const res = await send('order.created', wooOrder({ id: 9999 }), 'wrong-secret');
    expect(res.status).toBe(401);
    expect(res.body.error?.code).toBe('signature_invalid');
    expect(await storedRequests()).toBe(requests);
    expect(await subjects(ins.woocommerce)).not.toContain('orders/9999');
  });
});

describe('HubSpot (signature v3)', () => {
  /** The URL the hub tells the user to give HubSpot (its PUBLIC_URL, not the test socket). */
  let inboundUrl: string;
  const sentTo = () => `${base}/hooks/${ins.hubspot}`;
  const batch = [
    hubspotEvent('contact.creation', { objectId: 1001, portalId: PORTAL }),
    hubspotPropertyChange('email', 'mary@example.com', { objectId: 1001, portalId: PORTAL }),
    hubspotEvent('contact.deletion', { objectId: 1002, portalId: PORTAL }),
  ];

  beforeAll(async () => {
    inboundUrl = (await t.call('GET', `/v1/installations/${ins.hubspot}`, { token: acme.token })).json()
      .inbound_url;
    expect(inboundUrl).toMatch(new RegExp(`/hooks/${ins.hubspot}$`));
  });

  it('turns a contact batch into one canonical event each, and drops the retried batch', async () => {
    const userId = await user({ hubspot: '1001' });
    const res = await hubspot(batch, { url: inboundUrl, sentTo: sentTo() });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.status).toBe('accepted');
    expect(res.body.event_ids).toHaveLength(3);
    const got = await events(`installation_id=${ins.hubspot}`);
    expect(got.map((e) => [e.id, e.type, e.subject, e.partitionkey, e.userid])).toEqual([
      [res.body.event_ids?.[0], 'customer.created', 'contacts/1001', `hubspot:${PORTAL}`, userId],
      [res.body.event_ids?.[1], 'customer.updated', 'contacts/1001', `hubspot:${PORTAL}`, userId],
      [res.body.event_ids?.[2], 'customer.deleted', 'contacts/1002', `hubspot:${PORTAL}`, null],
    ]);
    expect(got[1]?.data).toMatchObject({ customer_id: '1001', email: 'mary@example.com' });
    expect(got[2]?.data).toEqual({ customer_id: '1002', external_ids: { [ins.hubspot]: '1002' } });

    const retry = await hubspot(hubspotRetry(batch), { url: inboundUrl, sentTo: sentTo() });
    expect(retry.status).toBe(200);
    expect(retry.body.status).toBe('duplicate');
    // The answer names every event the first delivery made, and nothing new.
    expect(retry.body.event_ids).toEqual(res.body.event_ids);
    expect(await events(`installation_id=${ins.hubspot}`)).toEqual(got);
  });

  it('de-duplicates each event on its own when a retry regroups them with new ones', async () => {
    const [a, b, c, d] = [4001, 4002, 4003, 4004].map((objectId) =>
      hubspotEvent('contact.creation', { objectId, portalId: PORTAL }),
    ) as [SimEvent, SimEvent, SimEvent, SimEvent];
    const first = await hubspot([a, b], { url: inboundUrl, sentTo: sentTo() });
    expect(first.body.status).toBe('accepted');
    expect(first.body.event_ids).toHaveLength(2);
    // b is retried beside c, which is new: only c is stored, and only c is named.
    const mixed = await hubspot([...hubspotRetry([b]), c], { url: inboundUrl, sentTo: sentTo() });
    expect(mixed.status, JSON.stringify(mixed.body)).toBe(200);
    expect(mixed.body.status).toBe('accepted');
    expect(mixed.body.event_ids).toHaveLength(1);
    // Everything seen before, in a batch of its own: a duplicate naming the events first stored.
    const old = await hubspot(hubspotRetry([c, a]), { url: inboundUrl, sentTo: sentTo() });
    expect(old.body).toMatchObject({
      status: 'duplicate',
      event_ids: [mixed.body.event_ids?.[0], first.body.event_ids?.[0]],
    });
    // One event twice in one batch is stored once.
    const twice = await hubspot([d, d], { url: inboundUrl, sentTo: sentTo() });
    expect(twice.body.event_ids).toHaveLength(1);

    const stored = await subjects(ins.hubspot);
    for (const id of [4001, 4002, 4003, 4004])
      expect(
        stored.filter((s) => s === `contacts/${id}`),
        String(id),
      ).toHaveLength(1);
  });

  it('refuses a timestamp older than 5 minutes with 401 timestamp_stale', async () => {
    const fresh = [hubspotEvent('contact.creation', { objectId: 2001, portalId: PORTAL })];
    const res = await hubspot(fresh, {
      url: inboundUrl,
      sentTo: sentTo(),
      timestamp: Date.now() - 5 * 60_000 - 1_000,
    });
    expect(res.status).toBe(401);
    expect(res.body.error?.code).toBe('timestamp_stale');
    expect(await subjects(ins.hubspot)).not.toContain('contacts/2001');
  });

  it('verifies against the URI the hub was called at, not another one the secret signed', async () => {
    const requests = await storedRequests();
    const one = [hubspotEvent('contact.creation', { objectId: 3001, portalId: PORTAL })];
    const publicBase = inboundUrl.replace(/\/hooks\/.*$/, '');
    for (const url of [
      `${publicBase}/hooks/hubspot`, // the app-wide URL, sent to the installation's
      `${inboundUrl}?portalId=${PORTAL}`, // a query string the request does not carry
      sentTo(), // the socket address rather than the public URL
    ]) {
      const res = await hubspot(one, { url, sentTo: sentTo() });
      expect(res.status, url).toBe(401);
      expect(res.body.error?.code).toBe('signature_invalid');
    }
    expect(await storedRequests()).toBe(requests);
    // Signed for /hooks/hubspot and sent there, it is routed by portalId and accepted.
    const routed = await hubspot(one, {
      url: `${publicBase}/hooks/hubspot`,
      sentTo: `${base}/hooks/hubspot`,
    });
    expect(routed.body.status).toBe('accepted');
    const routedEvents = await events(`installation_id=${ins.hubspot}`);
    expect(routedEvents.filter((e) => e.subject === 'contacts/3001').map((e) => e.id)).toEqual(
      routed.body.event_ids,
    );
  });
});

describe('custom events', () => {
  const post = (body: unknown) => t.call('POST', '/v1/events', { token: acme.token, body });

  it('stores an event sent twice with the same id once: 201, then 200 with the first event', async () => {
    const id = `sync-${stripeId('x')}`;
    const event = { id, type: 'custom.invoice.synced', subject: 'invoices/77' };
    const first = await post({ ...event, data: { total: '19.99' } });
    expect(first.statusCode, first.body).toBe(201);
    const again = await post({ ...event, data: { total: '19.99' } });
    expect(again.statusCode, again.body).toBe(200);
    expect(again.json()).toEqual(first.json());
    const other = await post({ ...event, data: { total: '0.01' } });
    expect(other.statusCode, other.body).toBe(409);
    expect(other.json().error.code).toBe('event_id_conflict');
    expect(first.json()).toMatchObject({
      type: event.type,
      partitionkey: 'invoices/77',
      data: { total: '19.99' },
    });
    expect((await events('type=custom.invoice.synced')).map((e) => e.id)).toEqual([first.json().id]);
    acmeEventIds.push(first.json().id);
  });

  it('refuses canonical data that does not fit its schema, naming the field', async () => {
    const order = {
      order_id: '1',
      total: '10.00',
      revenue: '10.00',
      currency: 'USD',
      products: [{ product_id: 'p1', name: 'Mug', price: 10, quantity: 1 }],
      external_ids: {},
    };
    const res = await post({ type: 'order.created', data: order });
    expect(res.statusCode).toBe(400);
    expect(res.json().error.code).toBe('validation_failed');
    expect(res.json().error.details.map((d: { path: string }) => d.path)).toEqual([
      'body.data.products.0.price',
    ]);
    const fixed = await post({
      type: 'order.created',
      data: { ...order, products: [{ ...order.products[0], price: '10.00' }] },
    });
    expect(fixed.statusCode, fixed.body).toBe(201);
    acmeEventIds.push(fixed.json().id);
  });

  it('refuses the operational types only the hub emits, even with well-formed data', async () => {
    const before = (await events()).length;
    const at = new Date().toISOString();
    const disabled = { destination_id: 'ins_1', connector: 'webhook', reason: 'gone', disabled_at: at };
    const exhausted = {
      delivery_id: 'd1',
      destination_id: 'ins_1',
      event_id: 'e1',
      event_type: 'order.paid',
    };
    const cases = [
      ['endpoint.disabled', { ...disabled, failing_since: null }],
      ['delivery.exhausted', { ...exhausted, attempts: 8, last_status_code: 500, last_error: null }],
    ] as const;
    for (const [type, data] of cases) {
      const res = await post({ type, data });
      expect(res.statusCode, type).toBe(400);
      expect(res.json().error.code).toBe('validation_failed');
      expect(res.json().error.details[0].path).toBe('body.type');
    }
    expect((await events()).length).toBe(before);
  });
});

describe('tenancy', () => {
  it("shows another organization none of acme's events", async () => {
    const globex = await t.organization('Globex');
    expect(acmeEventIds.length).toBeGreaterThanOrEqual(12);
    expect((await events(`installation_id=${ins.stripe}`)).length).toBeGreaterThan(0);
    expect(await events('', globex.token)).toEqual([]);
    expect(await events(`installation_id=${ins.stripe}`, globex.token)).toEqual([]);
    for (const id of acmeEventIds) {
      const res = await t.call('GET', `/v1/events/${id}`, { token: globex.token });
      expect(res.statusCode, id).toBe(404);
      expect(res.json().error.code).toBe('event_not_found');
      expect((await t.call('GET', `/v1/events/${id}`, { token: acme.token })).statusCode).toBe(200);
    }
  });
});
