// Delivery across processes, on PostgreSQL (an embedded PGlite belongs to one process): a worker
// killed with SIGKILL mid-delivery leaves a lease that ends, and the delivery completes in another
// worker; two workers sharing one endpoint keep to its rate limit together.
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../src/store/db.ts';
import { startTestApp, type TestApp } from './helpers/app.ts';
import { onPostgres } from './helpers/database.ts';
import { maxInWindow, type Receiver, startReceiver } from './helpers/receiver.ts';

const BIN = fileURLToPath(new URL('../bin/interchange.js', import.meta.url));
const ENV = {
  INTERCHANGE_EGRESS_ALLOW: '127.0.0.1/32',
  INTERCHANGE_RETRY_SCHEDULE: '100ms,100ms,100ms',
  INTERCHANGE_DELIVERY_TIMEOUT: '5s',
  INTERCHANGE_DELIVERY_LEASE: '6s',
};

/** A real `interchange start --role worker` process on the test app's database. */
function spawnWorker(t: TestApp): ChildProcess {
  return spawn(process.execPath, [BIN, 'start', '--role', 'worker'], {
    env: {
      ...process.env,
      ...ENV,
      DATABASE_URL: t.db.url,
      INTERCHANGE_SECRET_KEY: t.secretKey,
      LOG_LEVEL: 'warn',
    },
    stdio: 'ignore',
  });
}

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
    child = spawnWorker(t);
    const event = await t.call('POST', '/v1/events', {
      token: org.token,
      body: { type: 'custom.crash.test', data: { n: 1 } },
    });
    expect(event.statusCode, event.body).toBe(201);
    await receiver.until((r) => r.length === 1, 60_000);
    // Unanswered for WRITE_ONCE_WAIT_MS, the delivery is written leased to the child's sender.
    // (Killed before that, nothing of it is written: the child's router had not committed the log
    // past the event, and the batch is routed and sent again; src/delivery/router.test.ts.)
    const status = async () =>
      (
        await queryRows<{ status: string }>(
          t.app.store.db,
          sql`select status from deliveries where event_id = ${event.json().id}`,
        )
      )[0]?.status;
    const leased = Date.now() + 30_000;
    while ((await status()) !== 'delivering' && Date.now() < leased)
      await new Promise((r) => setTimeout(r, 20));
    expect(await status()).toBe('delivering');
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

  it('keeps an endpoint to its rate limit with two worker processes sending', async () => {
    // A second worker process beside this one's; both claim deliveries of the same endpoint.
    child = spawnWorker(t);
    t.app.startWorker();
    // The child is at work once it has joined the router's consumer group beside this process.
    const deadline = Date.now() + 60_000;
    for (;;) {
      const [members] = await queryRows<{ n: number }>(
        t.app.store.db,
        sql`select count(*)::int as n from consumer_members where group_id = 'router' and heartbeat_at > now() - interval '5 seconds'`,
      );
      if ((members?.n ?? 0) >= 2) break;
      if (Date.now() > deadline) throw new Error('the worker process did not start');
      await new Promise((r) => setTimeout(r, 100));
    }
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
      const sends = Array.from({ length: 80 }, (_, n) =>
        t.call('POST', '/v1/events', { token: org.token, body: { type: 'custom.burst', data: { n } } }),
      );
      await Promise.all(sends);
      await limited.until((r) => r.length === 80, 60_000);
      const at = limited.received.map((r) => r.at).sort((a, b) => a - b);
      // 20 per second shared by both workers (each on its own would make it 40): 80 requests take
      // at least 79 send slots of 50 ms, and no second sees more than the limit plus what timers
      // and a loaded machine's event loops bunch together.
      expect((at.at(-1) as number) - (at[0] as number)).toBeGreaterThanOrEqual(79 * 50 * 0.95);
      expect(maxInWindow(at, 1000)).toBeLessThanOrEqual(25);
      expect(new Set(limited.received.map((r) => r.headers['webhook-id'])).size).toBe(80);
      // Both worker processes took part. An attempt is recorded just after its answer arrives, so
      // the last ones may still be settling when the receiver has seen all 80.
      const attemptsBy = () =>
        queryRows<{ worker: string; n: number }>(
          t.app.store.db,
          sql`select a.worker, count(*)::int as n from delivery_attempts a
              join deliveries d on d.id = a.delivery_id where d.installation_id = ${ep.json().id}
              group by a.worker`,
        );
      let workers = await attemptsBy();
      for (const until = Date.now() + 10_000; Date.now() < until; workers = await attemptsBy()) {
        if (workers.reduce((sum, w) => sum + w.n, 0) >= 80) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(workers).toHaveLength(2);
      expect(workers.reduce((sum, w) => sum + w.n, 0)).toBe(80);
    } finally {
      await limited.close();
    }
  }, 120_000);
});
