// Delivery across processes, on PostgreSQL (an embedded PGlite belongs to one process): a worker
// killed with SIGKILL mid-delivery leaves a lease that ends, and the delivery completes in another
// worker; two workers sharing one endpoint keep to its rate limit together.
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from './helpers/app.ts';
import { onPostgres } from './helpers/database.ts';
import { type Receiver, startReceiver } from './helpers/receiver.ts';

const BIN = fileURLToPath(new URL('../bin/interchange.js', import.meta.url));
const ENV = {
  INTERCHANGE_EGRESS_ALLOW: '127.0.0.1/32',
  INTERCHANGE_RETRY_SCHEDULE: '100ms,100ms,100ms',
  INTERCHANGE_DELIVERY_TIMEOUT: '5s',
  INTERCHANGE_DELIVERY_LEASE: '6s',
};

describe.skipIf(!onPostgres)('delivery across worker processes (PostgreSQL only: set DATABASE_URL)', () => {
  let t: TestApp;
  let receiver: Receiver;
  let child: ChildProcess | undefined;

  beforeAll(async () => {
    // A short lease, so the test does not wait long for the killed worker's claim to end.
    t = await startTestApp({ ...ENV, INTERCHANGE_DELIVERY_TIMEOUT: '1s', INTERCHANGE_DELIVERY_LEASE: '3s' });
    receiver = await startReceiver();
  });
  afterAll(async () => {
    child?.kill('SIGKILL');
    await receiver?.close();
    await t?.close();
  });

  it('finishes a delivery whose worker was killed with SIGKILL mid-request, once its lease ends', async () => {
    const org = await t.organization('Acme');
    const ep = await t.call('POST', '/v1/installations', {
      token: org.token,
      body: { connector: 'webhook', config: { url: receiver.url } },
    });
    expect(ep.statusCode, ep.body).toBe(201);
    receiver.answer = (r) => (r.n === 1 ? 'hang' : 200);

    // The other worker: a real `interchange start --role worker` process on the same database.
    child = spawn(process.execPath, [BIN, 'start', '--role', 'worker'], {
      env: {
        ...process.env,
        ...ENV,
        DATABASE_URL: t.db.url,
        INTERCHANGE_SECRET_KEY: t.secretKey,
        LOG_LEVEL: 'warn',
      },
      stdio: 'ignore',
    });
    const event = await t.call('POST', '/v1/events', {
      token: org.token,
      body: { type: 'custom.crash.test', data: { n: 1 } },
    });
    expect(event.statusCode, event.body).toBe(201);
    await receiver.until((r) => r.length === 1, 60_000);
    child.kill('SIGKILL');
    await new Promise((resolve) => child?.once('exit', resolve));

    t.app.startWorker();
    await receiver.until((r) => r.length === 2, 60_000);
    expect(receiver.received.map((r) => r.headers['webhook-id'])).toEqual([event.json().id, event.json().id]);
    const list = async () =>
      (await t.call('GET', `/v1/deliveries?destination=${ep.json().id}`, { token: org.token })).json().data;
    const deadline = Date.now() + 10_000;
    while ((await list())[0]?.status !== 'succeeded' && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const [delivery] = await list();
    expect(delivery).toMatchObject({ status: 'succeeded', attempts: 2 });
  }, 120_000);

  it('keeps an endpoint to its rate limit with two workers sending', async () => {
    const second = await startTestApp(ENV, t);
    try {
      second.app.startWorker();
      t.app.startWorker();
      const org = await t.organization('Globex');
      const limited = await startReceiver();
      try {
        const ep = await t.call('POST', '/v1/installations', {
          token: org.token,
          body: {
            connector: 'webhook',
            config: { url: limited.url },
            subscription: { event_types: ['custom.*'], rate_limit: 20 },
          },
        });
        expect(ep.statusCode, ep.body).toBe(201);
        const sends = Array.from({ length: 60 }, (_, n) =>
          t.call('POST', '/v1/events', { token: org.token, body: { type: 'custom.burst', data: { n } } }),
        );
        await Promise.all(sends);
        await limited.until((r) => r.length === 60, 30_000);
        const at = limited.received.map((r) => r.at).sort((a, b) => a - b);
        // 20 per second: send slots are 50 ms apart across both workers, so any 21 consecutive
        // requests span a second, less what timers and the event loop delay an earlier one by.
        for (let i = 20; i < at.length; i++) {
          expect((at[i] as number) - (at[i - 20] as number)).toBeGreaterThanOrEqual(900);
        }
        expect(new Set(limited.received.map((r) => r.headers['webhook-id'])).size).toBe(60);
      } finally {
        await limited.close();
      }
    } finally {
      await second.close();
    }
  }, 120_000);
});
