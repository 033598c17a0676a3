// The floors of bench/ingest (bench/floor-server.ts) store what BENCHMARKS.md says they store: they
// are the yardstick the hub's ingest is judged by, so a floor that quietly did less (or nothing)
// would make every ratio a lie. PostgreSQL only, as the floors are.
import { type ChildProcessByStdio, spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { shopifyJson, shopifyOrder, signShopifyWebhook } from '../sim/shopify.ts';
import { createTestDatabase, onPostgres, type TestDatabase } from './helpers/database.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SECRET = 'shpss_floor_test';
const SHOP = 'floor-test.myshopify.com';
// An id past 2^53, as Shopify's own examples have: the event floor must keep it exact.
const BODY = shopifyJson(shopifyOrder({ id: 820982911946154508n }));

let server: ChildProcessByStdio<null, Readable, Readable> | undefined;
let database: TestDatabase | undefined;
afterEach(async () => {
  if (server && server.exitCode === null) {
    const exited = new Promise((resolve) => server?.once('exit', resolve));
    server.kill('SIGTERM');
    await exited;
  }
  server = undefined;
  await database?.drop();
  database = undefined;
});

async function startFloor(mode: 'body' | 'event'): Promise<{ base: string; query: pg.Client }> {
  database = await createTestDatabase();
  const url = database.url as string;
  const proc = spawn(process.execPath, ['--import', 'tsx', 'bench/floor-server.ts'], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: url, FLOOR_SECRET: SECRET, FLOOR_MODE: mode, PORT: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  server = proc;
  let output = '';
  const port = await new Promise<string>((resolve, reject) => {
    const seen = (d: Buffer) => {
      output += d;
      const m = output.match(/listening (\d+)/);
      if (m?.[1]) resolve(m[1]);
    };
    proc.stdout.on('data', seen);
    proc.stderr.on('data', (d) => (output += d));
    proc.once('exit', (code) => reject(new Error(`the floor exited (${code}):\n${output}`)));
  });
  const query = new pg.Client({ connectionString: url });
  await query.connect();
  return { base: `http://127.0.0.1:${port}`, query };
}

async function send(base: string, eventId: string, secret = SECRET) {
  const signed = signShopifyWebhook({
    topic: 'orders/create',
    shopDomain: SHOP,
    body: BODY,
    secret,
    eventId,
  });
  const res = await fetch(`${base}/hooks/ins_floor`, {
    method: 'POST',
    headers: { ...signed.headers, authorization: 'Bearer not-to-be-kept' },
    body: signed.body,
  });
  return res.status;
}

describe.skipIf(!onPostgres)('bench floors (PostgreSQL only: set DATABASE_URL)', () => {
  it('the floor keeps each verified body once, byte for byte, and refuses a bad signature', async () => {
    const { base, query } = await startFloor('body');
    try {
      expect([await send(base, 'e-1'), await send(base, 'e-1'), await send(base, 'e-2', 'wrong')]).toEqual([
        200, 200, 401,
      ]);
      const { rows } = await query.query('select dedupe_key, body from floor_webhooks');
      expect(rows).toEqual([{ dedupe_key: 'e-1', body: Buffer.from(BODY) }]);
    } finally {
      await query.end();
    }
  }, 60_000);

  it('the event floor keeps the request, its canonical event (exact ids) and a log offset in one row per webhook', async () => {
    const { base, query } = await startFloor('event');
    try {
      expect([await send(base, 'e-1'), await send(base, 'e-2'), await send(base, 'e-1')]).toEqual([
        200, 200, 200,
      ]);
      expect(await send(base, 'e-3', 'wrong')).toBe(401);
      const { rows } = await query.query(
        `select dedupe_key, type, partition_key, "offset", body, headers::text as headers, data::text as data
         from floor_events order by "offset"`,
      );
      expect(rows.map((r) => [r.dedupe_key, r.type, r.partition_key, Number(r.offset)])).toEqual([
        ['e-1', 'order.created', SHOP, 0],
        ['e-2', 'order.created', SHOP, 1],
      ]);
      for (const row of rows) {
        expect(row.body).toEqual(Buffer.from(BODY));
        expect(JSON.parse(row.headers)).toMatchObject({ 'x-shopify-topic': 'orders/create' });
        expect(JSON.parse(row.headers)).not.toHaveProperty('authorization');
        expect(row.data).toContain('"820982911946154508"');
      }
    } finally {
      await query.end();
    }
  }, 60_000);
});
