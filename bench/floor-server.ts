// The floors of bench/ingest: the least a durable, verified, de-duplicated webhook ingest must do,
// with none of the hub's other work. A Fastify route takes the raw body, checks the Shopify HMAC,
// parses the JSON and answers 200 only after what it keeps is committed to PostgreSQL
// (DATABASE_URL), concurrent requests sharing a transaction (group commit, as the hub does).
//
// - `FLOOR_MODE=body` (the floor): one row per webhook, the body, in one table whose only index is
//   the de-duplication key. No tenancy, no event model, no log, no schema checks.
// - `FLOOR_MODE=event` (the event floor): what issue #3 asks of every webhook, done as cheaply as
//   we know how, whatever the hub's own design: the body parsed with its ids kept exact and
//   normalized by the hub's Shopify connector (payload schema included) into its canonical event,
//   then the raw request (headers and body) and the event (its data as `json`) kept in ONE row per
//   webhook, keyed by the de-duplication key, with one more index (the event's id) and a log
//   offset taken from one counter row per batch (the log's per-partition order: docs/architecture.md).
//   No tenancy lookup, no user resolution, no canonical re-check, no separate log or dedupe table,
//   no index for the Events API's filters, no foreign keys.
//
// The hub's ratio to these floors is its own overhead; the floors' ratio to the bare route is what
// the machine leaves to any implementation.
import { createHmac, timingSafeEqual } from 'node:crypto';
import Fastify from 'fastify';
import pg from 'pg';
import type { InboundRequest } from '../src/connectors/sdk.ts';
import shopify from '../src/connectors/shopify/index.ts';
import { parseShopifyJson } from '../src/connectors/shopify/json.ts';
import { uuidv7 } from '../src/ids.ts';

const SECRET = process.env.FLOOR_SECRET ?? '';
const MODE = process.env.FLOOR_MODE === 'event' ? 'event' : 'body';
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 4 });
await pool.query(
  MODE === 'body'
    ? 'create table if not exists floor_webhooks (dedupe_key text primary key, body bytea not null)'
    : `create table if not exists floor_events (dedupe_key text primary key, headers json not null,
         body bytea not null, event_id text not null, type text not null, partition_key text not null,
         "offset" bigint not null, data json not null);
       create index if not exists floor_events_event_idx on floor_events (event_id);
       create table if not exists floor_log (id int primary key, next bigint not null);
       insert into floor_log values (1, 0) on conflict do nothing`,
);

interface Waiter {
  key: string;
  body: Buffer;
  /** The event floor's: the kept headers, the event's id, type, partition key and data (JSON text). */
  event?: { headers: string; id: string; type: string; partitionKey: string; data: Buffer };
  done: (err?: Error) => void;
}
let queue: Waiter[] = [];
let flushing = 0;
/** Transactions committing at once: two, as the hub's committer. */
const MAX_IN_FLIGHT = 2;

