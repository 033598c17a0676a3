// bench/delivery: signed webhook deliveries from an `interchange start` process to a local receiver,
// next to a plain undici loop sending the same requests to the same receiver in the same run and,
// on PostgreSQL, the floor: the same loop fed by the least durable queue (`floorLoop`). Prints
// deliveries/s, p50/p99 from event accepted to delivery received, and fails unless every event
// arrived exactly once. Run: npm run bench:delivery [-- --events 5000 --enqueue-concurrency 32
// --backlog N --in-flight 64 --postgres --cpu-prof DIR --write]; PGlite unless --postgres or
// DATABASE_URL (the server, on which a scratch database is created and dropped). --events defaults
// to 2000 on PGlite, 5000 on PostgreSQL; --backlog to --events on PGlite, four times it on
// PostgreSQL. --cpu-prof: the hub's V8 profiles.
import { createHmac, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage } from 'node:http';
import { cpus, loadavg, totalmem } from 'node:os';
import pg from 'pg';
import { Webhook } from 'standardwebhooks';
import { Agent, request } from 'undici';
import { v7 as uuidv7 } from 'uuid';
import { benchToken, DEFAULT_SERVER, HUB_NODE_FLAGS, hubStorage, now } from './hub.ts';
import {
  api,
  backendsCpuDiff,
  backendsCpuMs,
  type Child,
  cpuMsOf,
  freePort,
  memoryCell,
  percentile,
  progressBars,
  replaceMarked,
  scratchPostgres,
  startChild,
  table,
  waitFor,
} from './lib.ts';

const args = process.argv.slice(2);
const option = (name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One arrival at the receiver: webhook-id, when (ms, `now()`), body bytes. */
type Arrival = [id: string, at: number, bytes: number];
interface Arrivals {
  arrivals: Arrival[];
  verified: number;
  badSignatures: number;
}

/**
 * The receiver, in a process of its own (`--receiver`) so the load generators never delay its
 * clock: 204 at once, records each arrival, verifies one signature in `sampleEvery` with the
 * official Standard Webhooks library (all of them would cost the receiver more than the sender).
 */
async function runReceiver(port: number) {
  let arrivals: Arrival[] = [];
  let webhook: Webhook | undefined;
  let sampleEvery = 16;
  let verified = 0;
  let badSignatures = 0;
  const read = (req: IncomingMessage) =>
    new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => resolve(Buffer.concat(chunks)));
      req.on('error', reject);
    });
  const server = createServer(async (req, res) => {
    const body = await read(req);
    if (req.url === '/hook') {
      arrivals.push([String(req.headers['webhook-id']), now(), body.length]);
      res.writeHead(204).end();
      if (webhook && arrivals.length % sampleEvery === 1) {
        try {
          webhook.verify(body, req.headers as Record<string, string>);
          verified++;
        } catch {
          badSignatures++;
        }
      }
    } else if (req.url === '/reset') {
      const o = JSON.parse(body.toString()) as { secret: string; sampleEvery: number };
      webhook = new Webhook(o.secret);
      sampleEvery = o.sampleEvery;
      arrivals = [];
      verified = 0;
      badSignatures = 0;
      res.writeHead(204).end();
    } else if (req.url === '/count') {
      res.end(String(arrivals.length));
    } else if (req.url === '/arrivals') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ arrivals, verified, badSignatures } satisfies Arrivals));
    } else {
      res.writeHead(404).end();
    }
  });
  server.listen(port, '127.0.0.1');
  process.on('SIGTERM', () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
}

/** A custom event's data, about 0.9 KB once enveloped: a cart with a few lines. */
const DATA = {
  cart_id: 'cart_8f2c1a',
  customer: { id: 'cus_4711', email: 'jane.doe@example.com', name: 'Jane Doe', locale: 'de-DE' },
  currency: 'EUR',
  items: Array.from({ length: 6 }, (_, i) => ({
    sku: `SKU-${1000 + i}`,
    name: `Organic cotton T-shirt, size ${['S', 'M', 'L'][i % 3]}`,
    quantity: 1 + (i % 3),
    unit_price: '19.90',
  })),
  total: '238.80',
  updated_at: '2026-01-15T10:00:00.000Z',
};
const TYPE = 'custom.cart.updated';

