import { createServer } from 'node:http';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type MixpanelSim, startMixpanelSim } from '../../../sim/mixpanel.ts';
import { createEgressGuard, type EgressGuard } from '../../delivery/egress.ts';
import { createHttpClient } from '../../delivery/http.ts';
import type { DeliveryItem, DeliveryResult, HttpClient } from '../sdk.ts';
import { canonicalCustomer, canonicalOrder, canonicalRefund, item } from './fixtures.ts';
import mixpanel from './index.ts';
import { retryAfterMs } from './send.ts';

const destination = mixpanel.destination;
if (!destination) throw new Error('mixpanel must be a destination');

let sim: MixpanelSim;
let guard: EgressGuard;
let http: HttpClient;

beforeAll(async () => {
  sim = await startMixpanelSim();
  guard = createEgressGuard({ allow: ['127.0.0.1/32'] });
  http = createHttpClient(guard);
});
afterAll(async () => {
  await guard.close();
  await sim.close();
});
beforeEach(() => {
  sim.events.length = 0;
  sim.requests.length = 0;
  sim.profiles.clear();
});

type Auth = 'service_account' | 'project_token';

function secretsFor(auth: Auth) {
  const { serviceAccount, projectToken } = sim.options;
  return auth === 'service_account'
    ? {
        serviceAccountUsername: serviceAccount.username,
        serviceAccountSecret: serviceAccount.secret,
        projectToken,
      }
    : { projectToken };
}

function context(
  options: { auth?: Auth; secrets?: Record<string, string>; host?: string; productEvents?: boolean } = {},
) {
  const auth = options.auth ?? 'service_account';
  const config = mixpanel.config.parse({
    region: 'us',
    host: options.host ?? sim.url,
    projectId: sim.options.projectId,
    auth,
    productEvents: options.productEvents ?? false,
  });
  return {
    installationId: 'ins_mixpanel_test',
    config,
    secrets: options.secrets ?? secretsFor(auth),
    now: new Date(),
    http,
  };
}

async function deliver(batch: DeliveryItem[], ctx = context()): Promise<DeliveryResult[]> {
  return destination?.deliver(batch, ctx) ?? [];
}

const statuses = (results: DeliveryResult[]) => results.map((r) => r.status);
const imports = () => sim.requests.filter((r) => r.path === '/import');

function shopBatch(): DeliveryItem[] {
  return [
    item('order.created', canonicalOrder()),
    item(
      'order.created',
      canonicalOrder({ order_id: '820982911946154509', total: '19.99', revenue: '19.99' }),
    ),
    item('refund.created', canonicalRefund()),
    item('customer.updated', canonicalCustomer(), { userid: 'usr_42' }),
  ];
}

