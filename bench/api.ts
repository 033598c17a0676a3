// bench/api: p50/p99 of `GET /v1/events` (a page of 20, with a few thousand events stored) and
// `GET /v1/users/:id` at a fixed offered rate, on PGlite and PostgreSQL, next to bare Fastify routes
// answering the very same bodies from memory (bench/bare-server.ts) at the same rate, in the same
// run: the ratio of p99s is what auth, the rate limit and the query cost. Run: npm run bench:api
// [-- --rate 1000 --seconds 10 --events 3000 --users 200 --storage pglite,postgres --write].
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import { HUB_NODE_FLAGS, type Hub, type Storage, startHub, storageName } from './hub.ts';
import {
  api,
  freePort,
  loadAverage,
  machine,
  memoryCell,
  progressBars,
  replaceMarked,
  startChild,
  table,
  waitFor,
} from './lib.ts';
import { type PacedRequest, type PacedResult, paced } from './paced.ts';

const args = process.argv.slice(2);
const option = (name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const rate = Number(option('--rate')) || 1000;
const seconds = Number(option('--seconds')) || 10;
const eventCount = Number(option('--events')) || 3000;
const userCount = Number(option('--users')) || 200;
const storages = (option('--storage') ?? 'pglite,postgres').split(',') as Storage[];
const maxInFlight = Number(option('--max-in-flight')) || 64;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const f0 = (n: number) => (Number.isFinite(n) ? n.toFixed(0) : '—');
const f1 = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : '—');

/** A custom event's data, about 0.9 KB once enveloped (the same cart as bench/delivery). */
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
};

