// The baseline of bench/ingest and bench/api: bare Fastify routes with none of the hub's work. The
// POST only parses the same JSON body and answers 200: whatever the hub does beyond it (verify,
// dedupe, normalize, commit) is the cost. The GETs answer, from memory, the very bodies the hub
// answered (BARE_FIXTURES, a JSON file { events, user }): the hub's extra is auth, rate limit, query.
import { readFileSync } from 'node:fs';
import Fastify from 'fastify';

const fixtures = process.env.BARE_FIXTURES
  ? (JSON.parse(readFileSync(process.env.BARE_FIXTURES, 'utf8')) as { events: unknown; user: unknown })
  : { events: { data: [], has_more: false, next_cursor: null }, user: {} };

const app = Fastify({ logger: false, bodyLimit: 1024 * 1024 });
app.post('/hooks/:target', async (req) => ({ status: 'accepted', received: typeof req.body === 'object' }));
app.get('/v1/events', async () => fixtures.events);
app.get('/v1/users/:id', async () => fixtures.user);
await app.listen({ port: Number(process.env.PORT ?? 0), host: '127.0.0.1' });
process.stdout.write(`listening ${(app.server.address() as { port: number }).port}\n`);
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
