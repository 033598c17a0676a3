// The e-commerce analytics flow end to end, through real HTTP: an organization, a user holding a
// Shopify customer id, a Shopify source, a Mixpanel destination (the simulator) and a webhook
// endpoint. One signed Shopify orders/create reaches Mixpanel as `Order Completed` for the
// organization's user id, and the endpoint as a verified `order.created`; its refund reaches
// Mixpanel for the same user. Stripe partial refunds reach Mixpanel once each.
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type MixpanelSim, startMixpanelSim } from '../sim/mixpanel.ts';
import { sendShopifyWebhook, shopifyOrder, shopifyRefund } from '../sim/shopify.ts';
import {
  sendStripeWebhook,
  stripeCharge,
  stripeEvent,
  stripePaymentIntent,
  stripeRefund,
  stripeRefundEvents,
} from '../sim/stripe.ts';
import { startTestApp, type TestApp } from './helpers/app.ts';
import { type Receiver, startReceiver } from './helpers/receiver.ts';

const SHOP = 'acme-store.myshopify.com';
const SHOPIFY_SECRET = 'shpss_e2e_secret_0123456789';
const STRIPE_SECRET = 'whsec_e2e_secret_0123456789abcdef';

let t: TestApp;
let mixpanel: MixpanelSim;
let receiver: Receiver;

beforeAll(async () => {
  t = await startTestApp({
    INTERCHANGE_EGRESS_ALLOW: '127.0.0.1/32',
    INTERCHANGE_RETRY_SCHEDULE: '200ms,200ms',
  });
  t.app.startWorker();
  await t.app.server.listen({ port: 0, host: '127.0.0.1' });
  mixpanel = await startMixpanelSim();
  receiver = await startReceiver();
});
afterAll(async () => {
  await t?.close();
  await mixpanel?.close();
  await receiver?.close();
});

