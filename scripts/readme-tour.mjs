// Runs the curl tour of docs/guides/tour.md (the README links to it), as written, against a freshly
// started hub (`npm start`) in a scratch folder, so the tour cannot drift from what the hub does.
// Prints how long the first and a second start took to answer /healthz.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const HEALTH_DEADLINE_MS = 15_000;
const TOUR = 'docs/guides/tour.md';
const page = readFileSync(TOUR, 'utf8');
const block = page.match(/<!-- tour:start -->\s*```bash\n([\s\S]*?)```\s*<!-- tour:end -->/)?.[1];
if (!block) throw new Error(`${TOUR} has no tour block between <!-- tour:start --> and <!-- tour:end -->`);

const freePort = () =>
  new Promise((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
const port = await freePort();
const scratch = mkdtempSync(join(tmpdir(), 'interchange-tour-'));
const receiverPort = await freePort();
const env = {
  ...process.env,
  PORT: String(port),
  INTERCHANGE_DATA_DIR: join(scratch, '.interchange'),
  INTERCHANGE_EGRESS_ALLOW: '127.0.0.1/32',
};
for (const key of ['DATABASE_URL', 'REDIS_URL', 'INTERCHANGE_SECRET_KEY']) delete env[key];

async function startHub(label) {
  const started = Date.now();
  const child = spawn('npm', ['start'], { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  while (Date.now() - started < HEALTH_DEADLINE_MS) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/healthz`)).ok) {
        console.log(`${label}: /healthz answered after ${((Date.now() - started) / 1000).toFixed(1)} s`);
        return child;
      }
    } catch {}
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  await stop(child);
  throw new Error(
    `${label}: the hub did not answer /healthz within ${HEALTH_DEADLINE_MS / 1000} s\n${output}`,
  );
}

/**
 * SIGTERM to the hub's process group, then wait until every process of the group is gone: `npm`
 * can exit before the hub under it has finished closing its embedded database, whose files must
 * not be removed (or reopened by the next start) while it still writes them.
 */
async function stop(child) {
  const alive = () => {
    try {
      process.kill(-child.pid, 0);
    } catch {
      return false;
    }
    // A zombie still counts for kill(0), and an orphan's may never be reaped in a container whose
    // PID 1 does not reap: on Linux, look for a member of the group that is not a zombie.
    if (!existsSync('/proc/self/stat')) return true;
    return readdirSync('/proc').some((pid) => {
      if (!/^\d+$/.test(pid)) return false;
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        return Number(pgrp) === child.pid && state !== 'Z' && state !== 'X';
      } catch {
        return false;
      }
    });
  };
  try {
    process.kill(-child.pid, 'SIGTERM');
  } catch {}
  const deadline = Date.now() + HEALTH_DEADLINE_MS;
  while (alive() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (alive()) {
    console.error('the hub did not stop within 15 s of SIGTERM; killing it');
    process.kill(-child.pid, 'SIGKILL');
    while (alive()) await new Promise((r) => setTimeout(r, 50));
  }
}

let hub = await startHub('first start');
try {
  const result = spawnSync('bash', ['-euo', 'pipefail', '-c', block], {
    cwd: scratch,
    env: { ...env, HUB: `http://127.0.0.1:${port}`, RECEIVER_PORT: String(receiverPort) },
    encoding: 'utf8',
    timeout: 120_000,
  });
  const out = result.stdout;
  if (result.status !== 0) {
    throw new Error(`the tour failed (exit ${result.status ?? result.signal}):\n${out}\n${result.stderr}`);
  }
  const [users, events, deliveries] = pages(out);
  const ada = users?.data?.[0];
  if (ada?.email !== 'ada@example.com' || ada.external_ids?.shopify !== '7302') {
    throw new Error(`the tour did not list Ada with her Shopify id:\n${out}`);
  }
  const order = events?.data?.find((e) => e.type === 'order.created');
  if (
    order?.userid !== ada.id ||
    order.partitionkey !== 'acme.myshopify.com' ||
    order.data?.total !== '59.00'
  ) {
    throw new Error(`the tour's order did not become Ada's order.created:\n${out}`);
  }
  const delivery = deliveries?.data?.[0];
  if (delivery?.status !== 'succeeded' || !result.stderr.includes(`received ${order.id}`)) {
    throw new Error(`the tour's endpoint did not receive the order:\n${out}\n${result.stderr}`);
  }
  console.log('tour: every command succeeded; Ada, her order.created and its delivery are there');
  await stop(hub);
  hub = await startHub('second start');
} finally {
  await stop(hub);
  rmSync(scratch, { recursive: true, force: true });
}

/** Every `{"data":…}` page the tour printed (curl prints them back to back), in order. */
function pages(text) {
  const found = [];
  for (let start = text.indexOf('{"data"'); start !== -1; start = text.indexOf('{"data"', start + 1)) {
    let depth = 0;
    let inString = false;
    for (let i = start; i < text.length; i++) {
      const c = text[i];
      if (inString) {
        if (c === '\\') i++;
        else if (c === '"') inString = false;
      } else if (c === '"') inString = true;
      else if (c === '{') depth++;
      else if (c === '}' && --depth === 0) {
        found.push(JSON.parse(text.slice(start, i + 1)));
        start = i;
        break;
      }
    }
  }
  return found;
}