/** The body the hub's webhook connector sends (Standard Webhooks' shape with the event's ids). */
const payload = (id: string, subject: string) =>
  JSON.stringify({ id, type: TYPE, timestamp: new Date().toISOString(), subject, user_id: null, data: DATA });

interface Analysis {
  distinct: number;
  duplicates: number;
  missing: number;
  unexpected: number;
  rate: number;
  first: number;
  last: number;
  p50: number;
  p99: number;
  bytes: number;
}

/** Exactly-once check, arrival rate (first to last distinct arrival) and latency from `sent`. */
function analyse(got: Arrival[], sent: Map<string, number>): Analysis {
  const first = new Map<string, number>();
  let duplicates = 0;
  let unexpected = 0;
  let bytes = 0;
  for (const [id, at, size] of got) {
    if (!sent.has(id)) unexpected++;
    else if (first.has(id)) duplicates++;
    else {
      first.set(id, at);
      bytes += size;
    }
  }
  const times = [...first.values()].sort((a, b) => a - b);
  const start = times[0] ?? 0;
  const end = times.at(-1) ?? 0;
  const latencies = [...sent]
    .flatMap(([id, at]) => (first.has(id) ? [(first.get(id) as number) - at] : []))
    .sort((a, b) => a - b);
  return {
    distinct: first.size,
    duplicates,
    missing: sent.size - first.size,
    unexpected,
    rate: end > start ? ((times.length - 1) * 1000) / (end - start) : Number.NaN,
    first: start,
    last: end,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    bytes: first.size ? bytes / first.size : 0,
  };
}

async function startReceiver() {
  const port = await freePort();
  const child = startChild(['--import', 'tsx', 'bench/delivery.ts', '--receiver'], {
    ...process.env,
    PORT: String(port),
  });
  const base = `http://127.0.0.1:${port}`;
  await waitFor(`${base}/count`, child);
  return {
    child,
    url: `${base}/hook`,
    async reset(secret: string, sampleEvery: number) {
      await fetch(`${base}/reset`, { method: 'POST', body: JSON.stringify({ secret, sampleEvery }) });
    },
    count: async () => Number(await (await fetch(`${base}/count`)).text()),
    arrivals: async () => (await (await fetch(`${base}/arrivals`)).json()) as Arrivals,
  };
}
type Receiver = Awaited<ReturnType<typeof startReceiver>>;

/**
 * Requests the plain loop sends before each measurement. The first ten thousand or so go slower
 * while V8 compiles the loop's and the receiver's paths (measured after only 500, the loop made
 * half the rate it made after the hub's run): the baseline is measured warm.
 */
const PLAIN_WARM_UP = 15_000;

/** One signed POST as the hub's webhook connector makes it; true on 2xx. */
async function sendSigned(agent: Agent, url: string, key: Buffer, id: string, body: string) {
  const timestamp = Math.floor(Date.now() / 1000);
  const signature = createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64');
  const res = await request(url, {
    method: 'POST',
    dispatcher: agent,
    headers: {
      'content-type': 'application/json',
      'user-agent': 'Interchange-Webhooks/1',
      'webhook-id': id,
      'webhook-timestamp': String(timestamp),
      'webhook-signature': `v1,${signature}`,
    },
    body,
  });
  await res.body.text();
  return res.statusCode >= 200 && res.statusCode < 300;
}

const signingKey = (secret: string) => Buffer.from(secret.slice('whsec_'.length), 'base64');