/** The batch's statement: the bulky values in one binary parameter, sliced by offset and length. */
function statement(batch: Waiter[]): pg.QueryConfig {
  const parts: Buffer[] = [];
  let at = 0;
  const slice = (bytes: Buffer) => {
    parts.push(bytes);
    at += bytes.length;
    return [at - bytes.length, bytes.length] as const;
  };
  if (MODE === 'body') {
    const offsets: number[] = [];
    const lengths: number[] = [];
    for (const w of batch) {
      const [o, l] = slice(w.body);
      offsets.push(o);
      lengths.push(l);
    }
    return {
      name: 'floor_insert',
      text: `insert into floor_webhooks (dedupe_key, body)
             select k, substring($2::bytea from o + 1 for l)
             from unnest($1::text[], $3::int[], $4::int[]) as t(k, o, l)
             on conflict (dedupe_key) do nothing`,
      values: [batch.map((w) => w.key), Buffer.concat(parts, at), offsets, lengths],
    };
  }
  const cols = { bo: [] as number[], bl: [] as number[], dof: [] as number[], dl: [] as number[] };
  for (const w of batch) {
    const [bo, bl] = slice(w.body);
    const [dof, dl] = slice(w.event?.data ?? Buffer.alloc(0));
    cols.bo.push(bo);
    cols.bl.push(bl);
    cols.dof.push(dof);
    cols.dl.push(dl);
  }
  const ev = batch.map((w) => w.event);
  return {
    name: 'floor_event_insert',
    text: `with blob as not materialized (select $1::bytea as b),
           log as (update floor_log set next = next + $2 where id = 1 returning next - $2 as first)
           insert into floor_events (dedupe_key, headers, body, event_id, type, partition_key, "offset", data)
           select t.k, t.h::json, substring(blob.b from t.bo + 1 for t.bl), t.id, t.ty, t.pk,
             log.first + t.n - 1, convert_from(substring(blob.b from t.dof + 1 for t.dl), 'UTF8')::json
           from unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int[], $9::int[],
                       $10::int[], $11::int[]) with ordinality as t(k, h, id, ty, pk, bo, bl, dof, dl, n)
           cross join blob cross join log
           on conflict (dedupe_key) do nothing`,
    values: [
      Buffer.concat(parts, at),
      batch.length,
      batch.map((w) => w.key),
      ev.map((e) => e?.headers),
      ev.map((e) => e?.id),
      ev.map((e) => e?.type),
      ev.map((e) => e?.partitionKey),
      cols.bo,
      cols.bl,
      cols.dof,
      cols.dl,
    ],
  };
}

/** Commits what is queued in one statement; another flush starts as soon as one ends. */
function flush(): void {
  if (flushing >= MAX_IN_FLIGHT || queue.length === 0) return;
  const batch = queue;
  queue = [];
  flushing++;
  pool
    .query(statement(batch))
    .then(
      () => {
        for (const w of batch) w.done();
      },
      (err: Error) => {
        for (const w of batch) w.done(err);
      },
    )
    .finally(() => {
      flushing--;
      flush();
    });
}

const ctx = { installationId: 'ins_floor', config: { shopDomain: '' }, secrets: {}, now: new Date() };

/** The event floor's work on a verified webhook: parse, normalize, stringify. */
function toEvent(raw: Buffer, headers: Record<string, string>): NonNullable<Waiter['event']> {
  const req: InboundRequest = { method: 'POST', url: '', headers, rawBody: raw, receivedAt: new Date() };
  const payload = parseShopifyJson(raw);
  const inbound = shopify.inbound;
  if (!inbound) throw new Error('the Shopify connector receives no webhooks');
  const [draft] = inbound.normalize(req, payload, ctx);
  if (!draft) throw new Error('no event');
  return {
    headers: JSON.stringify(headers),
    id: uuidv7(),
    type: draft.type,
    partitionKey: headers['x-shopify-shop-domain'] ?? '',
    data: Buffer.from(JSON.stringify(draft.data), 'utf8'),
  };
}

const app = Fastify({ logger: false, bodyLimit: 1024 * 1024 });
app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
app.post('/hooks/:target', async (req, reply) => {
  const raw = req.body as Buffer;
  const given = Buffer.from(String(req.headers['x-shopify-hmac-sha256'] ?? ''), 'base64');
  const expected = createHmac('sha256', SECRET).update(raw).digest();
  if (given.length !== expected.length || !timingSafeEqual(given, expected))
    return reply.code(401).send({ error: 'invalid_signature' });
  const key = String(req.headers['x-shopify-event-id'] ?? req.headers['x-shopify-webhook-id']);
  let event: Waiter['event'];
  if (MODE === 'body') JSON.parse(raw.toString('utf8'));
  else {
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(req.headers))
      if (typeof value === 'string' && name !== 'authorization') headers[name] = value;
    event = toEvent(raw, headers);
  }
  await new Promise<void>((resolve, reject) => {
    queue.push({ key, body: raw, event, done: (err) => (err ? reject(err) : resolve()) });
    flush();
  });
  return { status: 'accepted' };
});
await app.listen({ port: Number(process.env.PORT ?? 0), host: '127.0.0.1' });
process.stdout.write(`listening ${(app.server.address() as { port: number }).port}\n`);
process.on('SIGTERM', () => void app.close().then(() => pool.end().then(() => process.exit(0))));
