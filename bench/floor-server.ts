// The floor of bench/ingest: the least any durable, verified, de-duplicated webhook ingest must do,
// with none of the hub's other work. A Fastify route takes the raw body, checks the Shopify HMAC,
// parses the JSON and answers 200 only after the body is committed to PostgreSQL (DATABASE_URL):
// one row per webhook in one table whose only index is the de-duplication key, concurrent requests
// sharing a transaction (group commit, as the hub does). No tenancy, no event model, no log, no
// schema checks. The hub's ratio to this floor is its own overhead; the floor's ratio to the bare
// route is what the machine leaves to any implementation.
import { createHmac, timingSafeEqual } from 'node:crypto';
import Fastify from 'fastify';
import pg from 'pg';

const SECRET = process.env.FLOOR_SECRET ?? '';
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 4 });
await pool.query(
  'create table if not exists floor_webhooks (dedupe_key text primary key, body bytea not null)',
);

interface Waiter {
  key: string;
  body: Buffer;
  done: (err?: Error) => void;
}
let queue: Waiter[] = [];
let flushing = 0;
/** Transactions committing at once: two, as the hub's committer. */
const MAX_IN_FLIGHT = 2;

/** Commits what is queued in one statement; another flush starts as soon as one ends. */
function flush(): void {
  if (flushing >= MAX_IN_FLIGHT || queue.length === 0) return;
  const batch = queue;
  queue = [];
  flushing++;
  const offsets: number[] = [];
  let at = 0;
  for (const w of batch) {
    offsets.push(at);
    at += w.body.length;
  }
  const lengths = batch.map((w) => w.body.length);
  pool
    .query({
      name: 'floor_insert',
      text: `insert into floor_webhooks (dedupe_key, body)
             select k, substring($2::bytea from o + 1 for l)
             from unnest($1::text[], $3::int[], $4::int[]) as t(k, o, l)
             on conflict (dedupe_key) do nothing`,
      values: [batch.map((w) => w.key), Buffer.concat(batch.map((w) => w.body)), offsets, lengths],
    })
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

const app = Fastify({ logger: false, bodyLimit: 1024 * 1024 });
app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
app.post('/hooks/:target', async (req, reply) => {
  const raw = req.body as Buffer;
  const given = Buffer.from(String(req.headers['x-shopify-hmac-sha256'] ?? ''), 'base64');
  const expected = createHmac('sha256', SECRET).update(raw).digest();
  if (given.length !== expected.length || !timingSafeEqual(given, expected))
    return reply.code(401).send({ error: 'invalid_signature' });
  JSON.parse(raw.toString('utf8'));
  const key = String(req.headers['x-shopify-event-id'] ?? req.headers['x-shopify-webhook-id']);
  await new Promise<void>((resolve, reject) => {
    queue.push({ key, body: raw, done: (err) => (err ? reject(err) : resolve()) });
    flush();
  });
  return { status: 'accepted' };
});
await app.listen({ port: Number(process.env.PORT ?? 0), host: '127.0.0.1' });
process.stdout.write(`listening ${(app.server.address() as { port: number }).port}\n`);
process.on('SIGTERM', () => void app.close().then(() => pool.end().then(() => process.exit(0))));