/** `count` requests from `concurrency` loops; throws on the first non-2xx. */
async function seed(base: string, count: number, concurrency: number, make: (i: number) => PacedRequest) {
  const pool = new Pool(base, { connections: concurrency });
  const bars = progressBars(count, ['seeding']);
  const answers: string[] = [];
  let next = 0;
  const loop = async () => {
    while (next < count) {
      const i = next++;
      const r = make(i);
      const res = await pool.request({ method: r.method, path: r.path, headers: r.headers, body: r.body });
      const text = await res.body.text();
      if (res.statusCode >= 300)
        throw new Error(`${r.method} ${r.path}: ${res.statusCode} ${text.slice(0, 200)}`);
      answers[i] = text;
      bars.update('seeding', answers.length);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  bars.stop();
  await pool.close();
  return answers;
}

/** Stores `eventCount` events and `userCount` users; returns the user ids. */
async function populate(hub: Hub): Promise<string[]> {
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${hub.token}` };
  const users = await seed(hub.base, userCount, 16, (i) => ({
    method: 'POST',
    path: '/v1/users',
    headers,
    body: JSON.stringify({
      email: `user${i}@example.com`,
      name: `User ${i}`,
      external_ids: { shopify: String(7_000_000 + i), stripe: `cus_bench${i}` },
    }),
  }));
  await seed(hub.base, eventCount, 32, (i) => ({
    method: 'POST',
    path: '/v1/events',
    headers,
    body: JSON.stringify({ type: 'custom.cart.updated', subject: `carts/c-${i}`, data: DATA }),
  }));
  return users.map((u) => (JSON.parse(u) as { id: string }).id);
}

interface Endpoint {
  name: string;
  request: (i: number) => PacedRequest;
}

const endpoints = (token: string, userIds: string[]): Endpoint[] => {
  const headers = { authorization: `Bearer ${token}` };
  return [
    {
      name: 'GET /v1/events?limit=20',
      request: () => ({ method: 'GET', path: '/v1/events?limit=20', headers }),
    },
    {
      name: 'GET /v1/users/:id',
      request: (i) => ({ method: 'GET', path: `/v1/users/${userIds[i % userIds.length]}`, headers }),
    },
  ];
};

/** A warm-up of 2 s at a fifth of the rate, then the measured run. */
async function measure(origin: string, endpoint: Endpoint, label: string): Promise<PacedResult> {
  await paced({ origin, rate: Math.max(1, rate / 5), seconds: 2, maxInFlight, request: endpoint.request });
  const bars = progressBars(Math.round(rate * seconds), [label]);
  const r = await paced({
    origin,
    rate,
    seconds,
    maxInFlight,
    request: endpoint.request,
    tick: (n) => bars.update(label, n),
  });
  bars.stop();
  process.stderr.write(
    `${label}: ${f0(r.rate)}/s, p50 ${f1(r.p50)} ms, p99 ${f1(r.p99)} ms, ${r.skipped} skipped, ${r.failed} failed\n`,
  );
  return r;
}

interface Row {
  target: string;
  endpoint: string;
  result: PacedResult;
  memory: string;
}

async function main() {
  const load = loadAverage();
  const started = Date.now();
  const rows: Row[] = [];
  const notes: string[] = [];
  const problems: string[] = [];
  let fixtures: { events: unknown; user: unknown } | undefined;
  const sizes: Record<string, number> = {};

  for (const storage of storages) {
    const name = storageName(storage);
    const hub = await startHub(storage);
    try {
      const t0 = Date.now();
      const userIds = await populate(hub);
      notes.push(
        `- ${name}: ${eventCount} events and ${userCount} users stored through the API in ${((Date.now() - t0) / 1000).toFixed(0)} s before measuring; the hub's memory then: ${await hub.memory()}.`,
      );
      await sleep(3000); // let the router read what was just stored before measuring
      const eps = endpoints(hub.token, userIds);
      if (!fixtures) {
        const events = await api(`${hub.base}/v1/events?limit=20`, { token: hub.token });
        const user = await api(`${hub.base}/v1/users/${userIds[0]}`, { token: hub.token });
        fixtures = { events, user };
        sizes[eps[0]?.name as string] = JSON.stringify(events).length;
        sizes[eps[1]?.name as string] = JSON.stringify(user).length;
      }
      for (const ep of eps) {
        const result = await measure(hub.base, ep, `${name} ${ep.name}`);
        rows.push({
          target: `Interchange on ${name}`,
          endpoint: ep.name,
          result,
          memory: await hub.memory(),
        });
      }
      const logged = hub.logged();
      if (logged.length)
        notes.push(
          `- ${name}: the hub logged ${logged.length} warnings or errors, the first: \`${logged[0]?.slice(0, 300)}\``,
        );
    } finally {
      await hub.stop();
    }
  }

  // The baseline: the same bodies from bare Fastify routes, at the same rate.
  const dir = mkdtempSync(join(tmpdir(), 'interchange-bench-'));
  const fixturePath = join(dir, 'fixtures.json');
  writeFileSync(fixturePath, JSON.stringify(fixtures));
  const port = await freePort();
  const bare = startChild([...HUB_NODE_FLAGS, '--import', 'tsx', 'bench/bare-server.ts'], {
    ...process.env,
    PORT: String(port),
    BARE_FIXTURES: fixturePath,
  });
  const bareRows: Row[] = [];
  try {
    const origin = `http://127.0.0.1:${port}`;
    await waitFor(`${origin}/v1/events`, bare);
    for (const ep of endpoints('bare', ['usr_bare'])) {
      const result = await measure(origin, ep, `bare ${ep.name}`);
      bareRows.push({
        target: 'bare Fastify route',
        endpoint: ep.name,
        result,
        memory: await memoryCell(bare.proc.pid),
      });
    }
  } finally {
    await bare.stop();
    rmSync(dir, { recursive: true, force: true });
  }

  const all = [...bareRows, ...rows];
  notes.push(
    `- How late the sender itself sent (p99, ms behind schedule; the 2 cores are shared): ${all.map((r) => `${r.target} \`${r.endpoint}\` ${f1(r.result.lagP99)}`).join(', ')}.`,
  );
  for (const r of all) {
    const x = r.result;
    if (x.failed) problems.push(`${r.target} ${r.endpoint}: ${x.failed} failed, e.g. ${x.firstFailure}`);
    if (x.skipped || x.rate < 0.95 * rate)
      notes.push(
        `- ${r.target}, ${r.endpoint}: ${rate}/s not sustained: ${x.ok} answered of ${x.offered} due, ${x.skipped} skipped because ${maxInFlight} were unanswered when they were due.`,
      );
  }
  const p99Of = (endpoint: string) => bareRows.find((b) => b.endpoint === endpoint)?.result.p99 ?? Number.NaN;
  const header = `API: ${rate} requests/s offered for ${seconds} s per endpoint; ${machine()}; 1-min load average before the run ${load.toFixed(2)}; ${((Date.now() - started) / 1000).toFixed(0)} s in all`;
  const shown = args.filter((a) => a !== '--write');
  const command = ['npm run bench:api', ...(shown.length ? ['--', ...shown] : [])].join(' ');
  const out = `${header}\n\n${table(
    ['target', 'endpoint', 'requests/s', 'p50 ms', 'p99 ms', 'p99 vs bare', 'process memory after'],
    all.map((r) => [
      r.target,
      `\`${r.endpoint}\``,
      `${f0(r.result.rate)}${r.result.skipped || r.result.rate < 0.95 * rate ? ' (not sustained)' : ''}`,
      f1(r.result.p50),
      f1(r.result.p99),
      `${(r.result.p99 / p99Of(r.endpoint)).toFixed(1)}×`,
      r.memory,
    ]),
  )}\n\n${[
    `- \`${command}\`. Open loop: request i is due at i/${rate} s whatever the others are doing, at most ${maxInFlight} in flight; p50/p99 from a request handed to the socket pool to its whole answer. An enterprise-tier client, so the rate limit never trips. Bodies: ${Object.entries(
      sizes,
    )
      .map(([k, v]) => `${v} bytes (\`${k}\`)`)
      .join(
        ', ',
      )}, the same from the bare routes. Memory: RSS (and V8 heap) of the \`interchange start\` process, or of the bare server.`,
    ...notes,
    ...(problems.length ? [`- **Failed:** ${problems.join('; ')}.`] : []),
  ].join('\n')}\n`;
  console.log(`\n${out}`);
  if (args.includes('--write')) {
    replaceMarked('BENCHMARKS.md', 'bench:api', out);
    console.log('updated BENCHMARKS.md');
  }
  if (problems.length) {
    console.error(`\nFAILED:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    process.exitCode = 1;
  }
  process.exit(process.exitCode ?? 0);
}

await main();
