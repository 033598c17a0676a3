// Reliability: the database goes away under load. `interchange start --role all` runs on a
// PostgreSQL cluster of the test's own, which is stopped mid-load — as in a crash (`pg_ctl stop -m
// immediate`), then as in an orderly shutdown (`-m fast`) — and started again on the same data dir,
// while signed Shopify webhooks stream in. While it is down, inbound answers 503
// database_unavailable with Retry-After (never 2xx for what was not stored, never another 5xx),
// the process stays up, /readyz says 503 and /healthz 200. Once it is back the hub recovers by
// itself: every acknowledged webhook is in GET /v1/events, re-sent 503s are stored once, and the
// worker's loops (router consumer, sender) deliver every event to a webhook endpoint.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { shopifyOrder, signShopifyWebhook } from '../../sim/shopify.ts';
import { type Receiver, startReceiver } from '../helpers/receiver.ts';
import { createCluster, findPgBinaries, type PgCluster } from './pg-cluster.ts';
import {
  adminCredentials,
  api,
  freePort,
  type HubProcess,
  hubEnv,
  report,
  startHub,
  tenant,
} from './support.ts';

const SHOP = 'outage-test.myshopify.com';
const SECRET = 'shpss_outage_secret';
const WORKERS = 8;
/** Pause of each load worker between webhooks: ~8 × 1000/(latency + 5) a second. */
const PACE_MS = 5;
const OUTAGE_MS = 5000;
const ORDER_BASE = 9_007_199_254_000_000n;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, predicate: () => boolean | Promise<boolean>, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await sleep(50);
  }
}

interface Outcome {
  n: number;
  /** A number, or `error: …` when no HTTP answer came (refused, reset, timed out). */
  status: number | string;
  code: string | undefined;
  retryAfter: string | null;
  sentAt: number;
  answeredAt: number;
  body: string;
}

const bin = findPgBinaries();
let cluster: PgCluster | undefined;
let hub: HubProcess | undefined;
let receiver: Receiver | undefined;
let hookUrl = '';
let token = '';
let next = 0;
/** Every webhook acknowledged with 200 so far (at once, or when re-sent after a 503), by number. */
const acknowledged = new Set<number>();

/**
 * One orders/create webhook, signed as Shopify signs (sim/shopify.ts: what sendShopifyWebhook
 * sends, with its 5 s give-up), read here with its headers to see Retry-After. The same `n` is the
 * same event id and body, so a re-send is Shopify's retry of it.
 */
async function send(n: number): Promise<Outcome> {
  const signed = signShopifyWebhook({
    topic: 'orders/create',
    shopDomain: SHOP,
    secret: SECRET,
    eventId: `outage-${n}`,
    body: shopifyOrder({ id: ORDER_BASE + BigInt(n), orderNumber: 1000 + n }),
  });
  const sentAt = performance.now();
  try {
    const res = await fetch(hookUrl, {
      method: 'POST',
      headers: signed.headers,
      body: signed.body,
      redirect: 'manual',
      signal: AbortSignal.timeout(5000),
    });
    const body = await res.text();
    let code: string | undefined;
    try {
      code = (JSON.parse(body) as { error?: { code?: string } }).error?.code;
    } catch {}
    return {
      n,
      status: res.status,
      code,
      retryAfter: res.headers.get('retry-after'),
      sentAt,
      answeredAt: performance.now(),
      body,
    };
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code;
    return {
      n,
      status: `error: ${(err as Error).name}${cause ? ` ${cause}` : ''}`,
      code: undefined,
      retryAfter: null,
      sentAt,
      answeredAt: performance.now(),
      body: '',
    };
  }
}

function startLoad() {
  let stopped = false;
  const outcomes: Outcome[] = [];
  const loops = Array.from({ length: WORKERS }, async () => {
    while (!stopped) {
      outcomes.push(await send(next++));
      await sleep(PACE_MS);
    }
  });
  return {
    outcomes,
    async stop() {
      stopped = true;
      await Promise.all(loops);
    },
  };
}

async function probe(path: string): Promise<{ status: number | string; code: string | undefined }> {
  try {
    const res = await fetch(`${hub?.url}${path}`, { signal: AbortSignal.timeout(5000) });
    const body = (await res.json().catch(() => ({}))) as { error?: { code?: string } };
    return { status: res.status, code: body.error?.code };
  } catch (err) {
    return { status: `error: ${(err as Error).message}`, code: undefined };
  }
}

