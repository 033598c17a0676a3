// A database with one organization, and helpers to store events and append them to an event log
// the way ingest does (one transaction), for the event-log tests and their child processes.
import { randomBytes } from 'node:crypto';
import { sql } from 'drizzle-orm';
import pino, { type Logger } from 'pino';
import { v7 as uuidv7 } from 'uuid';
import type { Topic } from '../../src/events/types.ts';
import { newId } from '../../src/ids.ts';
import type { AppendEntry, Appended, EventLog, LogRecord } from '../../src/log/port.ts';
import { type Db, openStore, type Store } from '../../src/store/db.ts';
import { migrate } from '../../src/store/migrate.ts';
import { events, organizations } from '../../src/store/schema.ts';
import { createTestDatabase, type TestDatabase } from './database.ts';

export interface EventSpec {
  key: string;
  topic?: Topic;
}

export interface LogFixture {
  store: Store;
  database: TestDatabase;
  organizationId: string;
  logger: Logger;
  /** Unique per fixture (and per reset): lets a Kafka log use topics of its own. */
  scope: string;
  /** Stores one event per spec and appends them to `log`, in this order, in one transaction. */
  append(log: EventLog, specs: EventSpec[]): Promise<Appended[]>;
  /** Appends already stored events again, flagged as replays (as `POST /v1/events/:id/replay` does). */
  replay(log: EventLog, entries: Appended[]): Promise<Appended[]>;
  /** Empties the log and the events, and takes a new scope: a fresh start without a new database. */
  reset(): Promise<void>;
  close(): Promise<void>;
}

const TYPE_OF: Partial<Record<Topic, string>> = {
  'order-events': 'order.created',
  'customer-events': 'customer.updated',
};

/** Inserts the events of `specs` in `tx` and returns the log entries to append for them. */
export async function insertEvents(
  tx: Db,
  organizationId: string,
  specs: EventSpec[],
): Promise<AppendEntry[]> {
  const rows = specs.map((spec, i) => {
    const topic = spec.topic ?? 'order-events';
    return {
      id: uuidv7(),
      organizationId,
      installationId: null,
      source: '/api-clients/log-test',
      type: TYPE_OF[topic] ?? 'custom.log.test',
      subject: null,
      time: new Date(),
      partitionKey: spec.key,
      topic,
      userId: null,
      data: { seq: i },
      rawRequestId: null,
    };
  });
  if (rows.length > 0) await tx.insert(events).values(rows);
  return rows.map((r) => ({ eventId: r.id, topic: r.topic, partitionKey: r.partitionKey }));
}

export function testLogger(): Logger {
  return pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
}

export async function openLogFixture(): Promise<LogFixture> {
  const database = await createTestDatabase();
  const store = await openStore(database.options);
  try {
    await migrate(store);
    const organizationId = newId('organization');
    await store.db.insert(organizations).values({ id: organizationId, name: 'Log test' });
    const fixture: LogFixture = {
      store,
      database,
      organizationId,
      logger: testLogger(),
      scope: randomBytes(5).toString('hex'),
      append: (log, specs) =>
        store.db.transaction(async (tx) =>
          log.append(tx as unknown as Db, await insertEvents(tx as unknown as Db, organizationId, specs)),
        ),
      replay: (log, entries) =>
        store.db.transaction((tx) =>
          log.append(
            tx as unknown as Db,
            entries.map((e) => ({
              eventId: e.eventId,
              topic: e.topic,
              partitionKey: e.partitionKey,
              replay: true,
            })),
          ),
        ),
      async reset() {
        await store.db.execute(
          sql`truncate log_entries, log_partitions, consumer_offsets, consumer_members, events cascade`,
        );
        fixture.scope = randomBytes(5).toString('hex');
      },
      async close() {
        await store.close();
        await database.drop();
      },
    };
    return fixture;
  } catch (err) {
    await store.close();
    await database.drop();
    throw err;
  }
}

/** Waits until `done()` holds, failing with `what` after `ms`. */
export async function until(done: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A handler that keeps every record it is given, and what it saw per key. */
export function recorder() {
  const records: LogRecord[] = [];
  return {
    records,
    handler: async (batch: LogRecord[]) => {
      records.push(...batch);
    },
    ids: () => records.map((r) => r.event.id),
    has: (ids: readonly string[]) => {
      const seen = new Set(records.map((r) => r.event.id));
      return ids.every((id) => seen.has(id));
    },
    /** Event ids per partition key, in delivery order. */
    byKey: () => {
      const map = new Map<string, string[]>();
      for (const r of records)
        map.set(r.event.partitionkey, [...(map.get(r.event.partitionkey) ?? []), r.event.id]);
      return map;
    },
  };
}

/** Expected event ids per key, in append order. */
export function idsByKey(appended: readonly Appended[]): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (const a of appended) map.set(a.partitionKey, [...(map.get(a.partitionKey) ?? []), a.eventId]);
  return map;
}

/** True when, in each topic/partition, the records' offsets only go up (no reordering, no repeat). */
export function offsetsIncrease(records: readonly LogRecord[]): boolean {
  const last = new Map<string, number>();
  for (const r of records) {
    const key = `${r.topic}/${r.partition}`;
    if ((last.get(key) ?? -1) >= r.offset) return false;
    last.set(key, r.offset);
  }
  return true;
}
