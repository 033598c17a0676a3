// bench/ingest: signed Shopify orders/create webhooks at increasing concurrency against a running
// hub (`interchange start`, its own process), on PGlite and on PostgreSQL, next to a bare Fastify
// route that only parses the same JSON, measured in the same run. Prints webhooks/s, p50/p99 and
// the ratio to the bare route, and each process's memory after each level. Run: npm run bench:ingest
// [-- --seconds 5 --levels 1,8,32,64 --only postgres --cpu-prof DIR --write]; --cpu-prof writes the
// hub's V8 CPU profile into DIR.
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { shopifyOrder, signShopifyWebhook } from '../sim/shopify.ts';
import { benchToken, HUB_NODE_FLAGS, hubStorage } from './hub.ts';
import {
  api,
  freePort,
  type LoadResult,
  load,
  loadAverage,
  machine,
  memoryCell,
  reportProgress,
  startChild,
  table,
  waitFor,
} from './lib.ts';

const args = process.argv.slice(2);
const option = (name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const seconds = Number(option('--seconds')) || 5;
const levels = (option('--levels') ?? '1,8,32,64').split(',').map(Number);
const modes = (['pglite', 'postgres'] as const).filter((m) => (option('--only') ?? m) === m);
const loadBefore = loadAverage();
const steps = levels.length * (1 + modes.length);
let stepsDone = 0;
const SHOP = 'bench-shop.myshopify.com';
const SECRET = 'shpss_bench_secret';
const ORDER = JSON.stringify(shopifyOrder({ id: 5550001n }), (_k, v) =>
  typeof v === 'bigint' ? Number(v) : v,
);

/** A hub with one organization and a Shopify installation; returns its base URL and installation id. */
async function startHub(mode: 'pglite' | 'postgres') {
  const { base, env, cleanup } = await hubStorage(mode);
  const profile = option('--cpu-prof');
  const hub = startChild(
    [
      ...HUB_NODE_FLAGS,
      ...(profile ? ['--cpu-prof', `--cpu-prof-dir=${profile}`] : []),
      'bin/interchange.js',
      'start',
    ],
    env,
  );
  await waitFor(`${base}/healthz`, hub);
  const orgToken = await benchToken(base, hub.output());
  const installation = await api(`${base}/v1/installations`, {
    method: 'POST',
    token: orgToken,
    body: JSON.stringify({
      connector: 'shopify',
      config: { shopDomain: SHOP },
      secrets: { clientSecret: SECRET },
    }),
  });
  return {
    base,
    installationId: installation.id as string,
    pid: hub.proc.pid,
    async stop() {
      await hub.stop();
      await cleanup();
    },
  };
}

/** Every request is a distinct, correctly signed delivery (new event id), as Shopify would send. */
const webhook = (installationId: string) => () => {
  const signed = signShopifyWebhook({
    topic: 'orders/create',
    shopDomain: SHOP,
    body: ORDER,
    secret: SECRET,
    eventId: randomUUID(),
  });
  return { path: `/hooks/${installationId}`, headers: signed.headers, body: signed.body };
};

/** Each level's result, with the memory of the process under test (`pid`) right after it. */
async function measure(
  label: string,
  base: string,
  installationId: string,
  pid: number | undefined,
  metrics: boolean,
): Promise<(LoadResult & { memory: string })[]> {
  const results: (LoadResult & { memory: string })[] = [];
  await load(base, 8, 1, webhook(installationId)); // warm-up
  for (const c of levels) {
    const r = await load(base, c, seconds, webhook(installationId));
    if (r.non2xx > 0 || r.errors > 0)
      console.warn(`${label} c=${c}: ${r.non2xx} non-2xx, ${r.errors} errors`);
    results.push({ ...r, memory: await memoryCell(pid, metrics ? base : undefined) });
    reportProgress('levels', ++stepsDone, steps);
    process.stderr.write(`${label} c=${c}: ${r.rps.toFixed(0)}/s p50 ${r.p50} ms p99 ${r.p99} ms\n`);
  }
  return results;
}

const bareChild = startChild([...HUB_NODE_FLAGS, '--import', 'tsx', 'bench/bare-server.ts'], {
  ...process.env,
  PORT: String(await freePort()),
});
await new Promise((r) => setTimeout(r, 300));
const barePort = Number(
  await (async () => {
    for (let i = 0; i < 100 && !/listening \d+/.test(bareChild.output()); i++)
      await new Promise((r) => setTimeout(r, 100));
    return bareChild.output().match(/listening (\d+)/)?.[1];
  })(),
);
const bare = await measure(
  'bare fastify',
  `http://127.0.0.1:${barePort}`,
  'ins_bare',
  bareChild.proc.pid,
  false,
);
await bareChild.stop();

const rows: (string | number)[][] = [];
for (const [i, c] of levels.entries()) {
  const b = bare[i] as LoadResult & { memory: string };
  rows.push([`bare Fastify JSON route`, c, b.rps.toFixed(0), b.p50, b.p99, '1.00', b.memory]);
}
for (const mode of modes) {
  const hub = await startHub(mode);
  try {
    const results = await measure(mode, hub.base, hub.installationId, hub.pid, true);
    for (const [i, c] of levels.entries()) {
      const r = results[i] as LoadResult & { memory: string };
      rows.push([
        `Interchange on ${mode === 'pglite' ? 'PGlite' : 'PostgreSQL'}`,
        c,
        r.rps.toFixed(0),
        r.p50,
        r.p99,
        (r.rps / (bare[i] as LoadResult).rps).toFixed(2),
        r.memory,
      ]);
    }
  } finally {
    await hub.stop();
  }
}

const header = `Ingest: signed Shopify orders/create, ${seconds} s per level; ${machine()}; 1-min load average before the run ${loadBefore.toFixed(2)}`;
const shown = args.filter((a) => a !== '--write');
const command = ['npm run bench:ingest', ...(shown.length ? ['--', ...shown] : [])].join(' ');
const out = `${header}\n\n${table(['target', 'connections', 'webhooks/s', 'p50 ms', 'p99 ms', 'vs bare', 'process memory after'], rows)}\n\n- \`${command}\`. Memory: RSS of the bare server, or RSS (and V8 heap, from \`/metrics\`) of the \`interchange start\` process, right after each level.\n`;
console.log(`\n${out}`);
if (args.includes('--write')) {
  const path = 'BENCHMARKS.md';
  const doc = readFileSync(path, 'utf8');
  const marked = /<!-- bench:ingest:start -->[\s\S]*<!-- bench:ingest:end -->/;
  writeFileSync(path, doc.replace(marked, `<!-- bench:ingest:start -->\n${out}<!-- bench:ingest:end -->`));
  console.log(`updated ${path}`);
}
