// The one-statement group commit against a real database (PGlite, or PostgreSQL with
// DATABASE_URL): offsets contiguous and in submission order per partition while batches race each
// other and the log's own `append`, first-of-key wins within a batch and across batches, users
// resolved, duplicates answered with the first delivery's events.
import { asc, eq, inArray } from 'drizzle-orm';
import pino from 'pino';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../../test/helpers/database.ts';
import type { Topic } from '../events/types.ts';
import { createPostgresLog } from '../log/postgres.ts';
import { type Db, openStore, type Store } from '../store/db.ts';
import { migrate } from '../store/migrate.ts';
import {
  dedupeKeys,
  events,
  inboundRequests,
  logEntries,
  organizations,
  userExternalIds,
  users,
} from '../store/schema.ts';
import { createCommitter, type IngestItem } from './committer.ts';

let database: TestDatabase;
let store: Store;
const logger = pino({ level: 'silent' });

beforeAll(async () => {
  database = await createTestDatabase();
  store = await openStore(database.options);
  await migrate(store);
  await store.db.insert(organizations).values({ id: 'org_1', name: 'Acme' });
  await store.db.insert(users).values({ id: 'usr_ada', organizationId: 'org_1', email: 'ada@example.com' });
  await store.db
    .insert(userExternalIds)
    .values({ userId: 'usr_ada', organizationId: 'org_1', platform: 'shopify', externalId: '7302' });
});

afterAll(async () => {
  await store?.close();
  await database?.drop();
});

let n = 0;
function item(
  key: string | null,
  partitionKey: string,
  customer?: string,
  account = partitionKey,
): IngestItem {
  const i = n++;
  return {
    organizationId: 'org_1',
    installationId: 'ins_1',
    scope: 'ins_1',
    dedupeKey: key,
    requestId: `req_${i}`,
    request: {
      method: 'POST',
      path: '/hooks/ins_1',
      headers: { 'x-test': String(i) },
      body: Buffer.from([0, 1, 2, 255, i % 256]),
      receivedAt: new Date(),
    },
    status: 'accepted',
    events: [
      {
        id: uuidv7(),
        source: '/installations/ins_1',
        type: 'order.created',
        subject: null,
        time: new Date(),
        partitionKey,
        topic: 'order-events' as Topic,
        userId: null,
        customer: customer ? { platform: 'shopify', account, externalId: customer } : undefined,
        data: { order_id: String(i) },
      },
    ],
  };
}