/** The baseline: `inFlight` loops, each signing with node:crypto and POSTing through one keep-alive Agent. */
async function plainLoop(
  url: string,
  secret: string,
  count: number,
  inFlight: number,
  tick: (n: number) => void,
) {
  const key = signingKey(secret);
  const agent = new Agent({ keepAliveTimeout: 30_000 });
  const sent = new Map<string, number>();
  let next = 0;
  let failures = 0;
  const loop = async () => {
    while (next < count) {
      const i = next++;
      const id = uuidv7();
      sent.set(id, now());
      if (!(await sendSigned(agent, url, key, id, payload(id, `carts/c-${i}`)))) failures++;
      tick(sent.size);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, loop));
  await agent.close();
  return { sent, failures };
}

/**
 * The floor (PostgreSQL only): the least a durable queue must do around the plain loop's requests.
 * `count` rows wait in one table (a primary key and one partial index); `inFlight` loops send
 * what one claim statement at a time leases (`FOR UPDATE SKIP LOCKED`, as the hub claims), and one
 * statement at a time marks what was sent as succeeded. No events, routing, attempts history,
 * retries, rate limits or metrics: the hub's ratio to this is its own overhead; this one's ratio to
 * the plain loop is what the machine leaves to any durable sender.
 */
async function floorLoop(
  url: string,
  secret: string,
  count: number,
  inFlight: number,
  tick: (n: number) => void,
) {
  const db = await scratchPostgres(process.env.DATABASE_URL ?? DEFAULT_SERVER);
  const pool = new pg.Pool({ connectionString: db.url, max: 3 });
  // Dropping the scratch database (with force) may end a client that the pool is still closing:
  // its error then comes to the pool, and must not end the run.
  pool.on('error', () => {});
  try {
    await pool.query(`create table floor_deliveries (id text primary key, body text not null,
      status text not null default 'pending', attempts int not null default 0,
      next_attempt_at timestamptz not null default now(), leased_until timestamptz)`);
    await pool.query(
      `create index floor_pending on floor_deliveries (next_attempt_at) where status = 'pending'`,
    );
    const sent = new Map<string, number>();
    const ids = Array.from({ length: count }, () => uuidv7());
    for (let at = 0; at < count; at += 1000) {
      const part = ids.slice(at, at + 1000);
      await pool.query(
        'insert into floor_deliveries (id, body) select * from unnest($1::text[], $2::text[])',
        [part, part.map((id, i) => payload(id, `carts/c-${at + i}`))],
      );
    }
    await pool.query('vacuum analyze floor_deliveries');
    const key = signingKey(secret);
    const agent = new Agent({ keepAliveTimeout: 30_000 });
    const buffer: { id: string; body: string }[] = [];
    let claiming: Promise<boolean> | undefined;
    let exhausted = false;
    let done: string[] = [];
    let settling: Promise<void> | undefined;
    let failures = 0;
    const claim = async () => {
      const { rows } = await pool.query<{ id: string; body: string }>({
        name: 'floor_claim',
        text: `update floor_deliveries d set status = 'delivering', attempts = attempts + 1,
                 leased_until = now() + interval '30 seconds'
               where d.id in (select id from floor_deliveries where status = 'pending'
                 and next_attempt_at <= now() order by next_attempt_at limit $1 for update skip locked)
               returning d.id, d.body`,
        values: [inFlight],
      });
      buffer.push(...rows);
      return rows.length > 0;
    };
    const settle = async () => {
      while (done.length > 0) {
        const batch = done;
        done = [];
        await pool.query({
          name: 'floor_settle',
          text: `update floor_deliveries set status = 'succeeded', leased_until = null where id = any($1::text[])`,
          values: [batch],
        });
        tick(sent.size);
      }
      settling = undefined;
    };
    const loop = async () => {
      for (;;) {
        while (buffer.length === 0 && !exhausted) {
          claiming ??= claim().finally(() => {
            claiming = undefined;
          });
          if (!(await claiming) && buffer.length === 0) exhausted = true;
        }
        const item = buffer.shift();
        if (!item) return;
        sent.set(item.id, now());
        if (!(await sendSigned(agent, url, key, item.id, item.body))) failures++;
        done.push(item.id);
        settling ??= settle();
      }
    };
    await Promise.all(Array.from({ length: inFlight }, loop));
    while (settling) await settling;
    await agent.close();
    const left = await pool.query(
      "select count(*)::int as n from floor_deliveries where status <> 'succeeded'",
    );
    if (left.rows[0].n !== 0) throw new Error(`floor: ${left.rows[0].n} deliveries not settled`);
    return { sent, failures };
  } finally {
    await pool.end();
    await db.drop();
  }
}

