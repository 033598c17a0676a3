// Back-pressure on ingest: while the database holds the commits, no more than the configured
// number of webhooks wait in memory; the rest get 503 `overloaded` with Retry-After, and once
// the database answers, every webhook accepted, and every one the provider sends again, is stored.
// A lagging event loop sheds webhooks the same way.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stripeCustomer, stripeEvent, stripeWebhookRequest } from '../sim/stripe.ts';
import { startTestApp, type TestApp } from './helpers/app.ts';

const SECRET = 'whsec_backpressure_0123456789abcdef';
let t: TestApp;
let token: string;
let installationId: string;
let hookUrl: string;

beforeAll(async () => {
  t = await startTestApp({ INTERCHANGE_INGEST_QUEUE_LIMIT: '2', INTERCHANGE_MAX_EVENT_LOOP_DELAY: '200ms' });
  const org = await t.organization('Back-pressure');
  token = org.token;
  const created = await t.call('POST', '/v1/installations', {
    token,
    body: { connector: 'stripe', secrets: { webhookSecret: SECRET } },
  });
  installationId = created.json().id;
  hookUrl = `/hooks/${installationId}`;
});
afterAll(() => t?.close());

/** A Stripe webhook, signed: the same request can be sent again, as Stripe retries it. */
function webhook() {
  const event = stripeEvent('customer.created', stripeCustomer());
  const { body, headers } = stripeWebhookRequest(event, { secret: SECRET });
  return { send: () => t.call('POST', hookUrl, { body, headers }) };
}

/** Makes every statement of the ingest path wait until `release()` (the committer reads `store.db` at each batch). */
function holdCommits(): { release(): void } {
  const db = t.app.store.db;
  let release = () => {};
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  const held = (method: 'execute' | 'transaction') =>
    (async (...args: unknown[]) => {
      await gate;
      return (db[method] as (...a: unknown[]) => unknown).apply(db, args);
    }) as never;
  t.app.store.db = new Proxy(db, {
    get: (target, key) => (key === 'execute' || key === 'transaction' ? held(key) : Reflect.get(target, key)),
  });
  return {
    release() {
      t.app.store.db = db;
      release();
    },
  };
}

/** The installation's stored requests, by status (GET /v1/installations/{id}/requests). */
async function storedRequests(): Promise<Record<string, number>> {
  const res = await t.call('GET', `/v1/installations/${installationId}/requests?limit=100`, { token });
  const counts: Record<string, number> = {};
  for (const r of res.json().data as Array<{ status: string }>)
    counts[r.status] = (counts[r.status] ?? 0) + 1;
  return counts;
}

describe('a bounded ingest queue', () => {
  it('refuses webhooks beyond the bound with 503 and Retry-After, and loses none of the accepted', async () => {
    const hooks = Array.from({ length: 6 }, webhook);
    const gate = holdCommits();
    const answers = hooks.map((hook) => hook.send());
    // The refusals come at once; the two that wait are answered only after their commit.
    const settled = await Promise.race([
      Promise.all(answers),
      new Promise<'waiting'>((resolve) => setTimeout(() => resolve('waiting'), 1000)),
    ]);
    expect(settled).toBe('waiting');
    gate.release();
    const responses = await Promise.all(answers);
    const statuses = responses.map((r) => r.statusCode).sort();
    expect(statuses).toEqual([200, 200, 503, 503, 503, 503]);
    for (const refused of responses.filter((r) => r.statusCode === 503)) {
      expect(refused.json().error.code).toBe('overloaded');
      expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
    }
    for (const accepted of responses.filter((r) => r.statusCode === 200))
      expect(accepted.json().status).toBe('accepted');

    // The provider retries the refused ones; then every webhook is stored exactly once.
    const retried = hooks.filter((_, i) => responses[i]?.statusCode === 503);
    for (const hook of retried) expect((await hook.send()).json().status).toBe('accepted');
    expect(await storedRequests()).toEqual({ accepted: hooks.length });
  });
});

describe('shedding on event-loop lag', () => {
  it('answers webhooks 503 overloaded while the event loop lags, and takes them again after', async () => {
    // Keep the event loop busy for 2.5 s, 300 ms at a time (the limit here is 200 ms on average).
    const lagUntil = Date.now() + 2500;
    await new Promise<void>((done) => {
      const hog = () => {
        const until = Date.now() + 300;
        while (Date.now() < until) {}
        if (Date.now() < lagUntil) setTimeout(hog, 0);
        else done();
      };
      hog();
    });
    const shed = await webhook().send();
    expect(shed.statusCode).toBe(503);
    expect(shed.json().error.code).toBe('overloaded');
    expect(shed.headers['retry-after']).toBeDefined();
    // The API is not shed.
    expect((await t.call('GET', '/healthz')).statusCode).toBe(200);

    // Once the lag has been measured away (every second), webhooks are taken again.
    let status = 0;
    for (let tries = 0; tries < 50 && status !== 200; tries++) {
      await new Promise((r) => setTimeout(r, 100));
      status = (await webhook().send()).statusCode;
    }
    expect(status).toBe(200);
  });
});