describe('delivering to the Mixpanel simulator', () => {
  it('sends gzip /import with service-account auth, stores each event once when a batch is sent twice', async () => {
    const batch = shopBatch();
    expect(statuses(await deliver(batch))).toEqual(['delivered', 'delivered', 'delivered', 'delivered']);
    expect(imports()).toEqual([
      expect.objectContaining({ auth: 'service_account', gzip: true, records: 3, status: 200 }),
    ]);
    expect(imports()[0]?.query).toMatchObject({ strict: '1', project_id: sim.options.projectId });
    expect(sim.events.map((e) => e.event)).toEqual(['Order Completed', 'Order Completed', 'Order Refunded']);
    expect(sim.events[1]?.properties.total).toBe(19.99);
    expect(sim.profiles.get('usr_42')).toMatchObject({
      $email: 'bob.norman@example.com',
      $name: 'Bob Norman',
    });

    const again = await deliver(batch.map((i) => ({ ...i, attempt: 2 })));
    expect(statuses(again)).toEqual(['delivered', 'delivered', 'delivered', 'delivered']);
    expect(sim.events).toHaveLength(3);
  });

  it('authenticates with the project token as the Basic username', async () => {
    const results = await deliver(shopBatch(), context({ auth: 'project_token' }));
    expect(statuses(results)).toEqual(['delivered', 'delivered', 'delivered', 'delivered']);
    expect(imports()[0]).toMatchObject({ auth: 'project_token', gzip: true });
    expect(imports()[0]?.query).not.toHaveProperty('project_id');
    expect(sim.events).toHaveLength(3);
  });

  it('fails only the item Mixpanel rejects in strict mode; the others are delivered', async () => {
    const batch = [
      item('order.created', canonicalOrder()),
      item('order.created', canonicalOrder({ order_id: '1970' }), { time: '1970-06-01T00:00:00Z' }),
      item('refund.created', canonicalRefund()),
    ];
    const results = await deliver(batch);
    expect(statuses(results)).toEqual(['delivered', 'failed', 'delivered']);
    expect(results[1]).toMatchObject({ statusCode: 400, error: expect.stringContaining('properties.time') });
    expect(sim.events.map((e) => e.properties.order_id)).toEqual([
      '820982911946154508',
      '820982911946154508',
    ]);
  });

  it('answers 429 with retry and throttle, honouring Retry-After, else starting at 2 s', async () => {
    sim.failNext(1, 429, '7');
    const throttled = await deliver(shopBatch());
    expect(throttled[0]).toMatchObject({
      status: 'retry',
      throttle: true,
      retryAfterMs: 7000,
      statusCode: 429,
    });
    expect(statuses(throttled).slice(0, 3)).toEqual(['retry', 'retry', 'retry']);
    sim.failNext(1, 429);
    expect((await deliver([item('order.created', canonicalOrder())]))[0]).toMatchObject({
      status: 'retry',
      throttle: true,
      retryAfterMs: 2000,
    });
    expect(sim.events).toHaveLength(0);
  });

  it('retries on 5xx and when Mixpanel cannot be reached', async () => {
    sim.failNext(1, 500);
    const [failed] = await deliver([item('order.created', canonicalOrder())]);
    expect(failed).toMatchObject({ status: 'retry', statusCode: 500 });
    expect(failed).not.toHaveProperty('throttle');

    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const address = closed.address();
    await new Promise((r) => closed.close(r));
    const host = typeof address === 'object' && address ? `http://127.0.0.1:${address.port}` : '';
    const [unreachable] = await deliver([item('order.created', canonicalOrder())], context({ host }));
    expect(unreachable).toMatchObject({ status: 'retry', error: expect.stringContaining('unreachable') });
  });

  it('fails every item on bad credentials, without echoing them', async () => {
    const secrets = {
      serviceAccountUsername: sim.options.serviceAccount.username,
      serviceAccountSecret: 'wrong-secret',
    };
    const results = await deliver(shopBatch().slice(0, 3), context({ secrets }));
    expect(statuses(results)).toEqual(['failed', 'failed', 'failed']);
    expect(results[0]).toMatchObject({ statusCode: 401 });
    expect(JSON.stringify(results)).not.toContain('wrong-secret');
    expect(sim.events).toHaveLength(0);
  });

  it('fails every item without a request when a needed secret is missing', async () => {
    const noSecret = await deliver(
      shopBatch(),
      context({ secrets: { projectToken: sim.options.projectToken } }),
    );
    expect(statuses(noSecret)).toEqual(['failed', 'failed', 'failed', 'failed']);
    expect(noSecret[0]).toMatchObject({ error: expect.stringContaining('service account') });
    const noToken = await deliver(shopBatch(), context({ auth: 'project_token', secrets: {} }));
    expect(statuses(noToken)).toEqual(['failed', 'failed', 'failed', 'failed']);
    expect(sim.requests).toHaveLength(0);
  });

  it('fails customer updates, and only them, when the project token is missing with a service account', async () => {
    const { serviceAccount } = sim.options;
    const secrets = {
      serviceAccountUsername: serviceAccount.username,
      serviceAccountSecret: serviceAccount.secret,
    };
    const results = await deliver(shopBatch(), context({ secrets }));
    expect(statuses(results)).toEqual(['delivered', 'delivered', 'delivered', 'failed']);
    expect(results[3]).toMatchObject({ error: expect.stringContaining('project token') });
    expect(sim.requests.map((r) => r.path)).toEqual(['/import']);
  });

  it('splits a batch over 2 MB into several requests, each within the limits', async () => {
    const line = {
      product_id: '1',
      variant_id: '2',
      sku: 'SKU',
      name: 'x'.repeat(180),
      price: '1.00',
      quantity: 1,
    };
    const products = Array.from({ length: 100 }, (_, i) => ({ ...line, product_id: String(i) }));
    const batch = Array.from({ length: 120 }, (_, i) =>
      item('order.created', canonicalOrder({ order_id: String(i), products })),
    );
    const results = await deliver(batch);
    expect(new Set(statuses(results))).toEqual(new Set(['delivered']));
    expect(imports().length).toBeGreaterThanOrEqual(2);
    for (const r of imports()) expect(r).toMatchObject({ status: 200, gzip: true });
    for (const r of imports()) expect(r.bytes).toBeLessThanOrEqual(2_000_000);
    expect(imports().reduce((n, r) => n + r.records, 0)).toBe(120);
    expect(sim.events).toHaveLength(120);
  });

  it('halves a request Mixpanel answers 413, and fails alone an event over 1 MB', async () => {
    sim.failNext(1, 413);
    const huge = canonicalOrder({ order_id: 'huge', coupon: 'x'.repeat(1_100_000) });
    const batch = [
      item('order.created', canonicalOrder()),
      item('order.created', huge),
      item('refund.created', canonicalRefund()),
      item('order.refunded', canonicalOrder()),
    ];
    const results = await deliver(batch);
    expect(statuses(results)).toEqual(['delivered', 'failed', 'delivered', 'delivered']);
    expect(results[1]).toMatchObject({ error: expect.stringContaining('1 MB') });
    expect(imports().map((r) => [r.status, r.records])).toEqual([
      [413, 0],
      [200, 2],
      [200, 1],
    ]);
    expect(sim.events).toHaveLength(3);
  });
});

