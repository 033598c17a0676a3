// Delivery to webhook endpoints through real HTTP, on the embedded database and on PostgreSQL:
// Standard Webhooks signatures checked with the official library (also while a secret rotates),
// retries with a stable webhook-id, 410 disabling the endpoint, recover and retry, subscriptions
// with filters, ordered endpoints and rate limits, and every kind of bad destination refused (an
// internal host name without telling the tenant what it resolves to).
import { sql } from 'drizzle-orm';
import { Webhook } from 'standardwebhooks';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { queryRows } from '../src/store/db.ts';
import { startTestApp, type TestApp } from './helpers/app.ts';
import { maxInWindow, type Receiver, startReceiver } from './helpers/receiver.ts';

const FAST = {
  INTERCHANGE_EGRESS_ALLOW: '127.0.0.1/32',
  INTERCHANGE_RETRY_SCHEDULE: '100ms,100ms,100ms',
  INTERCHANGE_DELIVERY_TIMEOUT: '2s',
  INTERCHANGE_DELIVERY_LEASE: '4s',
};

let t: TestApp;
let org: Awaited<ReturnType<TestApp['organization']>>;
let receiver: Receiver;

beforeAll(async () => {
  t = await startTestApp(FAST);
  t.app.startWorker();
});
// Each test its own organization, so one test's endpoints never receive another's events.
beforeEach(async () => {
  org = await t.organization('Acme');
});
afterAll(() => t?.close());
afterEach(async () => {
  await receiver?.close();
});

async function endpoint(body: Record<string, unknown> = {}, token = org.token) {
  const res = await t.call('POST', '/v1/installations', {
    token,
    body: { connector: 'webhook', config: { url: receiver.url }, ...body },
  });
  expect(res.statusCode, res.body).toBe(201);
  return res.json() as { id: string; revealed_secrets: { signingSecret: string }; subscription: unknown };
}

async function send(type: string, data: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  const res = await t.call('POST', '/v1/events', { token: org.token, body: { type, data, ...extra } });
  expect(res.statusCode, res.body).toBe(201);
  return res.json().id as string;
}

async function deliveriesOf(destination: string) {
  const res = await t.call('GET', `/v1/deliveries?destination=${destination}&limit=100`, {
    token: org.token,
  });
  expect(res.statusCode, res.body).toBe(200);
  return res.json().data as Array<{ id: string; status: string; event_id: string; attempts: number }>;
}