/**
 * A hub on scratch storage with an organization, an API client and a webhook endpoint at `target`.
 * `restart(role)` runs another `interchange start` on the same storage (to queue a backlog with no
 * worker, then drain it).
 */
async function startHub(storage: 'pglite' | 'postgres', target: string) {
  const { base, env, database, cleanup } = await hubStorage(storage);
  const profile = option('--cpu-prof');
  const logs: string[] = [];
  let child: Child | undefined;
  const launch = async (role: 'all' | 'api') => {
    if (child) logs.push(child.output());
    await child?.stop();
    child = startChild(
      [
        ...HUB_NODE_FLAGS,
        ...(profile ? ['--cpu-prof', `--cpu-prof-dir=${profile}`] : []),
        'bin/interchange.js',
        'start',
        '--role',
        role,
      ],
      env,
    );
    await waitFor(`${base}/healthz`, child);
    return child;
  };
  const hub = {
    base,
    database,
    token: '',
    signingSecret: '',
    child: () => child as Child,
    restart: launch,
    /** What the hub processes wrote to stdout and stderr so far. */
    output: () => [...logs, child?.output() ?? ''].join('\n'),
    async stop() {
      await child?.stop();
      await cleanup();
    },
  };
  try {
    const first = await launch('all');
    hub.token = await benchToken(base, first.output());
    const endpoint = await api(`${base}/v1/installations`, {
      method: 'POST',
      token: hub.token,
      body: JSON.stringify({ connector: 'webhook', config: { url: target } }),
    });
    hub.signingSecret = endpoint.revealed_secrets.signingSecret as string;
    return hub;
  } catch (err) {
    await hub.stop();
    throw err;
  }
}
type Hub = Awaited<ReturnType<typeof startHub>>;

/** POST /v1/events from `concurrency` connections; returns each accepted event's id and when its 201 came. */
async function enqueue(
  base: string,
  token: string,
  count: number,
  concurrency: number,
  tick: (n: number) => void,
) {
  const agent = new Agent({ connections: concurrency });
  const accepted = new Map<string, number>();
  const failures: string[] = [];
  let next = 0;
  const loop = async () => {
    while (next < count) {
      const i = next++;
      const res = await request(`${base}/v1/events`, {
        method: 'POST',
        dispatcher: agent,
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({ type: TYPE, subject: `carts/c-${i}`, data: DATA }),
      });
      const text = await res.body.text();
      const at = now();
      if (res.statusCode === 201) accepted.set((JSON.parse(text) as { id: string }).id, at);
      else failures.push(`${res.statusCode} ${text.slice(0, 200)}`);
      tick(accepted.size + failures.length);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  await agent.close();
  return { accepted, failures };
}

/** Polls the receiver until `expected` arrived, nothing new came for `patienceMs`, or the hub died. */
async function awaitArrivals(
  r: Receiver,
  expected: () => number,
  done: () => boolean,
  hub: Child,
  tick: (n: number) => void,
) {
  const patienceMs = Number(option('--patience')) || 15_000;
  let seen = -1;
  let since = Date.now();
  for (;;) {
    const n = await r.count();
    tick(n);
    if (done() && n >= expected()) return;
    if (n !== seen) [seen, since] = [n, Date.now()];
    else if (done() && Date.now() - since > patienceMs) return;
    if (hub.proc.exitCode !== null) return;
    await sleep(250);
  }
}

/** Delivery attempts settled by the hub process now running, by outcome (Prometheus counters). */
async function attempts(base: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const out: Record<string, number> = { succeeded: 0, retrying: 0, dead: 0, lost: 0 };
  for (const m of text.matchAll(/^interchange_delivery_attempts_total\{[^}]*outcome="(\w+)"[^}]*\} (\d+)/gm))
    out[m[1] as string] = (out[m[1] as string] ?? 0) + Number(m[2]);
  return out;
}