describe('the connection check', () => {
  const check = async (ctx: ReturnType<typeof context>) => {
    if (!mixpanel.check) throw new Error('mixpanel must have a connection check');
    return mixpanel.check(ctx);
  };

  it('asks Mixpanel: right credentials are ok, importing nothing', async () => {
    const result = await check(context());
    expect(result).toEqual({
      ok: true,
      message: `Mixpanel accepted the service account for project ${sim.options.projectId} and the project token`,
    });
    expect(imports().map((r) => [r.auth, r.records, r.status])).toEqual([
      ['service_account', 0, 200],
      ['project_token', 0, 200],
    ]);
    expect(sim.events).toHaveLength(0);
    expect((await check(context({ auth: 'project_token' }))).ok).toBe(true);
  });

  it("fails wrong credentials with Mixpanel's reason, never the secret", async () => {
    const { serviceAccount } = sim.options;
    const wrong = await check(
      context({
        secrets: { serviceAccountUsername: serviceAccount.username, serviceAccountSecret: 'wrong-secret-x1' },
      }),
    );
    expect(wrong).toEqual({
      ok: false,
      message: `the service account for project ${sim.options.projectId}: Mixpanel refused them (401: Invalid credentials)`,
    });
    const badToken = await check(
      context({ auth: 'project_token', secrets: { projectToken: 'not-the-token-x2' } }),
    );
    expect(badToken).toMatchObject({
      ok: false,
      message: expect.stringContaining('401: Invalid credentials'),
    });
    expect(JSON.stringify([wrong, badToken])).not.toMatch(/wrong-secret-x1|not-the-token-x2/);
    const tokenWrong = await check(
      context({
        secrets: {
          serviceAccountUsername: serviceAccount.username,
          serviceAccountSecret: serviceAccount.secret,
          projectToken: 'stale-token-x3',
        },
      }),
    );
    expect(tokenWrong).toMatchObject({
      ok: false,
      message: expect.stringContaining('not the project token'),
    });
    expect(tokenWrong.message).not.toContain('stale-token-x3');
  });

  it('fails a service account without access to the project (403), an unreachable host and missing secrets', async () => {
    const ctx = context();
    const otherProject = await check({ ...ctx, config: { ...ctx.config, projectId: '999' } });
    expect(otherProject).toMatchObject({ ok: false, message: expect.stringContaining('403') });
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as { port: number };
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const unreachable = await check(context({ host: `http://127.0.0.1:${port}` }));
    expect(unreachable).toMatchObject({
      ok: false,
      message: expect.stringContaining('could not be reached'),
    });
    const requests = sim.requests.length;
    const missing = await check(context({ secrets: {} }));
    expect(missing).toMatchObject({ ok: false, message: expect.stringContaining('service account') });
    expect(sim.requests).toHaveLength(requests);
  });
});