describe('one-statement group commit', () => {
  it('keeps every partition contiguous and in order while batches race each other and append', async () => {
    const log = createPostgresLog({ db: store.db, logger });
    const committer = createCommitter({ store, log, logger, concurrency: 3, maxBatch: 16 });
    const keys = ['shop-a', 'shop-b', 'shop-c', 'shop-d', 'shop-e'];
    const items = Array.from({ length: 300 }, (_, i) => item(`k${i}`, keys[i % keys.length] as string));
    const submitted = items.map((it) => committer.submit(it));
    // The log's own append (replays, delivery's operational events) takes the same locks meanwhile.
    const appends = Array.from({ length: 20 }, async (_, i) => {
      const id = uuidv7();
      await store.db.transaction(async (tx) => {
        await tx.insert(events).values({
          id,
          organizationId: 'org_1',
          source: '/test',
          type: 'order.created',
          time: new Date(),
          partitionKey: keys[i % keys.length] as string,
          topic: 'order-events',
          data: {},
        });
        await log.append(tx as unknown as Db, [
          { eventId: id, topic: 'order-events', partitionKey: keys[i % keys.length] as string },
        ]);
      });
    });
    const outcomes = await Promise.all(submitted);
    await Promise.all(appends);
    expect(outcomes.every((o) => o.status === 'accepted')).toBe(true);

    const rows = await store.db
      .select()
      .from(logEntries)
      .orderBy(asc(logEntries.topic), asc(logEntries.partition), asc(logEntries.offset));
    expect(rows).toHaveLength(320);
    const byPartition = new Map<number, number[]>();
    for (const r of rows)
      byPartition.set(r.partition, [...(byPartition.get(r.partition) ?? []), Number(r.offset)]);
    for (const offsets of byPartition.values()) expect(offsets).toEqual(offsets.map((_, i) => i));
    expect(new Set(rows.map((r) => r.eventId)).size).toBe(320);
  });

  it("appends a key's events in the order they were answered", async () => {
    const log = createPostgresLog({ db: store.db, logger });
    const committer = createCommitter({ store, log, logger });
    // Requests that race have no order of their own; one sent after another's answer comes after it.
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) {
      const batch = [item(`seq-${i}-a`, 'shop-seq'), item(`seq-${i}-b`, 'shop-seq')];
      await Promise.all(batch.map((it) => committer.submit(it)));
      ids.push(...batch.map((it) => it.events[0]?.id as string));
    }
    const rows = await store.db
      .select({ eventId: logEntries.eventId, offset: logEntries.offset, partition: logEntries.partition })
      .from(logEntries)
      .where(inArray(logEntries.eventId, ids))
      .orderBy(asc(logEntries.offset));
    expect(new Set(rows.map((r) => r.partition)).size).toBe(1);
    expect(rows.map((r) => r.eventId)).toEqual(ids);
  });

  it("resolves a customer id in the event's account, else the id given without account", async () => {
    const log = createPostgresLog({ db: store.db, logger });
    const committer = createCommitter({ store, log, logger });
    await store.db.insert(users).values([
      { id: 'usr_a12', organizationId: 'org_1' },
      { id: 'usr_b12', organizationId: 'org_1' },
      { id: 'usr_any12', organizationId: 'org_1' },
      { id: 'usr_a13', organizationId: 'org_1' },
    ]);
    const link = (userId: string, account: string, externalId: string) =>
      ({ userId, organizationId: 'org_1', platform: 'shopify', account, externalId }) as const;
    await store.db
      .insert(userExternalIds)
      .values([
        link('usr_a12', 'a.example', '12'),
        link('usr_b12', 'b.example', '12'),
        link('usr_any12', '', '12'),
        link('usr_a13', 'a.example', '13'),
      ]);
    const sent = [
      item(null, 'accounts', '12', 'a.example'),
      item(null, 'accounts', '12', 'b.example'),
      item(null, 'accounts', '12', 'c.example'),
      item(null, 'accounts', '13', 'b.example'),
    ];
    await Promise.all(sent.map((it) => committer.submit(it)));
    const stored = await store.db.select().from(events).where(eq(events.partitionKey, 'accounts'));
    const userOf = (it: IngestItem) => stored.find((e) => e.id === it.events[0]?.id)?.userId;
    // Store c has no id 12 of its own: the id without account stands for it. Store b's customer 13
    // is nobody's: store a's customer 13 is another person.
    expect(sent.map(userOf)).toEqual(['usr_a12', 'usr_b12', 'usr_any12', null]);
  });

  it('takes the first of a key, resolves users and answers duplicates with the first events', async () => {
    const log = createPostgresLog({ db: store.db, logger });
    const committer = createCommitter({ store, log, logger });
    const first = item('dup-1', 'shop-z', '7302');
    const again = {
      ...item('dup-1', 'shop-z'),
      events: [{ ...(first.events[0] as IngestItem['events'][0]), id: uuidv7() }],
    };
    const unkeyed = item(null, 'shop-z', 'no-such-customer');
    const [a, b, c] = await Promise.all([first, again, unkeyed].map((it) => committer.submit(it)));
    expect(a).toEqual({ status: 'accepted', requestId: first.requestId, eventIds: [first.events[0]?.id] });
    expect(b).toEqual({ status: 'duplicate', requestId: first.requestId, eventIds: [first.events[0]?.id] });
    expect(c?.status).toBe('accepted');
    // A later batch with the same key: a duplicate too.
    const later = await committer.submit(item('dup-1', 'shop-z'));
    expect(later).toEqual({
      status: 'duplicate',
      requestId: first.requestId,
      eventIds: [first.events[0]?.id],
    });

    const stored = await store.db.select().from(events).where(eq(events.partitionKey, 'shop-z'));
    expect(stored.map((e) => e.id).sort()).toEqual([first.events[0]?.id, unkeyed.events[0]?.id].sort());
    expect(stored.find((e) => e.id === first.events[0]?.id)?.userId).toBe('usr_ada');
    expect(stored.find((e) => e.id === unkeyed.events[0]?.id)?.userId).toBeNull();

    const requests = await store.db
      .select()
      .from(inboundRequests)
      .where(eq(inboundRequests.dedupeKey, 'dup-1'));
    const byId = new Map(requests.map((r) => [r.id, r]));
    expect(byId.get(first.requestId)).toMatchObject({ status: 'accepted', eventCount: 1, bodySize: 5 });
    expect(byId.get(first.requestId)?.body).toEqual(first.request?.body);
    expect(byId.get(first.requestId)?.headers).toEqual(first.request?.headers);
    expect(byId.get(again.requestId)).toMatchObject({ status: 'duplicate', eventCount: 0, body: null });
    const [key] = await store.db.select().from(dedupeKeys).where(eq(dedupeKeys.key, 'dup-1'));
    expect(key).toMatchObject({ requestId: first.requestId, eventIds: [first.events[0]?.id] });
  });

  it('answers a duplicate of a request that made several events with all of them, in order', async () => {
    const log = createPostgresLog({ db: store.db, logger });
    const committer = createCommitter({ store, log, logger });
    const base = item('multi-1', 'shop-m');
    const event = base.events[0] as IngestItem['events'][0];
    // Ids out of their sort order: the answer keeps the order the first delivery gave.
    const ids = [uuidv7(), uuidv7(), uuidv7()].reverse();
    const first = { ...base, events: ids.map((id) => ({ ...event, id })) };
    expect(await committer.submit(first)).toEqual({
      status: 'accepted',
      requestId: first.requestId,
      eventIds: ids,
    });
    const again = { ...item('multi-1', 'shop-m'), events: [{ ...event, id: uuidv7() }] };
    expect(await committer.submit(again)).toEqual({
      status: 'duplicate',
      requestId: first.requestId,
      eventIds: ids,
    });
  });

  it('keeps a rejected request for debugging, without events', async () => {
    const log = createPostgresLog({ db: store.db, logger });
    const committer = createCommitter({ store, log, logger });
    const bad: IngestItem = { ...item(null, 'shop-r'), status: 'rejected', errorCode: 'payload_invalid' };
    expect(await committer.submit(bad)).toEqual({ status: 'rejected', requestId: bad.requestId });
    const [row] = await store.db.select().from(inboundRequests).where(eq(inboundRequests.id, bad.requestId));
    expect(row).toMatchObject({ status: 'rejected', errorCode: 'payload_invalid', eventCount: 0 });
    expect(row?.body).toEqual(bad.request?.body);
    expect(await store.db.select().from(events).where(eq(events.partitionKey, 'shop-r'))).toEqual([]);
  });
});