/**
 * PostgreSQL's share: CPU of the server processes serving the scratch database, by pid (when the
 * server runs on this machine), and transactions committed in it so far. Undefined on PGlite.
 */
async function databaseUsage(name: string | undefined) {
  if (!name) return undefined;
  const server = process.env.DATABASE_URL ?? DEFAULT_SERVER;
  const client = new pg.Client({ connectionString: server });
  await client.connect();
  try {
    const [stats] = (
      await client.query<{ commits: string }>(
        'select xact_commit as commits from pg_stat_database where datname = $1',
        [name],
      )
    ).rows;
    return { cpu: await backendsCpuMs(server, name), commits: Number(stats?.commits ?? 0) };
  } finally {
    await client.end();
  }
}

interface Usage {
  hubCpuMs: number | undefined;
  dbCpuMs: number | undefined;
  commits: number | undefined;
}

/** Runs `phase` and returns its result with the CPU the hub (and PostgreSQL) spent meanwhile. */
async function metered<T>(hub: Hub, phase: () => Promise<T>): Promise<T & Usage> {
  const pid = hub.child().proc.pid;
  const [cpu0, db0] = [cpuMsOf(pid), await databaseUsage(hub.database)];
  const result = await phase();
  // Backends publish their statistics at most once a second.
  if (hub.database) await sleep(1100);
  const [cpu1, db1] = [cpuMsOf(pid), await databaseUsage(hub.database)];
  const diff = (a: number | undefined, b: number | undefined) =>
    a === undefined || b === undefined ? undefined : b - a;
  return {
    ...result,
    hubCpuMs: diff(cpu0, cpu1),
    dbCpuMs: db0 && db1 ? backendsCpuDiff(db0.cpu, db1.cpu) : undefined,
    commits: diff(db0?.commits, db1?.commits),
  };
}

/** A line on stderr when no progress bars show (not a terminal). */
const say = (line: string) => {
  if (!process.stderr.isTTY) process.stderr.write(`${line}\n`);
};
const f0 = (n: number) => (Number.isFinite(n) ? n.toFixed(0) : '—');
const perDelivery = (total: number | undefined, n: number, digits = 2) =>
  total === undefined || n === 0 ? '—' : (total / n).toFixed(digits);