describe('installation warnings', () => {
  const warn = (secrets: Record<string, string>, types: string[], auth: Auth = 'service_account') =>
    mixpanel.warnings?.({
      config: context({ auth }).config,
      secrets,
      subscribes: (type) => types.includes(type),
    });
  const account = () => {
    const { serviceAccountUsername = '', serviceAccountSecret = '' } = secretsFor('service_account');
    return { serviceAccountUsername, serviceAccountSecret };
  };

  it('warns that customer events cannot be delivered without the project token', () => {
    expect(warn(account(), ['order.created', 'customer.updated'])).toEqual([
      {
        code: 'profile_updates_need_project_token',
        path: 'body.secrets.projectToken',
        message: expect.stringContaining('customer.updated events become Mixpanel profile updates'),
      },
    ]);
    expect(warn({ ...account(), projectToken: 't' }, ['customer.created'])).toEqual([]);
    expect(warn(account(), ['order.created', 'refund.created'])).toEqual([]);
  });

  it('warns that nothing can be delivered without the credentials', () => {
    expect(warn({}, ['order.created'])).toMatchObject([
      { code: 'credentials_missing', path: 'body.secrets' },
    ]);
    expect(warn({}, ['order.created'], 'project_token')).toMatchObject([
      { code: 'credentials_missing', path: 'body.secrets.projectToken' },
    ]);
  });
});

describe('the simulator itself', () => {
  it('answers strict-mode failures in Mixpanel’s shape', async () => {
    const auth = `Basic ${Buffer.from(`${sim.options.projectToken}:`).toString('base64')}`;
    const good = {
      event: 'Signed Up',
      properties: { time: Date.now(), distinct_id: 'u1', $insert_id: 'abc-1' },
    };
    const bad = {
      event: 'Signed Up',
      properties: { time: Date.now(), distinct_id: 'null', $insert_id: 'a_b' },
    };
    const res = await http(`${sim.url}/import?strict=1`, {
      method: 'POST',
      headers: { authorization: auth, 'content-type': 'application/json' },
      body: JSON.stringify([good, bad]),
    });
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body)).toEqual({
      code: 400,
      error: 'some data points in the request failed validation',
      failed_records: [
        { index: 1, insert_id: 'a_b', field: 'properties.distinct_id', message: expect.any(String) },
      ],
      num_records_imported: 1,
      status: 'Bad Request',
    });
  });
});

describe('declaration', () => {
  it('takes only the types it maps and names the import URL of the region', () => {
    expect(
      ['order.created', 'order.refunded', 'refund.created', 'customer.created', 'customer.updated'].every(
        (t) => destination.accepts?.(t),
      ),
    ).toBe(true);
    expect(
      ['order.paid', 'order.updated', 'customer.deleted', 'custom.cart.abandoned'].some((t) =>
        destination.accepts?.(t),
      ),
    ).toBe(false);
    const eu = mixpanel.config.parse({ region: 'eu', projectId: '3129870' });
    expect(destination.urls?.(eu)[0]).toBe('https://api-eu.mixpanel.com/import?strict=1&project_id=3129870');
    expect(destination.batchSize).toBe(2000);
  });

  it('requires the project id with service-account auth and refuses unknown settings', () => {
    expect(mixpanel.config.safeParse({ region: 'us' }).success).toBe(false);
    expect(mixpanel.config.safeParse({ region: 'us', auth: 'project_token' }).success).toBe(true);
    expect(mixpanel.config.safeParse({ region: 'us', projectId: '1', token: 'x' }).success).toBe(false);
  });
});

describe('Retry-After', () => {
  it('reads seconds or an HTTP date, bounded, and defaults to 2 s', () => {
    expect(retryAfterMs('120')).toBe(120_000);
    const inOneMinute = new Date(Date.now() + 60_000).toUTCString();
    expect(retryAfterMs(inOneMinute)).toBeGreaterThan(55_000);
    expect(retryAfterMs(inOneMinute)).toBeLessThanOrEqual(60_000);
    expect(retryAfterMs('soon')).toBe(2000);
    expect(retryAfterMs(undefined)).toBe(2000);
    expect(retryAfterMs('86400')).toBe(3_600_000);
  });
});
