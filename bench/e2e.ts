// bench/e2e: signed Shopify orders/create webhooks in at fixed offered rates, each one's
// order.created delivered to a local webhook endpoint, on PGlite and PostgreSQL. Every webhook is
// matched to its delivery (the hub answers the event ids; a delivery's webhook-id is the event id):
// p50/p99 from the webhook sent to its delivery received, the rate achieved, the queue left when
// sending stopped, missing and duplicate deliveries (any makes the run fail). No baseline: nothing
// else does this whole path. Run: npm run bench:e2e [-- --rates 100,500,1000 --seconds 10
// --storage pglite,postgres --shops 8 --max-in-flight 128 --write]; PostgreSQL is the server in
// DATABASE_URL (default local), on which a scratch database is created and dropped.
import { randomUUID } from 'node:crypto';
import { shopifyJson, shopifyOrder, signShopifyWebhook } from '../sim/shopify.ts';
import { type Hub, now, type Receiver, type Storage, startHub, startReceiver, storageName } from './hub.ts';
import { api, loadAverage, machine, percentile, progressBars, replaceMarked, table } from './lib.ts';
import { type Answer, paced } from './paced.ts';

const args = process.argv.slice(2);
const option = (name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const rates = (option('--rates') ?? '100,500,1000').split(',').map(Number);
const seconds = Number(option('--seconds')) || 10;
const storages = (option('--storage') ?? 'pglite,postgres').split(',') as Storage[];
const shops = Number(option('--shops')) || 8;
const maxInFlight = Number(option('--max-in-flight')) || 128;
const patienceMs = Number(option('--patience')) || 20_000;
const SECRET = 'shpss_bench_secret';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const f0 = (n: number) => (Number.isFinite(n) ? n.toFixed(0) : '—');

// A documented-shape order (about 3.5 KB); each webhook gets its own order id of the same length.
const TEMPLATE_ID = '820982911946154508';
const TEMPLATE = shopifyJson(shopifyOrder({ id: BigInt(TEMPLATE_ID) }));
const orderBody = (n: number) => TEMPLATE.replaceAll(TEMPLATE_ID, String(820982900000000000n + BigInt(n)));

interface Level {
  rate: number;
  offered: number;
  skipped: number;
  refused: number;
  firstRefusal?: string;
  accepted: number;
  acceptRate: number;
  ingestP50: number;
  ingestP99: number;
  deliveredWhileSending: number;
  queueAtEnd: number;
  queueMax: number;
  drainSeconds: number;
  delivered: number;
  duplicates: number;
  missing: number;
  p50: number;
  p99: number;
  lagP99: number;
  memory: string;
  verified: number;
  bad: number;
}

/** Shopify installations (one shop each) and a webhook endpoint for order.* at the receiver. */
async function setUp(hub: Hub, receiver: Receiver) {
  const installations: { id: string; shop: string }[] = [];
  for (let s = 0; s < shops; s++) {
    const shop = `bench-shop-${s}.myshopify.com`;
    const created = await api(`${hub.base}/v1/installations`, {
      method: 'POST',
      token: hub.token,
      body: JSON.stringify({
        connector: 'shopify',
        config: { shopDomain: shop },
        secrets: { clientSecret: SECRET },
      }),
    });
    installations.push({ id: created.id, shop });
  }
  const endpoint = await api(`${hub.base}/v1/installations`, {
    method: 'POST',
    token: hub.token,
    body: JSON.stringify({
      connector: 'webhook',
      config: { url: receiver.url },
      subscription: { event_types: ['order.*'] },
    }),
  });
  return { installations, signingSecret: endpoint.revealed_secrets.signingSecret as string };
}

let serial = 0;
/** Webhook i of a level: a new order and a new event id, signed as Shopify signs, shops in turn. */
const webhook = (installations: { id: string; shop: string }[]) => (i: number) => {
  const target = installations[i % installations.length] as { id: string; shop: string };
  const signed = signShopifyWebhook({
    topic: 'orders/create',
    shopDomain: target.shop,
    body: orderBody(serial++),
    secret: SECRET,
    eventId: randomUUID(),
  });
  return { method: 'POST' as const, path: `/hooks/${target.id}`, headers: signed.headers, body: signed.body };
};

/** Waits until `expected` deliveries arrived, or none came for `patienceMs`, or the hub exited. */
async function drain(hub: Hub, receiver: Receiver, expected: number, tick: (n: number) => void) {
  let seen = -1;
  let since = Date.now();
  for (;;) {
    const n = await receiver.count();
    tick(n);
    if (n >= expected || hub.child.proc.exitCode !== null) return;
    if (n !== seen) [seen, since] = [n, Date.now()];
    else if (Date.now() - since > patienceMs) return;
    await sleep(200);
  }
}

async function runLevel(
  hub: Hub,
  receiver: Receiver,
  secret: string,
  installations: { id: string; shop: string }[],
  rate: number,
  label: string,
): Promise<Level> {
  await receiver.reset(secret);
  const total = Math.round(rate * seconds);
  const bars = progressBars(total, [`${label} sent`, `${label} delivered`]);
  const sentAt = new Map<string, number>();
  let refusedStatus = 0;
  let accepted = 0;
  const onAnswer = (a: Answer) => {
    if (a.status !== 200) return;
    const body = JSON.parse(a.body) as { status: string; event_ids: string[] };
    if (body.status !== 'accepted') refusedStatus++;
    for (const id of body.event_ids) sentAt.set(id, a.sentAt);
    accepted++;
  };
  // The queue while sending: events accepted so far minus deliveries received so far, each second.
  const queue: number[] = [];
  let sending = true;
  const sampler = (async () => {
    while (sending) {
      await sleep(1000);
      const n = await receiver.count();
      queue.push(sentAt.size - n);
      bars.update(`${label} delivered`, n);
    }
  })();
  const t0 = now();
  const result = await paced({
    origin: hub.base,
    rate,
    seconds,
    maxInFlight,
    keepBodies: true,
    onAnswer,
    request: webhook(installations),
    tick: (due) => bars.update(`${label} sent`, due),
  });
  const tEnd = now();
  const atEnd = await receiver.count();
  sending = false;
  await drain(hub, receiver, sentAt.size, (n) => bars.update(`${label} delivered`, n));
  const tDrained = now();
  await sampler;
  bars.stop();
  const got = await receiver.arrivals();

  const first = new Map<string, number>();
  let duplicates = 0;
  for (const [id, at] of got.arrivals) {
    if (!sentAt.has(id)) continue;
    if (first.has(id)) duplicates++;
    else first.set(id, at);
  }
  const latencies = [...first].map(([id, at]) => at - (sentAt.get(id) as number)).sort((a, b) => a - b);
  const deliveredWhileSending = got.arrivals.filter(([, at]) => at <= tEnd).length;
  return {
    rate,
    offered: result.offered,
    skipped: result.skipped,
    refused: result.failed + refusedStatus,
    firstRefusal: result.firstFailure ?? (refusedStatus ? 'answered 200 but not "accepted"' : undefined),
    accepted,
    acceptRate: result.rate,
    ingestP50: result.p50,
    ingestP99: result.p99,
    deliveredWhileSending: (deliveredWhileSending * 1000) / (tEnd - t0),
    queueAtEnd: sentAt.size - atEnd,
    queueMax: Math.max(sentAt.size - atEnd, ...queue),
    drainSeconds: (tDrained - tEnd) / 1000,
    delivered: first.size,
    duplicates,
    missing: sentAt.size - first.size,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    lagP99: result.lagP99,
    memory: await hub.memory(),
    verified: got.verified,
    bad: got.badSignatures,
  };
}

async function main() {
  const load = loadAverage();
  const started = Date.now();
  const receiver = await startReceiver();
  const rows: (string | number)[][] = [];
  const notes: string[] = [];
  const problems: string[] = [];
  try {
    for (const storage of storages) {
      const name = storageName(storage);
      const hub = await startHub(storage);
      try {
        const { installations, signingSecret } = await setUp(hub, receiver);
        // Warm-up: 2 s at 20/s, all delivered, before anything is measured.
        await receiver.reset(signingSecret);
        const warm = await paced({
          origin: hub.base,
          rate: 20,
          seconds: 2,
          maxInFlight,
          request: webhook(installations),
        });
        await drain(hub, receiver, warm.ok, () => {});
        const memoryBefore = await hub.memory();
        for (const rate of rates) {
          const l = await runLevel(hub, receiver, signingSecret, installations, rate, `${name} ${rate}/s`);
          process.stderr.write(
            `${name} ${rate}/s: accepted ${f0(l.acceptRate)}/s, delivered ${l.delivered}/${l.accepted}, p50 ${f0(l.p50)} ms, p99 ${f0(l.p99)} ms, queue at end ${l.queueAtEnd}\n`,
          );
          const sustained = l.skipped === 0 && l.refused === 0 && l.acceptRate >= 0.95 * rate;
          rows.push([
            `Interchange on ${name}`,
            rate,
            `${f0(l.acceptRate)}${sustained ? '' : ' (not sustained)'}`,
            f0(l.deliveredWhileSending),
            f0(l.p50),
            f0(l.p99),
            `${l.queueAtEnd} (+${f0(l.queueAtEnd / seconds)}/s)`,
            l.drainSeconds.toFixed(1),
            `${l.missing} / ${l.duplicates}`,
            l.memory,
          ]);
          notes.push(
            `- ${name} at ${rate}/s: ${l.offered} webhooks due, ${l.offered - l.skipped} sent${l.skipped ? ` (${l.skipped} skipped: ${maxInFlight} were unanswered when they were due)` : ''}, ${l.accepted} accepted${l.refused ? `, ${l.refused} refused (e.g. ${l.firstRefusal})` : ''}; the hub answered them in p50 ${f0(l.ingestP50)} ms, p99 ${f0(l.ingestP99)} ms; ${l.delivered} delivered${l.queueAtEnd ? `, ${l.queueAtEnd} still queued when sending stopped (at most ${l.queueMax} by the second), drained in ${l.drainSeconds.toFixed(1)} s` : ''}; generator p99 lag ${l.lagP99.toFixed(1)} ms.`,
          );
          if (l.missing) problems.push(`${name} at ${rate}/s: ${l.missing} accepted events never delivered`);
          if (l.duplicates)
            problems.push(`${name} at ${rate}/s: ${l.duplicates} events delivered more than once`);
          if (l.bad) problems.push(`${name} at ${rate}/s: ${l.bad} signatures did not verify`);
          if (!l.verified) problems.push(`${name} at ${rate}/s: no signature was verified`);
        }
        notes.push(`- ${name}: the hub process's memory after the warm-up was ${memoryBefore}.`);
        const logged = hub.logged();
        if (logged.length)
          notes.push(
            `- ${name}: the hub logged ${logged.length} warnings or errors, the first: \`${logged[0]?.slice(0, 300)}\``,
          );
      } finally {
        await hub.stop();
      }
    }
  } finally {
    await receiver.child.stop();
  }

  const header = `End to end: signed Shopify orders/create in, order.created delivered to a local webhook endpoint; ${seconds} s per rate; ${machine()}; 1-min load average before the run ${load.toFixed(2)}; ${((Date.now() - started) / 1000).toFixed(0)} s in all`;
  const shown = args.filter((a) => a !== '--write');
  const command = ['npm run bench:e2e', ...(shown.length ? ['--', ...shown] : [])].join(' ');
  const out = `${header}\n\n${table(
    [
      'hub',
      'offered /s',
      'accepted /s',
      'delivered /s while sending',
      'p50 ms',
      'p99 ms',
      'queue when sending stopped',
      'drain s',
      'missing / duplicates',
      'hub memory after',
    ],
    rows,
  )}\n\n${[
    `- \`${command}\`. p50/p99: from a webhook sent to its delivery received, over every delivered event; where the queue grew, they include the wait in it. ${shops} shops (installations) in turn, each webhook a new order and event id; at most ${maxInFlight} webhooks in flight. No baseline: nothing simpler does this whole path.`,
    ...notes,
    ...(problems.length ? [`- **Failed:** ${problems.join('; ')}.`] : []),
  ].join('\n')}\n`;
  console.log(`\n${out}`);
  if (args.includes('--write')) {
    replaceMarked('BENCHMARKS.md', 'bench:e2e', out);
    console.log('updated BENCHMARKS.md');
  }
  if (problems.length) {
    console.error(`\nFAILED:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    process.exitCode = 1;
  }
  process.exit(process.exitCode ?? 0);
}

await main();
