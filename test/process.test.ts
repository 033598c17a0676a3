// The hub as a process among others: a supervisor that reads its output through pipes and goes
// away before it; other users of the machine, who must not read its files.
import { spawn } from 'node:child_process';
import {
  chmodSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { generateKey, keyId, parseKey } from '../src/crypto/secret-box.ts';
import {
  BIN,
  baseEnv,
  type Cli,
  finished,
  freePort,
  http,
  isRunning,
  sleep,
  spawnCli,
  waitFor200,
} from './helpers/cli.ts';
import { createTestDatabase, onPostgres } from './helpers/database.ts';

const root = mkdtempSync(join(tmpdir(), 'interchange-process-'));
let dirs = 0;
const freshDir = (name: string) => join(root, `${name}-${++dirs}`);
/** Processes a test started that its parent no longer watches: killed after each test. */
const orphans = new Set<number>();
const children = new Set<Cli>();

afterEach(() => {
  for (const pid of orphans) {
    if (isRunning(pid)) process.kill(pid, 'SIGKILL');
    orphans.delete(pid);
  }
  for (const cli of children) {
    if (cli.exitCode === undefined) cli.proc.kill('SIGKILL');
    children.delete(cli);
  }
});

function start(args: string[], env: Record<string, string>): Cli {
  const cli = spawnCli(args, env, root);
  children.add(cli);
  return cli;
}

async function stop(cli: Cli) {
  if (cli.exitCode === undefined) cli.proc.kill('SIGTERM');
  return finished(cli, 30_000);
}
afterAll(() => rmSync(root, { recursive: true, force: true }));

/**
 * A supervisor in miniature: spawns the hub with its stdout and stderr on pipes, reads them until
 * the hub says it listens, prints the hub's pid and exits, closing the pipes' reading ends.
 */
const SUPERVISOR = `
import { spawn } from 'node:child_process';
const [bin, args] = [process.env.HUB_BIN, JSON.parse(process.env.HUB_ARGS)];
const hub = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
let output = '';
const read = (chunk) => {
  output += chunk;
  if (output.includes('Interchange listening')) {
    process.stdout.write(String(hub.pid));
    process.exit(0);
  }
};
hub.stdout.on('data', read);
hub.stderr.on('data', read);
hub.on('exit', (code) => {
  process.stderr.write('hub exited early (' + code + '):\\n' + output);
  process.exit(1);
});
`;

/** Starts the hub under SUPERVISOR and resolves with its pid once the supervisor has exited. */
async function startOrphanedHub(env: Record<string, string>): Promise<number> {
  const script = join(root, 'supervisor.mjs');
  writeFileSync(script, SUPERVISOR);
  const supervisor = spawn(process.execPath, [script], {
    env: { ...baseEnv, ...env, HUB_BIN: BIN, HUB_ARGS: JSON.stringify(['start']) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  supervisor.stdout.setEncoding('utf8').on('data', (c: string) => {
    stdout += c;
  });
  supervisor.stderr.setEncoding('utf8').on('data', (c: string) => {
    stderr += c;
  });
  const code = await new Promise<number | null>((resolve) => supervisor.on('close', resolve));
  expect(code, stderr).toBe(0);
  const pid = Number(stdout);
  expect(Number.isInteger(pid) && pid > 0, stdout).toBe(true);
  orphans.add(pid);
  return pid;
}

describe('SIGTERM once the reader of the hub’s output is gone', () => {
  it('stops the hub (its log writes fail with EPIPE and must not hold it)', async () => {
    const pid = await startOrphanedHub({
      INTERCHANGE_DATA_DIR: freshDir('orphan'),
      PORT: String(await freePort()),
    });
    // At once: the first log line written after the supervisor left is the shutdown's own.
    process.kill(pid, 'SIGTERM');
    // Generous: a plain start stops in about a second and a half.
    const until = Date.now() + 20_000;
    while (isRunning(pid) && Date.now() < until) await sleep(100);
    expect(isRunning(pid), `hub ${pid} still runs 20 s after SIGTERM`).toBe(false);
  }, 60_000);
});

/** Every path under `dir` (and `dir`) that the group or others may read, write or enter, with its mode. */
function sharedEntries(dir: string): string[] {
  const paths = [dir, ...readdirSync(dir, { recursive: true }).map((p) => join(dir, String(p)))];
  return paths
    .filter((p) => (lstatSync(p).mode & 0o077) !== 0)
    .map((p) => `${p.slice(dir.length)} ${(lstatSync(p).mode & 0o777).toString(8)}`);
}

describe('the embedded data dir', () => {
  it('is the hub user’s alone: 0700, and nothing under it open to the group or others', async () => {
    const dataDir = freshDir('private');
    const port = await freePort();
    const hub = start(['start'], { INTERCHANGE_DATA_DIR: dataDir, PORT: String(port) });
    await waitFor200(hub, port, '/healthz', 45_000);
    expect(statSync(dataDir).mode & 0o777).toBe(0o700);
    // Something written: the WAL and the tables grow while it runs.
    expect((await http(port, 'GET', '/v1/organizations')).status).toBe(401);
    expect((await stop(hub)).code, hub.report()).toBe(0);
    expect(sharedEntries(dataDir), hub.report()).toEqual([]);
  }, 90_000);

  it('takes back a data dir an earlier version left readable and writable by everyone', async () => {
    const dataDir = freshDir('loose');
    const port = await freePort();
    const first = start(['start'], { INTERCHANGE_DATA_DIR: dataDir, PORT: String(port) });
    await waitFor200(first, port, '/healthz', 45_000);
    expect((await stop(first)).code, first.report()).toBe(0);
    // As the issue found it: the dir 0755, the database's files 0666.
    chmodSync(dataDir, 0o755);
    for (const path of readdirSync(join(dataDir, 'pgdata'), { recursive: true })) {
      const full = join(dataDir, 'pgdata', String(path));
      chmodSync(full, statSync(full).isDirectory() ? 0o777 : 0o666);
    }
    mkdirSync(join(dataDir, 'pgdata', 'left-over'), { mode: 0o777 });
    chmodSync(join(dataDir, 'pgdata', 'left-over'), 0o777);
    expect(sharedEntries(dataDir).length).toBeGreaterThan(100);

    const again = start(['start'], { INTERCHANGE_DATA_DIR: dataDir, PORT: String(port) });
    await waitFor200(again, port, '/healthz', 45_000);
    // Running: nobody else may enter the dir, and what was there is the owner's again.
    expect(statSync(dataDir).mode & 0o777).toBe(0o700);
    expect(statSync(join(dataDir, 'pgdata', 'PG_VERSION')).mode & 0o777).toBe(0o600);
    expect(statSync(join(dataDir, 'pgdata', 'left-over')).mode & 0o777).toBe(0o700);
    expect((await stop(again)).code, again.report()).toBe(0);
    expect(sharedEntries(dataDir), again.report()).toEqual([]);
  }, 120_000);
});

describe('interchange start --role worker', () => {
  it('serves /healthz, /readyz and /metrics (delivery and consumer metrics) on INTERCHANGE_WORKER_PORT, nothing else', async () => {
    const [apiPort, workerPort] = [await freePort(), await freePort()];
    const token = 'worker-metrics-token-0123456789';
    const worker = start(['start', '--role', 'worker'], {
      INTERCHANGE_DATA_DIR: freshDir('worker'),
      PORT: String(apiPort),
      INTERCHANGE_WORKER_PORT: String(workerPort),
      INTERCHANGE_METRICS_TOKEN: token,
    });
    await waitFor200(worker, workerPort, '/healthz', 45_000);
    expect(worker.stdout).toContain(`health and metrics on http://127.0.0.1:${workerPort}`);

    const health = await http(workerPort, 'GET', '/healthz');
    expect(JSON.parse(health.body)).toEqual({ status: 'ok' });
    const ready = await http(workerPort, 'GET', '/readyz');
    expect(ready.status, ready.body).toBe(200);
    expect(JSON.parse(ready.body)).toEqual({ status: 'ready' });

    // The metrics token is required here as on the api.
    const refused = await http(workerPort, 'GET', '/metrics');
    expect(refused.status).toBe(401);
    expect(JSON.parse(refused.body).error.code).toBe('unauthorized');
    const metrics = await http(workerPort, 'GET', '/metrics', {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(metrics.status, metrics.body).toBe(200);
    expect(metrics.headers['content-type']).toContain('text/plain');
    for (const name of [
      'interchange_delivery_attempts_total',
      'interchange_delivery_latency_seconds',
      'interchange_delivery_queue_depth',
      'interchange_consumer_lag{group="router"',
      'interchange_process_cpu_seconds_total',
    ]) {
      expect(metrics.body, name).toContain(name);
    }

    // No API on the worker's port, and none on PORT.
    const api = await http(workerPort, 'GET', '/v1/organizations');
    expect(api.status).toBe(404);
    await expect(http(apiPort, 'GET', '/healthz', { timeoutMs: 2000 })).rejects.toThrow();

    expect((await stop(worker)).code, worker.report()).toBe(0);
    await expect(http(workerPort, 'GET', '/healthz', { timeoutMs: 2000 })).rejects.toThrow();
  }, 90_000);
});

describe('interchange secrets rotate beside running processes (requires DATABASE_URL)', () => {
  it.runIf(onPostgres)(
    'refuses while a hub runs without the new key, exiting 1 with one line, and the hub goes on serving',
    async () => {
      const db = await createTestDatabase();
      try {
        const [OLD, NEW] = [generateKey(), generateKey()];
        const port = await freePort();
        const env = (key: string) => ({
          DATABASE_URL: db.url as string,
          INTERCHANGE_SECRET_KEY: key,
          INTERCHANGE_DATA_DIR: freshDir('rotate-running'),
          PORT: String(port),
        });
        const hub = start(['start'], env(OLD));
        await waitFor200(hub, port, '/healthz', 45_000);

        const rotate = start(['secrets', 'rotate'], env(`${NEW},${OLD}`));
        const { code } = await finished(rotate, 45_000);
        expect(code, rotate.report()).toBe(1);
        const lines = rotate.stderr.trim().split('\n');
        expect(lines, rotate.report()).toHaveLength(1);
        expect(lines[0]).toContain(`do not have the new key ${keyId(parseKey(NEW))}`);
        expect(lines[0]).toContain(`:${hub.pid} (keys ${keyId(parseKey(OLD))})`);
        expect(lines[0]).toContain('nothing was changed');
        expect(rotate.stderr + rotate.stdout).not.toContain(OLD);
        expect(rotate.stderr + rotate.stdout).not.toContain(NEW);

        // The hub still opens its secrets: a token from the first admin client.
        const admin = hub.stderr.match(/client_id:\s+(\S+)[\s\S]*client_secret:\s+(\S+)/);
        const token = await fetch(`http://127.0.0.1:${port}/oauth/token`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            grant_type: 'client_credentials',
            client_id: admin?.[1],
            client_secret: admin?.[2],
          }),
        });
        expect(token.status).toBe(200);
        expect((await stop(hub)).code, hub.report()).toBe(0);
      } finally {
        await db.drop();
      }
    },
    120_000,
  );
});