it('turns a Shopify order into Order Completed for the user in Mixpanel and a signed order.created, its refund into Order Refunded for the same user', async () => {
  const base = `http://127.0.0.1:${(t.app.server.server.address() as AddressInfo).port}`;
  const org = await t.organization('Acme Analytics');
  const install = async (body: Record<string, unknown>) => {
    const res = await t.call('POST', '/v1/installations', { token: org.token, body });
    expect(res.statusCode, res.body).toBe(201);
    return res.json();
  };
  const customerId = '115310627314723954';
  const user = (
    await t.call('POST', '/v1/users', {
      token: org.token,
      body: { email: 'ada@example.com', external_ids: { shopify: customerId } },
    })
  ).json();
  const shopify = await install({
    connector: 'shopify',
    config: { shopDomain: SHOP },
    secrets: { clientSecret: SHOPIFY_SECRET },
  });
  await install({
    connector: 'mixpanel',
    config: {
      region: 'us',
      host: mixpanel.url,
      projectId: mixpanel.options.projectId,
      auth: 'service_account',
    },
    secrets: {
      serviceAccountUsername: mixpanel.options.serviceAccount.username,
      serviceAccountSecret: mixpanel.options.serviceAccount.secret,
    },
  });
  const endpoint = await install({
    connector: 'webhook',
    config: { url: receiver.url },
    subscription: { event_types: ['order.*'] },
  });

  const sent = await sendShopifyWebhook(`${base}/hooks/${shopify.id}`, {
    topic: 'orders/create',
    shopDomain: SHOP,
    body: shopifyOrder({ id: 820982911946154508n }),
    secret: SHOPIFY_SECRET,
  });
  expect(sent.status, sent.body).toBe(200);
  const [eventId] = JSON.parse(sent.body).event_ids;

  await receiver.until((r) => r.length === 1);
  const got = receiver.received[0] as NonNullable<(typeof receiver.received)[0]>;
  const verified = new Webhook(endpoint.revealed_secrets.signingSecret).verify(
    got.body,
    got.headers as Record<string, string>,
  );
  expect(verified).toMatchObject({
    id: eventId,
    type: 'order.created',
    user_id: user.id,
    data: { order_id: '820982911946154508', currency: 'USD' },
  });

  const deadline = Date.now() + 20_000;
  while (!mixpanel.events.some((e) => e.event === 'Order Completed') && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  const completed = mixpanel.events.filter((e) => e.event === 'Order Completed');
  expect(completed).toHaveLength(1);
  expect(completed[0]?.properties).toMatchObject({ distinct_id: user.id, order_id: '820982911946154508' });
  expect(typeof completed[0]?.properties.total).toBe('number');
  expect(mixpanel.requests.every((r) => r.auth === 'service_account')).toBe(true);

  // Shopify's refund names the order, not the customer: it reaches Mixpanel for the same user.
  const refund = await sendShopifyWebhook(`${base}/hooks/${shopify.id}`, {
    topic: 'refunds/create',
    shopDomain: SHOP,
    body: shopifyRefund({ orderId: 820982911946154508n }),
    secret: SHOPIFY_SECRET,
  });
  expect(refund.status, refund.body).toBe(200);
  const [refunded] = await mixpanelEvents(
    (e) => e.event === 'Order Refunded' && e.properties.order_id === '820982911946154508',
    1,
  );
  expect(refunded?.properties).toMatchObject({ distinct_id: user.id, total: 199 });
});

/** Waits until Mixpanel holds `count` events that `match` (the worker delivers in the background). */
async function mixpanelEvents(match: (e: MixpanelSim['events'][number]) => boolean, count: number) {
  const deadline = Date.now() + 20_000;
  while (mixpanel.events.filter(match).length < count && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  return mixpanel.events.filter(match);
}

it('counts Stripe partial refunds of $10 then $15 as Order Refunded 10 and 15, once each though Stripe reports each twice', async () => {
  const base = `http://127.0.0.1:${(t.app.server.server.address() as AddressInfo).port}`;
  const org = await t.organization('Acme Payments');
  const install = async (body: Record<string, unknown>) => {
    const res = await t.call('POST', '/v1/installations', { token: org.token, body });
    expect(res.statusCode, res.body).toBe(201);
    return res.json();
  };
  const stripe = await install({ connector: 'stripe', secrets: { webhookSecret: STRIPE_SECRET } });
  await install({
    connector: 'mixpanel',
    config: { region: 'us', host: mixpanel.url, auth: 'project_token' },
    secrets: { projectToken: mixpanel.options.projectToken },
    subscription: { event_types: ['refund.created'] },
  });
  const send = async (event: Parameters<typeof sendStripeWebhook>[1]) => {
    const res = await sendStripeWebhook(`${base}/hooks/${stripe.id}`, event, { secret: STRIPE_SECRET });
    expect(res.status).toBe(200);
  };

  const payment = stripePaymentIntent({ amount: 5000 });
  const user = (
    await t.call('POST', '/v1/users', {
      token: org.token,
      body: { external_ids: { stripe: payment.customer as string } },
    })
  ).json();
  await send(stripeEvent('payment_intent.succeeded', payment));
  const charge = stripeCharge({
    amount: 5000,
    amount_refunded: 0,
    refunded: false,
    customer: payment.customer,
    payment_intent: payment.id,
  });
  const first = stripeRefundEvents({ ...charge, amount_refunded: 1000 }, stripeRefund({ amount: 1000 }));
  const second = stripeRefundEvents({ ...charge, amount_refunded: 2500 }, stripeRefund({ amount: 1500 }));
  // Stripe sends both events of a refund in no promised order.
  for (const event of [
    first.chargeRefunded,
    first.refundCreated,
    second.refundCreated,
    second.chargeRefunded,
  ])
    await send(event);

  const refunded = await mixpanelEvents(
    (e) => e.event === 'Order Refunded' && e.properties.payment_id === payment.id,
    2,
  );
  expect(refunded.map((e) => e.properties.total).sort()).toEqual([10, 15]);
  // The second refund was stored from refund.created, which names no customer: the hub took the
  // payment's, so both go to the user.
  expect(refunded.map((e) => e.properties.distinct_id)).toEqual([user.id, user.id]);
  // Nothing more arrives later (each refund was stored once, so delivered once).
  await new Promise((r) => setTimeout(r, 500));
  expect(mixpanel.events.filter((e) => e.properties.payment_id === payment.id)).toHaveLength(2);
});
