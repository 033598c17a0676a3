// The baseline of bench/ingest: a bare Fastify route that only parses the same JSON body and
// answers 200. Whatever the hub does beyond this (verify, dedupe, normalize, commit) is the cost.
import Fastify from 'fastify';

const app = Fastify({ logger: false, bodyLimit: 1024 * 1024 });
app.post('/hooks/:target', async (req) => ({ status: 'accepted', received: typeof req.body === 'object' }));
await app.listen({ port: Number(process.env.PORT ?? 0), host: '127.0.0.1' });
process.stdout.write(`listening ${(app.server.address() as { port: number }).port}\n`);
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
