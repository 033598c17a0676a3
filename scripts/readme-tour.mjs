// Runs the README's curl tour, as written, against a freshly started hub (`npm start`) in a
// scratch folder, so the README cannot drift from what the hub does. Prints how long the first
// and a second start took to answer /healthz.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const HEALTH_DEADLINE_MS = 15_000;
const readme = readFileSync('README.md', 'utf8');
const block = readme.match(/<!-- tour:start -->\s*```bash\n([\s\S]*?)```\s*<!-- tour:end -->/)?.[1];
if (!block) throw new Error('README.md has no tour block between <!-- tour:start --> and <!-- tour:end -->');

const port = await new Promise((resolve) => {
  const srv = createServer().listen(0, '127.0.0.1', () => {
    const { port } = srv.address();
    srv.close(() => resolve(port));
  });
});
const scratch = mkdtempSync(join(tmpdir(), 'interchange-tour-'));
const env = { ...process.env, PORT: String(port), INTERCHANGE_DATA_DIR: join(scratch, '.interchange') };
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
  stop(child);
  throw new Error(
    `${label}: the hub did not answer /healthz within ${HEALTH_DEADLINE_MS / 1000} s\n${output}`,
  );
}

function stop(child) {
  try {
    process.kill(-child.pid, 'SIGTERM');
  } catch {}
  return new Promise((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', resolve)));
}

let hub = await startHub('first start');
try {
  const out = execFileSync('bash', ['-euo', 'pipefail', '-c', block], {
    cwd: scratch,
    env: { ...env, HUB: `http://127.0.0.1:${port}` },
    encoding: 'utf8',
  });
  const page = JSON.parse(
    out
      .trim()
      .split('\n')
      .at(-1)
      .replace(/^.*?(\{"data")/, '$1'),
  );
  const ada = page.data?.[0];
  if (ada?.email !== 'ada@example.com' || ada.external_ids?.shopify !== '7302') {
    throw new Error(`the tour's last call did not list Ada with her Shopify id:\n${out}`);
  }
  console.log('tour: every command succeeded; the user list shows', JSON.stringify(ada.external_ids));
  await stop(hub);
  hub = await startHub('second start');
} finally {
  await stop(hub);
  rmSync(scratch, { recursive: true, force: true });
}