async function until<T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`condition not met in ${ms} ms: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const verify = (secret: string, r: { body: string; headers: Record<string, unknown> }) =>
  new Webhook(secret).verify(r.body, r.headers as Record<string, string>);

describe('a webhook endpoint', () => {
  it('gets a whsec_ secret shown once, a default subscription, and signed events', async () => {
    receiver = await startReceiver();
    const ep = await endpoint();
    expect(ep.revealed_secrets.signingSecret).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/);
    expect(ep.subscription).toEqual({ event_types: ['*'], filter: null, ordered: false, rate_limit: null });
    const shown = (await t.call('GET', `/v1/installations/${ep.id}`, { token: org.token })).body;
    expect(shown).not.toContain(ep.revealed_secrets.signingSecret);
    expect(JSON.parse(shown).secrets_set).toEqual(['signingSecret']);

    const eventId = await send('custom.cart.abandoned', { cart: 'c-1', total: '12.50' });
    await receiver.until((r) => r.length === 1);
    const [got] = receiver.received;
    expect(verify(ep.revealed_secrets.signingSecret, got as never)).toMatchObject({
      id: eventId,
      type: 'custom.cart.abandoned',
      data: { cart: 'c-1', total: '12.50' },
    });
    expect(got?.headers['webhook-id']).toBe(eventId);
    expect(() => verify(`whsec_${Buffer.alloc(32, 7).toString('base64')}`, got as never)).toThrow();
    const [d] = await until(
      () => deliveriesOf(ep.id),
      (l) => l[0]?.status === 'succeeded',
    );
    expect(d).toMatchObject({ event_id: eventId, attempts: 1 });

    const stats = (await t.call('GET', '/v1/stats', { token: org.token })).json().data;
    expect(stats).toHaveLength(1);
    expect(stats[0]).toMatchObject({
      destination_id: ep.id,
      connector: 'webhook',
      counts: { succeeded: 1, pending: 0, dead: 0 },
      success_rate: 1,
      queue_depth: 0,
      oldest_pending_age_seconds: null,
    });
    expect(stats[0].latency_p50_ms).toBeGreaterThan(0);
    const metrics = (await t.call('GET', '/metrics')).body;
    expect(metrics).toContain(
      `interchange_delivery_queue_depth{destination="${ep.id}",connector="webhook"} 0`,
    );
    expect(metrics).toMatch(
      /interchange_delivery_attempts_total\{connector="webhook",outcome="succeeded"\} [1-9]/,
    );
  });

  it('delivers custom data with its numbers exactly as they were sent', async () => {
    receiver = await startReceiver();
    await endpoint();
    const numbers =
      '{"huge":1e400,"big":123456789012345678901234567890,"long":0.1000000000000000055511151231257827}';
    const res = await t.call('POST', '/v1/events', {
      token: org.token,
      headers: { 'content-type': 'application/json' },
      body: `{"type":"custom.measured","data":${numbers}}`,
    });
    expect(res.statusCode, res.body).toBe(201);
    await receiver.until((r) => r.length === 1);
    expect(receiver.received[0]?.body).toContain(`"data":${numbers}}`);
  });

  it('retries 500, 500, 200 with the same webhook-id and records every attempt', async () => {
    receiver = await startReceiver();
    receiver.answer = (r) => (r.n <= 2 ? { status: 500, body: 'boom'.repeat(2000) } : 200);
    const ep = await endpoint();
    const eventId = await send('custom.order.placed', { n: 1 });
    await receiver.until((r) => r.length === 3);
    const ids = receiver.received.map((r) => r.headers['webhook-id']);
    expect(new Set(ids)).toEqual(new Set([eventId]));
    for (const r of receiver.received) verify(ep.revealed_secrets.signingSecret, r as never);
    const [d] = await until(
      () => deliveriesOf(ep.id),
      (l) => l[0]?.status === 'succeeded',
    );
    const detail = (await t.call('GET', `/v1/deliveries/${d?.id}`, { token: org.token })).json();
    expect(detail.attempts).toBe(3);
    expect(detail.attempts_list.map((a: { outcome: string }) => a.outcome)).toEqual([
      'retry',
      'retry',
      'succeeded',
    ]);
    expect(detail.attempts_list[0]).toMatchObject({ status_code: 500, error: 'the endpoint answered 500' });
    expect(Buffer.byteLength(detail.attempts_list[0].response)).toBe(4096);
    await new Promise((r) => setTimeout(r, 300));
    expect(receiver.received).toHaveLength(3);
  });

  it('signs with the old and the new secret for a day after a rotation', async () => {
    receiver = await startReceiver();
    const ep = await endpoint();
    const old = ep.revealed_secrets.signingSecret;
    const rotated = await t.call('POST', `/v1/installations/${ep.id}/rotate-secret`, { token: org.token });
    expect(rotated.statusCode, rotated.body).toBe(200);
    const fresh = rotated.json().revealed_secrets.signingSecret as string;
    expect(fresh).not.toBe(old);
    await send('custom.ping', {});
    await receiver.until((r) => r.length === 1);
    const got = receiver.received[0] as never;
    expect(
      String((got as { headers: Record<string, string> }).headers['webhook-signature']).split(' '),
    ).toHaveLength(2);
    expect(verify(old, got)).toMatchObject({ type: 'custom.ping' });
    expect(verify(fresh, got)).toMatchObject({ type: 'custom.ping' });
  });

  it('is disabled by a 410; recover re-enables it and re-sends, retry re-sends one', async () => {
    receiver = await startReceiver();
    receiver.answer = () => 410;
    const ep = await endpoint();
    const eventId = await send('custom.gone', { n: 1 });
    await until(
      () => deliveriesOf(ep.id),
      (l) => l[0]?.status === 'dead',
    );
    const inst = (await t.call('GET', `/v1/installations/${ep.id}`, { token: org.token })).json();
    expect(inst).toMatchObject({ status: 'disabled', disabled_reason: 'gone' });
    const ops = (await t.call('GET', '/v1/events?type=endpoint.*', { token: org.token })).json().data;
    expect(
      ops.filter((e: { data: { destination_id: string } }) => e.data.destination_id === ep.id),
    ).toMatchObject([{ type: 'endpoint.disabled', data: { reason: 'gone', connector: 'webhook' } }]);
    const exhausted = (await t.call('GET', '/v1/events?type=delivery.*', { token: org.token })).json().data;
    expect(exhausted.some((e: { data: { event_id: string } }) => e.data.event_id === eventId)).toBe(true);

    // While disabled, new events wait; nothing is sent.
    await send('custom.gone', { n: 2 });
    await new Promise((r) => setTimeout(r, 300));
    expect(receiver.received).toHaveLength(1);

    receiver.answer = () => 204;
    const since = new Date(Date.now() - 60_000).toISOString();
    const recovered = await t.call('POST', `/v1/installations/${ep.id}/recover`, {
      token: org.token,
      body: { since },
    });
    expect(recovered.statusCode, recovered.body).toBe(200);
    expect(recovered.json().requeued).toBe(1);
    const done = await until(
      () => deliveriesOf(ep.id),
      (l) => l.length === 2 && l.every((d) => d.status === 'succeeded'),
    );
    expect((await t.call('GET', `/v1/installations/${ep.id}`, { token: org.token })).json().status).toBe(
      'active',
    );

    const again = await t.call('POST', `/v1/deliveries/${done[0]?.id}/retry`, { token: org.token });
    expect(again.statusCode, again.body).toBe(202);
    await receiver.until((r) => r.filter((x) => x.headers['webhook-id'] === eventId).length === 3);
  });

  it('receives only what its subscription and filter match, amounts compared exactly', async () => {
    receiver = await startReceiver();
    await endpoint({
      subscription: {
        event_types: ['custom.order.*'],
        filter: { total: { $gte: '100.00' }, currency: 'EUR' },
      },
    });
    await send('custom.order.placed', { total: '99.99', currency: 'EUR' });
    await send('custom.order.placed', { total: '100', currency: 'USD' });
    await send('custom.cart.abandoned', { total: '500', currency: 'EUR' });
    const big = await send('custom.order.placed', { total: '100.00', currency: 'EUR' });
    await receiver.until((r) => r.length >= 1);
    await new Promise((r) => setTimeout(r, 300));
    expect(receiver.received.map((r) => r.json.id)).toEqual([big]);
  });

  it('ordered: holds a key while its earlier event retries', async () => {
    receiver = await startReceiver();
    let failures = 0;
    receiver.answer = (r) => (r.json.data.n === 1 && failures++ < 2 ? 503 : 200);
    await endpoint({ subscription: { event_types: ['custom.seq'], ordered: true } });
    for (const n of [1, 2, 3, 4]) await send('custom.seq', { n }, { partition_key: 'shop-a' });
    await receiver.until((r) => r.filter((x) => x.headers['webhook-id']).length >= 6);
    const order = receiver.received.map((r) => r.json.data.n);
    expect(order).toEqual([1, 1, 1, 2, 3, 4]);
  });

  it('keeps to its rate limit', async () => {
    receiver = await startReceiver();
    await endpoint({ subscription: { event_types: ['custom.burst'], rate_limit: 10 } });
    for (let n = 0; n < 12; n++) await send('custom.burst', { n });
    await receiver.until((r) => r.length === 12);
    const at = receiver.received.map((r) => r.at);
    // 10 per second: 12 requests take at least 11 send slots of 100 ms, and no second sees more
    // than the limit plus what timers bunch together on a loaded machine.
    expect((at.at(-1) as number) - (at[0] as number)).toBeGreaterThanOrEqual(11 * 100 * 0.95);
    expect(maxInWindow(at, 1000)).toBeLessThanOrEqual(12);
  });
});

describe('bad destinations', () => {
  it('refuses blocked, invalid and unresolvable URLs, unknown event types and malformed filters', async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ config: { url: 'http://10.1.2.3/hook' } }, 'url_blocked'],
      [{ config: { url: 'http://169.254.169.254/latest/meta-data' } }, 'url_blocked'],
      [{ config: { url: 'http://[::ffff:10.0.0.1]/' } }, 'url_blocked'],
      [{ config: { url: 'http://[::1]:9/' } }, 'url_blocked'],
      [{ config: { url: 'http://0x0a.1.2.3/' } }, 'url_blocked'],
      [{ config: { url: 'ftp://example.com/' } }, 'validation_failed'],
      [{ config: { url: 'not a url' } }, 'validation_failed'],
      [
        { config: { url: 'http://127.0.0.1:9/' }, subscription: { event_types: ['order.shipped'] } },
        'event_type_unknown',
      ],
      [
        { config: { url: 'http://127.0.0.1:9/' }, subscription: { event_types: ['nope.*'] } },
        'event_type_unknown',
      ],
      [
        {
          config: { url: 'http://127.0.0.1:9/' },
          subscription: { event_types: ['*'], filter: { total: { $regex: 'x' } } },
        },
        'filter_invalid',
      ],
      [
        { config: { url: 'http://127.0.0.1:9/' }, subscription: { event_types: ['*'], filter: { $or: {} } } },
        'filter_invalid',
      ],
      [{ config: { url: 'http://127.0.0.1:9/' }, subscription: { event_types: [] } }, 'validation_failed'],
    ];
    for (const [body, code] of cases) {
      const res = await t.call('POST', '/v1/installations', {
        token: org.token,
        body: { connector: 'webhook', ...body },
      });
      expect(res.statusCode, `${JSON.stringify(body)} → ${res.body}`).toBe(400);
      expect(res.json().error.code, JSON.stringify(body)).toBe(code);
    }
    const shopify = await t.call('POST', '/v1/installations', {
      token: org.token,
      body: {
        connector: 'shopify',
        config: { shopDomain: 'x.myshopify.com' },
        subscription: { event_types: ['*'] },
      },
    });
    expect(shopify.json().error.code).toBe('not_a_destination');
    const [{ n } = { n: -1 }] = await queryRows<{ n: number }>(
      t.app.store.db,
      sql`select count(*)::int as n from installations where connector_id = 'webhook' and config->>'url' not like 'http://127.0.0.1:%/hook'`,
    );
    expect(n).toBe(0);
  });

  it('tells the tenant that a host name resolves to a non-public address, never which one', async () => {
    // No allowlist: `localhost` resolves to loopback addresses only.
    const strict = await startTestApp({ INTERCHANGE_RETRY_SCHEDULE: '100ms' });
    try {
      strict.app.startWorker();
      const acme = await strict.organization('Acme');
      const create = (url: string) =>
        strict.call('POST', '/v1/installations', {
          token: acme.token,
          body: { connector: 'webhook', config: { url } },
        });
      const refused = await create('http://localhost:9/hook');
      expect(refused.statusCode, refused.body).toBe(400);
      expect(refused.json().error.code).toBe('url_blocked');
      expect(refused.json().error.message).toContain('localhost resolves to a non-public address');
      expect(refused.body).not.toMatch(/127\.0\.0\.1|::1|loopback/);

      // A destination whose host name came to resolve there after it was saved (DNS changes).
      const ep = await create('http://8.8.8.8/hook');
      expect(ep.statusCode, ep.body).toBe(201);
      const id = ep.json().id as string;
      await strict.app.store.db.execute(
        sql`update installations set config = jsonb_set(config, '{url}', '"http://localhost:9/hook"')
            where id = ${id}`,
      );
      strict.app.services.installations.forget(id);
      await strict.call('POST', '/v1/events', {
        token: acme.token,
        body: { type: 'custom.probe', data: {} },
      });
      const [delivery] = await until(
        async () =>
          (await strict.call('GET', `/v1/deliveries?destination=${id}`, { token: acme.token })).json()
            .data as Array<{ id: string; last_error: string | null }>,
        (list) => Boolean(list[0]?.last_error),
      );
      const detail = await strict.call('GET', `/v1/deliveries/${delivery?.id}`, { token: acme.token });
      expect(detail.json().last_error).toContain('localhost resolves to a non-public address');
      expect(detail.json().attempts_list.length).toBeGreaterThan(0);
      expect(detail.body).not.toMatch(/127\.0\.0\.1|::1|loopback/);
      // The operator's log names it.
      expect(strict.logs()).toMatch(/localhost resolves to loopback address/);
    } finally {
      await strict.close();
    }
  });

  it('refuses a rate limit outside 0.01 to 10,000 requests a second, naming the field', async () => {
    const create = (rate: number) =>
      t.call('POST', '/v1/installations', {
        token: org.token,
        body: {
          connector: 'webhook',
          config: { url: 'http://127.0.0.1:9/hook' },
          subscription: { event_types: ['*'], rate_limit: rate },
        },
      });
    for (const rate of [1e-300, 0.001, 0, -1, 10_000.5, 1e6]) {
      const res = await create(rate);
      expect(res.statusCode, `${rate} → ${res.body}`).toBe(400);
      expect(res.json().error).toMatchObject({
        code: 'validation_failed',
        details: [{ path: 'body.subscription.rate_limit' }],
      });
    }
    for (const rate of [0.01, 10_000]) {
      const res = await create(rate);
      expect(res.statusCode, `${rate} → ${res.body}`).toBe(201);
      expect(res.json().subscription.rate_limit).toBe(rate);
    }
    // A change is held to the same range.
    const id = (await create(5)).json().id as string;
    const changed = await t.call('PATCH', `/v1/installations/${id}`, {
      token: org.token,
      body: { subscription: { event_types: ['*'], rate_limit: 1e-300 } },
    });
    expect(changed.statusCode, changed.body).toBe(400);
    expect(changed.json().error.details[0].path).toBe('body.subscription.rate_limit');
  });

  it("hides another organization's deliveries and destinations", async () => {
    receiver = await startReceiver();
    const ep = await endpoint();
    await send('custom.secret', { n: 1 });
    const [d] = await until(
      () => deliveriesOf(ep.id),
      (l) => l.length === 1,
    );
    const other = await t.organization('Globex');
    for (const [method, url, body] of [
      ['GET', `/v1/deliveries/${d?.id}`, undefined],
      ['POST', `/v1/deliveries/${d?.id}/retry`, undefined],
      ['POST', `/v1/installations/${ep.id}/recover`, { since: new Date(0).toISOString() }],
      ['POST', `/v1/installations/${ep.id}/rotate-secret`, undefined],
    ] as const) {
      const res = await t.call(method, url, { token: other.token, body });
      expect(res.statusCode, `${method} ${url}`).toBe(404);
    }
    expect((await t.call('GET', '/v1/deliveries', { token: other.token })).json().data).toEqual([]);
    expect((await t.call('GET', '/v1/stats', { token: other.token })).json().data).toEqual([]);
  });
});
