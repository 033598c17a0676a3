// POST /v1/installations/{id}/test calls the provider for real (the Mixpanel simulator, a webhook
// receiver), and the responses that create or update an installation warn about settings that
// keep subscribed events from ever being delivered.
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MixpanelSim, startMixpanelSim } from '../sim/mixpanel.ts';
import { startTestApp, type TestApp } from './helpers/app.ts';
import { type Receiver, startReceiver } from './helpers/receiver.ts';

let t: TestApp;
let mixpanel: MixpanelSim;
let receiver: Receiver;
let acme: Awaited<ReturnType<TestApp['organization']>>;

beforeAll(async () => {
  t = await startTestApp({ INTERCHANGE_EGRESS_ALLOW: '127.0.0.1/32' });
  mixpanel = await startMixpanelSim();
  receiver = await startReceiver();
  acme = await t.organization('Acme');
});
afterAll(async () => {
  await t?.close();
  await mixpanel?.close();
  await receiver?.close();
});

async function install(body: Record<string, unknown>) {
  const res = await t.call('POST', '/v1/installations', { token: acme.token, body });
  expect(res.statusCode, res.body).toBe(201);
  return res.json();
}

async function test(id: string) {
  const res = await t.call('POST', `/v1/installations/${id}/test`, { token: acme.token });
  return { status: res.statusCode, body: res.json(), text: res.body };
}

function mixpanelInstall(secrets: Record<string, string>, subscription?: Record<string, unknown>) {
  return install({
    connector: 'mixpanel',
    config: {
      region: 'us',
      host: mixpanel.url,
      projectId: mixpanel.options.projectId,
      auth: 'service_account',
    },
    secrets,
    ...(subscription ? { subscription } : {}),
  });
}

describe('the Mixpanel connection check', () => {
  it("answers failed with Mixpanel's reason for wrong credentials, and ok for right ones", async () => {
    const { username, secret } = mixpanel.options.serviceAccount;
    const wrong = await mixpanelInstall({
      serviceAccountUsername: username,
      serviceAccountSecret: 'nope-0xdead',
    });
    const refused = await test(wrong.id);
    expect(refused.status).toBe(200);
    expect(refused.body).toEqual({
      ok: false,
      message: expect.stringContaining('Mixpanel refused them (401: Invalid credentials)'),
    });
    expect(refused.text).not.toContain('nope-0xdead');

    const fixed = await t.call('PATCH', `/v1/installations/${wrong.id}`, {
      token: acme.token,
      body: { secrets: { serviceAccountSecret: secret, projectToken: mixpanel.options.projectToken } },
    });
    expect(fixed.statusCode, fixed.body).toBe(200);
    expect(await test(wrong.id)).toMatchObject({ status: 200, body: { ok: true } });
    expect(mixpanel.events).toHaveLength(0);
  });
});

describe('installation warnings', () => {
  it('warns at install that customer events need the project token, and stops once it is set', async () => {
    const { username, secret } = mixpanel.options.serviceAccount;
    const created = await mixpanelInstall({ serviceAccountUsername: username, serviceAccountSecret: secret });
    expect(created.warnings).toEqual([
      {
        code: 'profile_updates_need_project_token',
        path: 'body.secrets.projectToken',
        message: expect.stringContaining('customer.created and customer.updated'),
      },
    ]);
    const orders = await mixpanelInstall(
      { serviceAccountUsername: username, serviceAccountSecret: secret },
      { event_types: ['order.*', 'refund.created'] },
    );
    expect(orders.warnings).toEqual([]);
    const patched = await t.call('PATCH', `/v1/installations/${created.id}`, {
      token: acme.token,
      body: { secrets: { projectToken: mixpanel.options.projectToken } },
    });
    expect(patched.json().warnings).toEqual([]);
    const webhook = await install({ connector: 'webhook', config: { url: receiver.url } });
    expect(webhook.warnings).toEqual([]);
  });
});

describe('the webhook endpoint check', () => {
  it('sends a real signed webhook.test and reports what the endpoint answered', async () => {
    const endpoint = await install({ connector: 'webhook', config: { url: receiver.url } });
    receiver.answer = () => 204;
    expect(await test(endpoint.id)).toMatchObject({ status: 200, body: { ok: true } });
    const got = receiver.received.at(-1);
    if (!got) throw new Error('nothing received');
    const verified = new Webhook(endpoint.revealed_secrets.signingSecret).verify(
      got.body,
      got.headers as Record<string, string>,
    );
    expect(verified).toMatchObject({ type: 'webhook.test', data: { installation_id: endpoint.id } });

    receiver.answer = () => 500;
    expect(await test(endpoint.id)).toMatchObject({
      status: 200,
      body: { ok: false, message: 'the endpoint answered 500' },
    });
    receiver.answer = () => 200;
  });
});

describe('sources', () => {
  it('have no check, and say why', async () => {
    const shop = await install({
      connector: 'woocommerce',
      config: { siteUrl: 'https://shop.example.com' },
      secrets: { webhookSecret: 'wc-secret' },
    });
    const res = await test(shop.id);
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({
      code: 'check_unsupported',
      message: expect.stringContaining('WooCommerce is a source: it calls the hub'),
    });
  });

  it('take no subscription: the error says a source receives webhooks', async () => {
    for (const [connector, config, name] of [
      ['woocommerce', { siteUrl: 'https://shop.example.com' }, 'WooCommerce'],
      ['shopify', { shopDomain: 'sub.myshopify.com' }, 'Shopify'],
      ['stripe', {}, 'Stripe'],
      ['hubspot', { portalId: '1' }, 'HubSpot'],
    ] as const) {
      const res = await t.call('POST', '/v1/installations', {
        token: acme.token,
        body: { connector, config, subscription: { event_types: ['*'] } },
      });
      expect(res.statusCode).toBe(400);
      expect(res.json().error).toMatchObject({
        code: 'not_a_destination',
        message: `${name} is a source: its installation receives webhooks and takes no destination subscription`,
      });
    }
  });
});
