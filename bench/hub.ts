// The two processes the end-to-end and API benchmarks stand up: an `interchange start` hub on
// scratch storage with one organization and an enterprise API client (so the rate limit never
// trips), and the webhook receiver of bench/delivery (its `--receiver` mode, a process of its own).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKey } from '../src/crypto/secret-box.ts';
import { api, type Child, freePort, memoryCell, scratchPostgres, startChild, waitFor } from './lib.ts';

export type Storage = 'pglite' | 'postgres';
export const DEFAULT_SERVER = 'postgres://postgres@127.0.0.1:5432/postgres';
export const storageName = (s: Storage) => (s === 'pglite' ? 'PGlite' : 'PostgreSQL');

/** Wall-clock milliseconds with sub-millisecond resolution, comparable across our processes. */
export const now = () => performance.timeOrigin + performance.now();

/**
 * Scratch storage for a hub — a fresh PGlite directory, or a scratch database of the PostgreSQL
 * server in DATABASE_URL (default: local) — and the environment of an `interchange start` on it,
 * allowed to deliver to 127.0.0.1. `cleanup` drops the database and the directory. The hub logs at
 * `warn` (BENCH_HUB_LOG_LEVEL to change it): at the default `info` it writes two lines per request,
 * Fastify's request log, which the benchmark would otherwise measure and keep in memory.
 */
export async function hubStorage(storage: Storage) {
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'interchange-bench-'));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: String(port),
    INTERCHANGE_DATA_DIR: dataDir,
    INTERCHANGE_EGRESS_ALLOW: '127.0.0.1/32',
    LOG_LEVEL: process.env.BENCH_HUB_LOG_LEVEL ?? 'warn',
  };
  delete env.REDIS_URL;
  delete env.BENCH_PROGRESS;
  let db: Awaited<ReturnType<typeof scratchPostgres>> | undefined;
  if (storage === 'postgres') {
    db = await scratchPostgres(process.env.DATABASE_URL ?? DEFAULT_SERVER);
    env.DATABASE_URL = db.url;
    env.INTERCHANGE_SECRET_KEY = generateKey();
  } else {
    delete env.DATABASE_URL;
    delete env.INTERCHANGE_SECRET_KEY;
  }
  return {
    base: `http://127.0.0.1:${port}`,
    env,
    database: db?.name,
    async cleanup() {
      await db?.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * With the admin credentials a hub's first start printed: one organization and an enterprise
 * client (so the rate limit never trips); returns that client's access token.
 */
export async function benchToken(base: string, firstOutput: string): Promise<string> {
  const id = firstOutput.match(/client_id:\s+(\S+)/)?.[1];
  const secret = firstOutput.match(/client_secret:\s+(\S+)/)?.[1];
  if (!id || !secret) throw new Error(`no admin credentials printed:\n${firstOutput}`);
  const token = async (client_id: string, client_secret: string) =>
    (
      await api(`${base}/oauth/token`, {
        method: 'POST',
        body: JSON.stringify({ grant_type: 'client_credentials', client_id, client_secret }),
      })
    ).access_token as string;
  const adminToken = await token(id, secret);
  const org = await api(`${base}/v1/organizations`, {
    method: 'POST',
    token: adminToken,
    body: JSON.stringify({ name: 'Bench' }),
  });
  const client = await api(`${base}/v1/api-clients`, {
    method: 'POST',
    token: adminToken,
    body: JSON.stringify({ name: 'bench', organization_id: org.id, tier: 'enterprise' }),
  });
  return token(client.id, client.client_secret);
}

/**
 * Node's flags for the hub, as `npm start` gives them (package.json): a young generation of 32 MB
 * semi-spaces, so the hub's short-lived garbage is collected less often (see BENCHMARKS.md).
 */
export const HUB_NODE_FLAGS = ['--max-semi-space-size=32'];

/**
 * A hub (`interchange start`, API and worker in one) on scratch storage (see `hubStorage`);
 * `token` is an access token of an enterprise client of its one organization.
 */
export async function startHub(storage: Storage) {
  const { base, env, database, cleanup } = await hubStorage(storage);
  const child: Child = startChild([...HUB_NODE_FLAGS, 'bin/interchange.js', 'start'], env);
  const stop = async () => {
    await child.stop();
    await cleanup();
  };
  try {
    await waitFor(`${base}/healthz`, child);
    const token = await benchToken(base, child.output());
    return {
      base,
      child,
      database,
      token,
      /** "182 MiB (heap 61 MiB)": the hub process's resident memory and V8 heap now. */
      memory: () => memoryCell(child.proc.pid, base),
      /** The hub's warnings and errors so far (JSON log lines of level 40 and above). */
      logged: () =>
        child
          .output()
          .split('\n')
          .filter((l) => /"level":(40|50|60)/.test(l)),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
export type Hub = Awaited<ReturnType<typeof startHub>>;

/** One arrival at the receiver: webhook-id, when (ms, `now()`), body bytes. */
export type Arrival = [id: string, at: number, bytes: number];

/**
 * bench/delivery's receiver in a process of its own: 204 at once, records each arrival and checks
 * one signature in `sampleEvery` with the official `standardwebhooks` library.
 */
export async function startReceiver() {
  const port = await freePort();
  const env: NodeJS.ProcessEnv = { ...process.env, PORT: String(port) };
  delete env.BENCH_PROGRESS;
  const child = startChild(['--import', 'tsx', 'bench/delivery.ts', '--receiver'], env);
  const base = `http://127.0.0.1:${port}`;
  await waitFor(`${base}/count`, child);
  return {
    child,
    url: `${base}/hook`,
    async reset(secret: string, sampleEvery = 16) {
      await fetch(`${base}/reset`, { method: 'POST', body: JSON.stringify({ secret, sampleEvery }) });
    },
    count: async () => Number(await (await fetch(`${base}/count`)).text()),
    arrivals: async () =>
      (await (await fetch(`${base}/arrivals`)).json()) as {
        arrivals: Arrival[];
        verified: number;
        badSignatures: number;
      },
  };
}
export type Receiver = Awaited<ReturnType<typeof startReceiver>>;