async function main() {
  const storage = args.includes('--postgres') || process.env.DATABASE_URL ? 'postgres' : 'pglite';
  // PGlite delivers far fewer per second: its default keeps a run near three minutes.
  const count = Number(option('--events')) || (storage === 'pglite' ? 2000 : 5000);
  // A fresh process drains the backlog: on PostgreSQL it is four times the live run, so that its
  // first thousands (before the JIT has compiled the hot paths; the plain loop is measured after
  // 15,000 warm-up requests) weigh no more than they would in a real backlog.
  const backlog = Number(option('--backlog') ?? (storage === 'pglite' ? count : count * 4));
  const enqueueConcurrency = Number(option('--enqueue-concurrency')) || 32;
  const inFlight = Number(option('--in-flight')) || 64; // the hub's sender: 64 in flight per worker
  const storageName = storage === 'pglite' ? 'PGlite' : 'PostgreSQL';
  const load = loadavg()[0] as number;
  const problems: string[] = [];
  const receiver = await startReceiver();
  let hub: Hub | undefined;
  try {
    // Baseline: the same number of signed requests from a plain loop, after a warm-up; run before
    // and after the hub, so a change in what else the machine does shows.
    const plainSecret = `whsec_${randomBytes(32).toString('base64')}`;
    const baseline = async (label: string) => {
      await receiver.reset(plainSecret, 16);
      await plainLoop(receiver.url, plainSecret, PLAIN_WARM_UP, inFlight, () => {});
      await receiver.reset(plainSecret, 16);
      const bars = progressBars(count, [label]);
      const cpu0 = process.cpuUsage();
      const plain = await plainLoop(receiver.url, plainSecret, count, inFlight, (n) => bars.update(label, n));
      const cpu = process.cpuUsage(cpu0);
      bars.stop();
      const got = await receiver.arrivals();
      const a = analyse(got.arrivals, plain.sent);
      if (plain.failures) problems.push(`${label}: ${plain.failures} non-2xx answers`);
      if (a.missing || a.duplicates)
        problems.push(`${label}: ${a.missing} missing, ${a.duplicates} duplicates`);
      say(`${label}: ${f0(a.rate)}/s`);
      return { ...a, cpuMs: (cpu.user + cpu.system) / 1000, verified: got.verified, bad: got.badSignatures };
    };
    const plainBefore = await baseline('plain loop (before)');
    // The floor, on PostgreSQL: the plain loop's requests from a durable queue of the least work.
    let floor: (Analysis & { cpuMs: number }) | undefined;
    if (storage === 'postgres') {
      await receiver.reset(plainSecret, 16);
      const bars = progressBars(count, ['floor']);
      const cpu0 = process.cpuUsage();
      const f = await floorLoop(receiver.url, plainSecret, count, inFlight, (n) => bars.update('floor', n));
      const cpu = process.cpuUsage(cpu0);
      bars.stop();
      floor = {
        ...analyse((await receiver.arrivals()).arrivals, f.sent),
        cpuMs: (cpu.user + cpu.system) / 1000,
      };
      if (f.failures) problems.push(`floor: ${f.failures} non-2xx answers`);
      if (floor.missing || floor.duplicates)
        problems.push(`floor: ${floor.missing} missing, ${floor.duplicates} duplicates`);
      say(`floor: ${f0(floor.rate)}/s`);
    }

    // The hub, warmed up with a few events.
    hub = await startHub(storage, receiver.url);
    const h = hub;
    await receiver.reset(h.signingSecret, 16);
    const warm = await enqueue(h.base, h.token, 100, 8, () => {});
    await awaitArrivals(
      receiver,
      () => warm.accepted.size,
      () => true,
      h.child(),
      () => {},
    );
    await sleep(200);

    // Live: `count` events enter through the API as fast as it takes them, while the hub delivers.
    await receiver.reset(h.signingSecret, 16);
    const settled0 = await attempts(h.base);
    let bars = progressBars(count, ['enqueued', 'delivered']);
    const t0 = now();
    let tEnqueued = Number.POSITIVE_INFINITY;
    const live = await metered(h, async () => {
      const polling = awaitArrivals(
        receiver,
        () => count,
        () => tEnqueued < Number.POSITIVE_INFINITY,
        h.child(),
        (n) => bars.update('delivered', n),
      );
      const events = await enqueue(h.base, h.token, count, enqueueConcurrency, (n) =>
        bars.update('enqueued', n),
      );
      tEnqueued = now();
      await polling;
      return events;
    });
    bars.stop();
    const liveSettled = await attempts(h.base);
    for (const k of Object.keys(liveSettled)) liveSettled[k] = (liveSettled[k] ?? 0) - (settled0[k] ?? 0);
    const liveGot = await receiver.arrivals();
    const liveMemory = await memoryCell(h.child().proc.pid, h.base);
    const res = analyse(liveGot.arrivals, live.accepted);
    say(
      `live: ${res.distinct}/${live.accepted.size} delivered, ${f0(res.rate)}/s, p50 ${f0(res.p50)} ms, p99 ${f0(res.p99)} ms`,
    );
    const drained = liveGot.arrivals.filter(([id, at]) => live.accepted.has(id) && at > tEnqueued).length;
    const drainRate = res.last > tEnqueued ? ((drained - 1) * 1000) / (res.last - tEnqueued) : Number.NaN;
    if (warm.failures.length || live.failures.length)
      problems.push(`events refused by the API, e.g. ${[...warm.failures, ...live.failures][0]}`);
    if (res.missing) problems.push(`live: ${res.missing} accepted events never arrived`);
    if (res.duplicates) problems.push(`live: ${res.duplicates} events arrived more than once`);
    if (liveGot.verified === 0) problems.push('no signature of the hub was verified');

    // Backlog: `backlog` events queued by an API-only process, then drained by a full one.
    let queued: { accepted: Map<string, number>; failures: string[]; rate: number } | undefined;
    let drain:
      | (Analysis &
          Usage & { settled: Record<string, number>; verified: number; bad: number; memory: string })
      | undefined;
    if (backlog > 0) {
      await receiver.reset(h.signingSecret, 16);
      await h.restart('api');
      bars = progressBars(backlog, ['queued (API only)']);
      const q0 = now();
      const q = await enqueue(h.base, h.token, backlog, enqueueConcurrency, (n) =>
        bars.update('queued (API only)', n),
      );
      queued = { ...q, rate: (q.accepted.size * 1000) / (now() - q0) };
      bars.stop();
      await h.restart('all');
      bars = progressBars(backlog, ['drained']);
      const d = await metered(h, async () => {
        await awaitArrivals(
          receiver,
          () => backlog,
          () => true,
          h.child(),
          (n) => bars.update('drained', n),
        );
        return receiver.arrivals();
      });
      bars.stop();
      drain = {
        ...analyse(d.arrivals, q.accepted),
        ...d,
        settled: await attempts(h.base),
        verified: d.verified,
        bad: d.badSignatures,
        memory: await memoryCell(h.child().proc.pid, h.base),
      };
      say(`backlog: ${drain.distinct}/${q.accepted.size} delivered, ${f0(drain.rate)}/s`);
      if (q.failures.length)
        problems.push(`backlog: ${q.failures.length} events refused, e.g. ${q.failures[0]}`);
      if (drain.missing) problems.push(`backlog: ${drain.missing} accepted events never arrived`);
      if (drain.duplicates) problems.push(`backlog: ${drain.duplicates} events arrived more than once`);
    }
    const logged = h
      .output()
      .split('\n')
      .filter((l) => /"level":(40|50|60)/.test(l));
    await h.stop();
    hub = undefined;
    const plainAfter = await baseline('plain loop (after)');
    const base = {
      rate: (plainBefore.rate + plainAfter.rate) / 2,
      distinct: plainBefore.distinct,
      bytes: plainBefore.bytes,
      cpuMs: (plainBefore.cpuMs + plainAfter.cpuMs) / 2,
      verified: plainBefore.verified + plainAfter.verified,
    };
    const bad = plainBefore.bad + plainAfter.bad + liveGot.badSignatures + (drain?.bad ?? 0);
    if (bad) problems.push(`${bad} signatures did not verify`);

    const cpuCell = (u: Usage, n: number) =>
      storage === 'postgres'
        ? `${perDelivery(u.hubCpuMs, n)} + ${perDelivery(u.dbCpuMs, n)}`
        : perDelivery(u.hubCpuMs, n);
    const rows = [
      [
        `plain undici loop, ${inFlight} in flight`,
        base.distinct,
        f0(base.rate),
        '—',
        '—',
        perDelivery(base.cpuMs, base.distinct),
        '1.00',
      ],
      ...(floor
        ? [
            [
              'floor: the same from a durable queue on PostgreSQL',
              floor.distinct,
              f0(floor.rate),
              '—',
              '—',
              perDelivery(floor.cpuMs, floor.distinct),
              (floor.rate / base.rate).toFixed(2),
            ],
          ]
        : []),
      [
        `Interchange on ${storageName}: events arriving through the API`,
        res.distinct,
        f0(res.rate),
        f0(res.p50),
        f0(res.p99),
        cpuCell(live, res.distinct),
        (res.rate / base.rate).toFixed(2),
      ],
      ...(drain
        ? [
            [
              `Interchange on ${storageName}: a queued backlog`,
              drain.distinct,
              f0(drain.rate),
              '—',
              '—',
              cpuCell(drain, drain.distinct),
              (drain.rate / base.rate).toFixed(2),
            ],
          ]
        : []),
    ];
    const gib = Math.round(totalmem() / 2 ** 30);
    const header = `Delivery on ${storageName}: ${count} events live${drain ? `, ${backlog} as a backlog` : ''}; ${cpus().length} cores (${cpus()[0]?.model.trim()}), ${gib} GiB, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}; 1-min load average before the run ${load.toFixed(2)}`;
    const sum = (s: Record<string, number>) =>
      `${s.succeeded} succeeded, ${s.retrying} retrying, ${s.dead} dead, ${s.lost} lost`;
    const shown = args.filter((a) => a !== '--write');
    const command = ['npm run bench:delivery', ...(shown.length ? ['--', ...shown] : [])].join(' ');
    const notes = [
      `- \`${storage === 'postgres' ? 'DATABASE_URL=… ' : ''}${command}\`. The plain loop made ${f0(plainBefore.rate)}/s before the hub ran and ${f0(plainAfter.rate)}/s after; the ratios are to their mean.`,
      `- Live: events entered through \`POST /v1/events\` from ${enqueueConcurrency} connections at ${f0((live.accepted.size * 1000) / (tEnqueued - t0))}/s while the same process delivered them; after the last one was accepted, ${drained} deliveries were left and went at ${f0(drainRate)}/s. p50/p99 are from an event's 201 to its arrival at the receiver.`,
      ...(drain && queued
        ? [
            `- Backlog: an \`interchange start --role api\` process took ${queued.accepted.size} events at ${f0(queued.rate)}/s with no worker running; then \`interchange start\` routed and delivered them, first to last arrival.`,
          ]
        : []),
      `- Exactly once: live ${res.distinct} of ${live.accepted.size} event ids arrived, ${res.duplicates} duplicates, ${res.missing} missing (attempts the hub settled: ${sum(liveSettled)})${drain ? `; backlog ${drain.distinct} of ${backlog}, ${drain.duplicates} duplicates, ${drain.missing} missing (${sum(drain.settled)})` : ''}${res.unexpected + (drain?.unexpected ?? 0) ? `; ${res.unexpected + (drain?.unexpected ?? 0)} arrivals of events from before the phase` : ''}. Signatures checked with \`standardwebhooks\` on a 1-in-16 sample: ${liveGot.verified + (drain?.verified ?? 0)} from the hub, ${base.verified} from the plain loop, ${bad} bad.`,
      `- Bodies: ${f0(res.bytes)} bytes (hub), ${f0(base.bytes)} bytes (plain loop). CPU ms per delivery: the plain loop's process; the hub's process${storage === 'postgres' ? ' + the PostgreSQL backends serving it' : ' (PGlite runs inside it)'}; live, it also took the events in through its API.${storage === 'postgres' ? ` Transactions committed per delivery: ${perDelivery(live.commits, res.distinct, 1)} live${drain ? `, ${perDelivery(drain.commits, drain.distinct, 1)} backlog` : ''} (idle polling included).` : ''}`,
      `- Memory of the \`interchange start\` process (RSS, and V8 heap from \`/metrics\`): ${liveMemory} after the live run${drain ? `; ${drain.memory} after draining the backlog (a process started for it)` : ''}.`,
      ...(logged.length
        ? [`- The hub logged ${logged.length} warnings or errors, the first: \`${logged[0]?.slice(0, 300)}\``]
        : []),
    ];
    const out = `${header}\n\n${table(['sender', 'deliveries', 'deliveries/s', 'p50 ms', 'p99 ms', 'CPU ms / delivery', 'vs plain loop'], rows)}\n\n${notes.join('\n')}\n`;
    console.log(`\n${out}`);
    if (problems.length) {
      console.error(`\nFAILED:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
      process.exitCode = 1;
    } else if (args.includes('--write')) {
      replaceMarked('BENCHMARKS.md', `bench:delivery:${storage}`, out);
      console.log('updated BENCHMARKS.md');
    }
  } finally {
    await hub?.stop();
    await receiver.child.stop();
  }
  process.exit(process.exitCode ?? 0);
}

if (args.includes('--receiver')) await runReceiver(Number(process.env.PORT));
else await main();
