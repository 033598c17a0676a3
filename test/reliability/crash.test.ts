// Crash: signed Shopify orders/create webhooks arrive while the process that delivers them is
// killed with SIGKILL at random moments, at least ten times, and restarted each time. Every
// acknowledged webhook must become one stored event and reach the customer's endpoint; a kill may
// repeat a delivery (at least once), which is counted and printed, never lost.
//
// PostgreSQL: one `--role api` process takes the webhooks and is never touched; one `--role worker`
// process delivers them and is the one killed. PGlite: one process owns the embedded database, so
// the whole `--role all` process is killed, and the sender retries what got no answer, as Shopify
// does. An embedded hub takes 10-17 s to come back on this loaded 2-core machine (opening PGlite
// alone takes 3-4 s), against 5-6 s for a worker on PostgreSQL, so ten restarts cost PGlite two to
// three minutes by themselves: there the scenario sends 300 webhooks, not 2,000.
import { rmSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { sendShopifyWebhook, shopifyOrder } from '../../sim/shopify.ts';
import { createTestDatabase, onPostgres } from '../helpers/database.ts';
import { startReceiver } from '../helpers/receiver.ts';
import {
  adminCredentials,
  api,
  freePort,
  type HubEnv,
  type HubProcess,
  hubEnv,
  report,
  startHub,
  tenant,
} from './support.ts';

const CONCURRENCY = 16;
const MIN_KILLS = 10;
const SHOP = 'crash-test.myshopify.com';
const SECRET = 'shpss_crash_test_secret';
/** A sender gives a webhook up (and the test fails) after this long without a 200. */
const GIVE_UP_MS = 120_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const between = (lo: number, hi: number) => lo + Math.random() * (hi - lo);
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

async function crashScenario(total: number, topology: 'api+worker' | 'all'): Promise<void> {
  const t0 = Date.now();
  const db = await createTestDatabase();
  const receiver = await startReceiver();
  const hubs = new Set<HubProcess>();
  const track = (h: HubProcess) => {
    hubs.add(h);
    void h.exited.then(() => hubs.delete(h));
    return h;
  };
  const env: HubEnv = hubEnv({
    ...(db.url ? { DATABASE_URL: db.url } : {}),
    // A killed worker's claims are taken over when their lease ends: keep it short, yet well
    // beyond a send and its settling on a loaded machine, or a live worker's claims expire too.
    INTERCHANGE_DELIVERY_TIMEOUT: '2s',
    INTERCHANGE_DELIVERY_LEASE: '5s',
    INTERCHANGE_RETRY_SCHEDULE: '200ms,500ms,1s,1s,1s,1s,1s,1s,1s,1s',
  });
  try {
    // A worker says it is up ("worker started") at info level only.
    const workerEnv: HubEnv = { ...env, LOG_LEVEL: 'info' };
    const port = await freePort();
    const restart = async () =>
      track(topology === 'all' ? await startHub('all', env, port) : await startHub('worker', workerEnv));

    // The process that takes webhooks; with `all` it also delivers them and is the one killed.
    const front = track(await startHub(topology === 'all' ? 'all' : 'api', env, port));
    const admin = adminCredentials(front.output());
    let victim = topology === 'all' ? front : await restart();
    const base = front.url;

    const org = await tenant(base, admin, 'Crash Co');
    const shop = await api(base, org.token, 'POST', '/v1/installations', {
      connector: 'shopify',
      config: { shopDomain: SHOP },
      secrets: { clientSecret: SECRET },
    });
    expect(shop.status, JSON.stringify(shop.body)).toBe(201);
    const endpoint = await api(base, org.token, 'POST', '/v1/installations', {
      connector: 'webhook',
      config: { url: receiver.url },
      // A rate limit makes the deliveries take about 90 s whatever the machine's speed, so the
      // kills land while deliveries are outstanding (on a fast machine they would otherwise be done).
      subscription: { event_types: ['order.*'], rate_limit: Math.max(1, Math.round(total / 90)) },
    });
    expect(endpoint.status, JSON.stringify(endpoint.body)).toBe(201);
    const hookUrl = `${base}/hooks/${shop.body.id as string}`;

    // The sender, as Shopify: CONCURRENCY webhooks at a time, each sent again with the same event
    // id until it is answered 200 (a request cut off by a kill, or refused while the process is
    // down, got no answer). Only a 200 counts as acknowledged.
    let next = 0;
    let acked = 0;
    let unanswered = 0;
    let non200 = 0;
    const answers = new Map<string, number>();
    const sendOne = async (i: number) => {
      const since = Date.now();
      for (;;) {
        try {
          const res = await sendShopifyWebhook(hookUrl, {
            topic: 'orders/create',
            shopDomain: SHOP,
            secret: SECRET,
            eventId: `crash-order-${i}`,
            body: shopifyOrder({ id: 5_000_000_000_000n + BigInt(i), orderNumber: 1000 + i }),
          });
          if (res.status === 200) {
            const status = (JSON.parse(res.body) as { status: string }).status;
            answers.set(status, (answers.get(status) ?? 0) + 1);
            acked++;
            return;
          }
          non200++;
        } catch {
          unanswered++;
        }
        if (Date.now() - since > GIVE_UP_MS) throw new Error(`webhook ${i}: no 200 in ${GIVE_UP_MS} ms`);
        await sleep(between(100, 400));
      }
    };
    let sent = false;
    let sentAt = 0;
    const sending = Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < total) await sendOne(next++);
      }),
    ).finally(() => {
      sent = true;
      sentAt = Date.now();
    });
    sending.catch(() => {});

    // The killer: at random moments, SIGKILL the victim and start it again at once; at least
    // MIN_KILLS times, and on until every webhook is acknowledged.
    const distinct = () => new Set(receiver.received.map((r) => r.headers['webhook-id'])).size;
    let kills = 0;
    let killsWithBacklog = 0;
    const restarts: number[] = [];
    const killTimes: number[] = [];
    while (!sent || kills < MIN_KILLS) {
      await sleep(between(300, 2000));
      if (distinct() < acked || !sent) killsWithBacklog++;
      const down = Date.now();
      await victim.kill();
      killTimes.push(Date.now());
      kills++;
      victim = await restart();
      restarts.push(Date.now() - down);
    }
    await sending;
    const killedAt = Date.now();

    // Every event stored, read back through the API.
    const eventIds: string[] = [];
    const orderIds = new Set<unknown>();
    for (let cursor: string | undefined; ; ) {
      const page = await api(
        base,
        org.token,
        'GET',
        `/v1/events?type=order.*&limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
      );
      expect(page.status).toBe(200);
      for (const e of page.body.data as Array<{ id: string; data: { order_id: unknown } }>) {
        eventIds.push(e.id);
        orderIds.add(e.data.order_id);
      }
      if (!page.body.has_more) break;
      cursor = page.body.next_cursor as string;
    }

    // Deliveries drain (bounded), then the hub's own statistics show an empty queue.
    const drained = await receiver
      .until((r) => new Set(r.map((x) => x.headers['webhook-id'])).size >= eventIds.length, 120_000)
      .then(
        () => true,
        () => false,
      );
    const drainedAt = Date.now();
    let stats: Record<string, unknown> | undefined;
    for (const deadline = Date.now() + 30_000; ; ) {
      const res = await api(base, org.token, 'GET', '/v1/stats');
      stats = (res.body.data as Array<Record<string, unknown>>).find(
        (s) => s.destination_id === endpoint.body.id,
      );
      if (stats?.queue_depth === 0 || Date.now() > deadline) break;
      await sleep(200);
    }

    const received = receiver.received.map((r) => String(r.headers['webhook-id']));
    const receivedIds = new Set(received);
    const stored = new Set(eventIds);
    const missing = eventIds.filter((id) => !receivedIds.has(id));
    // A repeat is the at-least-once price of a kill when a kill falls between the two arrivals.
    const firstAt = new Map<string, number>();
    let unexplained = 0;
    for (const r of receiver.received) {
      const id = String(r.headers['webhook-id']);
      const first = firstAt.get(id);
      if (first === undefined) firstAt.set(id, r.at);
      else if (!killTimes.some((k) => k > first && k < r.at)) unexplained++;
    }
    const unexpected = [...receivedIds].filter((id) => !stored.has(id));
    report(
      topology === 'all'
        ? 'crash (PGlite: the whole --role all process killed)'
        : 'crash (PostgreSQL: api + worker, the worker killed)',
      {
        'webhooks sent': total,
        'acknowledged (200)': acked,
        '200 answers: accepted / duplicate': `${answers.get('accepted') ?? 0} / ${answers.get('duplicate') ?? 0}`,
        'requests unanswered / non-200': `${unanswered} / ${non200}`,
        'events stored': eventIds.length,
        'distinct order ids in events': orderIds.size,
        'distinct webhook-ids received': receivedIds.size,
        'requests received': received.length,
        'duplicates received': received.length - receivedIds.size,
        'duplicates with no kill in between': unexplained,
        missing: missing.length,
        kills,
        'kills with deliveries outstanding': killsWithBacklog,
        'restart after a kill: mean / max': `${seconds(restarts.reduce((a, b) => a + b, 0) / restarts.length)} / ${seconds(Math.max(...restarts))}`,
        'every webhook acknowledged after': seconds(sentAt - t0),
        'last kill after': seconds(killedAt - t0),
        'deliveries drained after': drained ? seconds(drainedAt - t0) : 'not in 120 s',
        'queue (stats)': JSON.stringify((stats as { counts?: unknown } | undefined)?.counts ?? null),
        duration: seconds(Date.now() - t0),
      },
    );

    expect(kills).toBeGreaterThanOrEqual(MIN_KILLS);
    expect(killsWithBacklog).toBeGreaterThanOrEqual(MIN_KILLS / 2);
    expect(acked).toBe(total);
    // The api process is never killed on PostgreSQL: a worker's crash costs inbound nothing.
    if (topology === 'api+worker') expect({ unanswered, non200 }).toEqual({ unanswered: 0, non200: 0 });
    expect(eventIds.length).toBe(acked);
    expect(orderIds.size).toBe(total);
    expect(missing).toEqual([]);
    expect(unexpected).toEqual([]);
    expect(receivedIds.size).toBe(eventIds.length);
    expect(stats).toMatchObject({ queue_depth: 0, counts: { succeeded: total, dead: 0 } });
  } finally {
    await Promise.all([...hubs].map((h) => h.kill()));
    await receiver.close();
    await db.drop();
    rmSync(env.INTERCHANGE_DATA_DIR as string, { recursive: true, force: true });
  }
}

describe.skipIf(!onPostgres)('crash on PostgreSQL (set DATABASE_URL)', () => {
  it('2,000 webhooks to an api process while its worker process is SIGKILLed 10+ times: none lost', () =>
    crashScenario(2000, 'api+worker'));
});

describe.skipIf(onPostgres)('crash on PGlite (without DATABASE_URL)', () => {
  it('300 webhooks (not 2,000: each PGlite restart takes 10-17 s here) while the --role all process is SIGKILLed 10+ times: none lost', () =>
    crashScenario(300, 'all'));
});