/** Every order.created in the events API, by subject, with how often each is there. */
async function storedSubjects(): Promise<Map<string, number>> {
  const seen = new Map<string, number>();
  let cursor: string | null = null;
  do {
    const page = await api(
      hub?.url ?? '',
      token,
      'GET',
      `/v1/events?type=order.created&limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
    );
    expect(page.status, JSON.stringify(page.body)).toBe(200);
    for (const e of page.body.data as { subject: string }[])
      seen.set(e.subject, (seen.get(e.subject) ?? 0) + 1);
    cursor = page.body.next_cursor as string | null;
  } while (cursor);
  return seen;
}

/** `p50 / p99 / max` of the answer times, in ms. */
function spread(list: Outcome[]): string {
  const ms = list.map((o) => o.answeredAt - o.sentAt).sort((a, b) => a - b);
  const at = (q: number) => Math.round(ms[Math.min(ms.length - 1, Math.floor(q * ms.length))] ?? 0);
  return ms.length === 0 ? '-' : `${at(0.5)} / ${at(0.99)} / ${at(1)} ms`;
}

const subjectOf = (n: number) => `orders/${ORDER_BASE + BigInt(n)}`;

beforeAll(async () => {
  if ('missing' in bin) {
    // Said aloud as well: reporters do not all show a skipped test's note.
    process.stdout.write(`\n[reliability] database outage: SKIPPED, ${bin.missing}\n`);
    return;
  }
  cluster = await createCluster(bin, await freePort());
  receiver = await startReceiver();
  hub = await startHub(
    'all',
    hubEnv({
      DATABASE_URL: cluster.url,
      // Deliveries whose settle was lost to the outage come back after their lease.
      INTERCHANGE_DELIVERY_TIMEOUT: '5s',
      INTERCHANGE_DELIVERY_LEASE: '10s',
    }),
  );
  const org = await tenant(hub.url, adminCredentials(hub.output()), 'Outage');
  token = org.token;
  const shop = await api(hub.url, token, 'POST', '/v1/installations', {
    connector: 'shopify',
    config: { shopDomain: SHOP },
    secrets: { clientSecret: SECRET },
  });
  expect(shop.status, JSON.stringify(shop.body)).toBe(201);
  hookUrl = `${hub.url}/hooks/${shop.body.id}`;
  const endpoint = await api(hub.url, token, 'POST', '/v1/installations', {
    connector: 'webhook',
    config: { url: receiver.url },
    subscription: { event_types: ['order.*'] },
  });
  expect(endpoint.status, JSON.stringify(endpoint.body)).toBe(201);
});

afterAll(async () => {
  await hub?.kill();
  await receiver?.close();
  await cluster?.destroy();
});

describe('database outage under load', () => {
  for (const mode of ['immediate', 'fast'] as const) {
    it(`pg_ctl stop -m ${mode}: 503 while down, recovers by itself, nothing acknowledged is lost`, async (ctx) => {
      if ('missing' in bin) ctx.skip(`PostgreSQL server programs are missing: ${bin.missing}`);
      if (!cluster || !hub || !receiver) throw new Error('setup did not finish');
      const fail = (what: string) => `${what}\n--- hub output (tail) ---\n${hub?.output().slice(-4000)}`;

      expect(hub.proc.exitCode, fail('the hub exited in an earlier scenario')).toBeNull();

      const readiness: { status: number | string; code: string | undefined }[] = [];
      const liveness: (number | string)[] = [];
      let [stopAt, upAt, firstOk, readyAgain] = [0, 0, 0, 0];
      const logFrom = hub.output().length;
      const load = startLoad();
      try {
        await until(
          '100 webhooks acknowledged before the outage',
          () => load.outcomes.filter((o) => o.status === 200).length >= 100,
          20_000,
        );

        // The outage: from the stop command to the restarted server accepting connections.
        stopAt = performance.now();
        await cluster.stop(mode);
        while (performance.now() - stopAt < OUTAGE_MS) {
          readiness.push(await probe('/readyz'));
          liveness.push((await probe('/healthz')).status);
          await sleep(200);
        }
        expect(hub.proc.exitCode, fail('the hub exited during the outage')).toBeNull();
        await cluster.start();
        upAt = performance.now();

        // Recovery, with no restart of the hub: a webhook sent after the restart is acknowledged.
        await until(
          'a webhook sent after the restart is acknowledged',
          () => load.outcomes.some((o) => o.sentAt >= upAt && o.status === 200),
          30_000,
        ).catch((err) => {
          throw new Error(fail(String(err)));
        });
        firstOk = Math.min(
          ...load.outcomes.filter((o) => o.sentAt >= upAt && o.status === 200).map((o) => o.answeredAt),
        );
        await until('/readyz answers 200 again', async () => (await probe('/readyz')).status === 200, 10_000);
        readyAgain = performance.now();
        await sleep(1000);
      } finally {
        await load.stop();
      }
      expect(hub.proc.exitCode, fail('the hub exited')).toBeNull();

      const logged = (msg: string) => (hub?.output() ?? '').slice(logFrom).split(`"msg":"${msg}`).length - 1;
      const outcomes = load.outcomes;
      const ok = outcomes.filter((o) => o.status === 200);
      const unavailable = outcomes.filter((o) => o.status === 503);
      const other = outcomes.filter((o) => o.status !== 200 && o.status !== 503);
      const late503 = unavailable.filter((o) => o.sentAt > firstOk + 2000);

      // Webhooks that got 503 are sent again, as Shopify retries: each is then acknowledged.
      let resentAccepted = 0;
      let resentDuplicate = 0;
      const resendOther: Outcome[] = [];
      for (let i = 0; i < unavailable.length; i += WORKERS) {
        await Promise.all(
          unavailable.slice(i, i + WORKERS).map(async ({ n }) => {
            const again = await send(n);
            if (again.status !== 200) return resendOther.push(again);
            acknowledged.add(n);
            const status = (JSON.parse(again.body) as { status: string }).status;
            if (status === 'duplicate') resentDuplicate++;
            else resentAccepted++;
          }),
        );
      }
      for (const o of ok) acknowledged.add(o.n);

      const stored = await storedSubjects();
      const missing = [...acknowledged].filter((n) => !stored.has(subjectOf(n)));
      const twice = [...stored.entries()].filter(([, count]) => count > 1);

      // The worker's loops resumed: every event reaches the webhook endpoint (at least once).
      const wanted = new Set([...acknowledged].map(subjectOf));
      const delivered = () => new Set(receiver?.received.map((r) => r.json.subject as string));
      const undelivered = () => [...wanted].filter((s) => !delivered().has(s));
      await until('every stored event is delivered', () => undelivered().length === 0, 90_000).catch(
        () => {},
      );
      const deliveries = receiver.received.filter((r) => wanted.has(r.json.subject as string));

      report(`database outage: pg_ctl stop -m ${mode}, under load (${WORKERS} senders)`, {
        'webhooks sent': outcomes.length,
        '200 acknowledged': ok.length,
        '503 database_unavailable': unavailable.length,
        'other statuses (must be 0)': other.length,
        '200 answer time p50 / p99 / max': spread(ok),
        '503 answer time p50 / p99 / max': spread(unavailable),
        'outage length (stop → accepting)': `${Math.round(upAt - stopAt)} ms`,
        'time to recover (first 200)': `${Math.round(firstOk - upAt)} ms after the restart`,
        '/readyz 200 again': `${Math.round(readyAgain - upAt)} ms after the restart`,
        '/readyz 503 during the outage': `${readiness.filter((r) => r.status === 503).length}/${readiness.length}`,
        '/healthz 200 during the outage': `${liveness.filter((s) => s === 200).length}/${liveness.length}`,
        'ingest batches rolled back': logged('ingest batch not committed'),
        'consumer / sender loop errors survived': `${logged('consumer iteration failed')} / ${logged('delivery loop failed')}`,
        '503s re-sent: stored now / already': `${resentAccepted} / ${resentDuplicate}`,
        'acknowledged in total': acknowledged.size,
        'missing from /v1/events (must be 0)': missing.length,
        'stored more than once (must be 0)': twice.length,
        'delivered to the endpoint': `${wanted.size - undelivered().length}/${wanted.size} (${deliveries.length} requests)`,
      });

      expect(
        other.map((o) => `${o.status} ${o.body.slice(0, 200)}`),
        fail('statuses other than 200 and 503'),
      ).toEqual([]);
      expect(unavailable.length, 'the outage was not seen by any webhook').toBeGreaterThan(0);
      for (const o of unavailable) {
        expect(o.code, o.body).toBe('database_unavailable');
        expect(o.retryAfter, 'Retry-After on a 503').toMatch(/^\d+$/);
      }
      expect(late503.length, '503s long after the hub had recovered').toBe(0);
      expect(readiness.length).toBeGreaterThan(5);
      expect(readiness.filter((r) => r.status !== 503 || r.code !== 'database_unavailable')).toEqual([]);
      expect(liveness.filter((s) => s !== 200)).toEqual([]);
      expect(
        resendOther.map((o) => `${o.status} ${o.body.slice(0, 200)}`),
        're-sends not acknowledged',
      ).toEqual([]);
      expect(missing.map(subjectOf), 'acknowledged but not in /v1/events').toEqual([]);
      expect(twice, 'stored more than once').toEqual([]);
      expect(stored.size).toBe(acknowledged.size);
      expect(undelivered(), 'stored but never delivered').toEqual([]);
      expect(hub.proc.exitCode, fail('the hub exited')).toBeNull();
    });
  }
});
