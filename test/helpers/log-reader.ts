// A consumer-group member in its own process, for test/log-postgres.test.ts: reads a group of the
// Postgres log at LOG_READER_URL and prints each record as a JSON line; stops cleanly on SIGTERM.
import { createPostgresLog } from '../../src/log/postgres.ts';
import { openStore } from '../../src/store/db.ts';
import { testLogger } from './log-fixture.ts';

const url = process.env.LOG_READER_URL;
const group = process.env.LOG_READER_GROUP ?? 'log-reader';
if (!url) throw new Error('LOG_READER_URL is not set');

const store = await openStore({ kind: 'postgres', url, poolSize: 3 });
const log = createPostgresLog({ db: store.db, logger: testLogger() });
const print = (line: unknown) => process.stdout.write(`${JSON.stringify(line)}\n`);

const consumer = log.consume({
  group,
  topics: ['order-events', 'customer-events'],
  pollMs: 20,
  leaseMs: 2000,
  batchSize: 7,
  handler: async (records) => {
    for (const r of records) {
      print({
        id: r.event.id,
        key: r.event.partitionkey,
        topic: r.topic,
        partition: r.partition,
        offset: r.offset,
      });
    }
  },
});

const ready = setInterval(() => {
  if (consumer.assignment().length > 0) {
    clearInterval(ready);
    print({ ready: true, member: consumer.memberId });
  }
}, 20);

process.on('SIGTERM', async () => {
  clearInterval(ready);
  await log.close();
  await store.close();
  process.exit(0);
});
