// The EventLog contract: one suite every implementation must pass (postgres.ts on PGlite and
// PostgreSQL, kafka.ts with a broker). Each test starts from an empty log; records are matched by event id.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Appended, Consumer, ConsumerOptions, EventLog } from '../../src/log/port.ts';
import {
  type EventSpec,
  idsByKey,
  type LogFixture,
  offsetsIncrease,
  openLogFixture,
  recorder,
  sleep,
  until,
} from './log-fixture.ts';

export interface ContractOptions {
  /** The lease given to consumers in the takeover test. */
  leaseMs: number;
  /** How soon a silent member's partitions must be handled by another member. */
  takeoverMs: number;
  /** How long appended records may take to reach a consumer. */
  waitMs: number;
  /** How long to watch for records that must not come (re-deliveries). */
  settleMs: number;
  pollMs?: number;
}

/** Builds the log under test on the fixture's database; called again for a "new process". */
export type MakeLog = (fixture: LogFixture) => EventLog;

const keys = (n: number, prefix = 'shop') =>
  Array.from({ length: n }, (_, i) => `${prefix}-${i}.myshopify.com`);

export function eventLogContract(name: string, makeLog: MakeLog, options: ContractOptions): void {
  const { waitMs, pollMs = 20 } = options;
  const testMs = waitMs * 3 + options.takeoverMs + 30_000;

  describe(name, () => {
    let f: LogFixture;
    let logs: EventLog[] = [];
    let consumers: Consumer[] = [];
    let release: () => void = () => {};

    // One database for the suite, emptied after each test (a fresh one per test costs seconds on PGlite).
    beforeAll(async () => {
      f = await openLogFixture();
    }, 60_000);
    afterEach(async () => {
      release();
      await Promise.allSettled(consumers.map((c) => c.stop()));
      for (const log of logs) await log.close();
      logs = [];
      consumers = [];
      await f.reset();
    }, 60_000);
    afterAll(() => f?.close(), 60_000);

    const open = () => {
      const log = makeLog(f);
      logs.push(log);
      return log;
    };
    const consume = (log: EventLog, o: Omit<ConsumerOptions, 'topics'> & Partial<ConsumerOptions>) => {
      const c = log.consume({ topics: ['order-events'], pollMs, ...o });
      consumers.push(c);
      return c;
    };
    const append = async (log: EventLog, rounds: EventSpec[][]) => {
      const all: Appended[] = [];
      for (const specs of rounds) all.push(...(await f.append(log, specs)));
      return all;
    };

    it(
      'delivers a partition in offset order, with the CloudEvents envelope',
      async () => {
        const log = open();
        const key = 'acme-store.myshopify.com';
        const appended = await append(
          log,
          [0, 1, 2].map(() => Array(4).fill({ key })),
        );
        expect(new Set(appended.map((a) => a.partition)).size).toBe(1);
        expect(appended.map((a) => a.offset)).toEqual(appended.map((_, i) => (appended[0]?.offset ?? 0) + i));
        const r = recorder();
        consume(log, { group: 'reader', handler: r.handler });
        await until(() => r.has(appended.map((a) => a.eventId)), waitMs, 'all 12 records');
        expect(r.ids()).toEqual(appended.map((a) => a.eventId));
        expect(offsetsIncrease(r.records)).toBe(true);
        expect(new Set(r.records.map((x) => x.partition)).size).toBe(1);
        for (const x of r.records) {
          expect(x).toMatchObject({ topic: 'order-events', replay: false });
          expect(x.event).toMatchObject({
            specversion: '1.0',
            type: 'order.created',
            partitionkey: key,
            organization: f.organizationId,
          });
        }
      },
      testMs,
    );

    it(
      'reads what this process committed when told so, not at its next poll',
      async () => {
        const log = open();
        const r = recorder();
        // A poll interval far longer than the wait: only the wake-up can bring the record in time.
        const c = consume(log, { group: 'woken', pollMs: 10 * 60_000, handler: r.handler });
        await until(() => c.assignment().length > 0, waitMs, 'partitions assigned');
        await sleep(100);
        const appended = await append(log, [[{ key: 'acme-store.myshopify.com' }]]);
        log.committed();
        await until(() => r.has(appended.map((a) => a.eventId)), waitMs, 'the record, on wake-up');
      },
      testMs,
    );

    it(
      'reads a backlog larger than a batch in full after one wake-up',
      async () => {
        const log = open();
        const r = recorder();
        // The first poll fills its batch: the next must follow at once, not after the interval.
        const c = consume(log, { group: 'backlog', pollMs: 10 * 60_000, batchSize: 2, handler: r.handler });
        await until(() => c.assignment().length > 0, waitMs, 'partitions assigned');
        await sleep(100);
        const key = 'acme-store.myshopify.com';
        const appended = await append(log, [[{ key }, { key }, { key }, { key }, { key }]]);
        log.committed();
        await until(() => r.has(appended.map((a) => a.eventId)), waitMs, 'all five records, on one wake-up');
      },
      testMs,
    );

    it(
      'keeps per-key order across many keys, topics and transactions',
      async () => {
        const log = open();
        const ks = keys(24);
        let seed = 7;
        const shuffled = () =>
          [...ks].sort(() => {
            seed = (seed * 1103515245 + 12345) % 2 ** 31;
            return (seed % 3) - 1;
          });
        const rounds = Array.from({ length: 8 }, (_, round) =>
          shuffled().flatMap((key) => {
            // Order is per key within a topic: each key keeps to one topic.
            const topic = ks.indexOf(key) % 2 ? ('customer-events' as const) : ('order-events' as const);
            return round === 3
              ? [
                  { key, topic },
                  { key, topic },
                ]
              : [{ key, topic }];
          }),
        );
        const appended = await append(log, rounds);
        const r = recorder();
        consume(log, {
          group: 'ordered',
          topics: ['order-events', 'customer-events'],
          batchSize: 5,
          handler: r.handler,
        });
        await until(() => r.has(appended.map((a) => a.eventId)), waitMs, `all ${appended.length} records`);
        expect(r.records).toHaveLength(appended.length);
        expect(offsetsIncrease(r.records)).toBe(true);
        const expected = idsByKey(appended);
        expect(expected.size).toBe(24);
        for (const [key, ids] of expected) expect(r.byKey().get(key), key).toEqual(ids);
      },
      testMs,
    );

    it(
      'splits the partitions between two members of a group, and every record is handled',
      async () => {
        const log = open();
        const r1 = recorder();
        const r2 = recorder();
        const c1 = consume(log, { group: 'split', handler: r1.handler, batchSize: 3 });
        const c2 = consume(log, { group: 'split', handler: r2.handler, batchSize: 3 });
        await until(
          () => {
            const a = c1.assignment();
            const b = c2.assignment();
            return a.length > 0 && b.length > 0 && !a.some((p) => b.includes(p));
          },
          waitMs + options.takeoverMs,
          'two members with disjoint, non-empty assignments',
        );
        const appended = await append(
          log,
          [0, 1, 2].map(() => keys(40).map((key) => ({ key }))),
        );
        const ids = appended.map((a) => a.eventId);
        await until(
          () => ids.every((id) => r1.ids().includes(id) || r2.ids().includes(id)),
          waitMs,
          'every record',
        );
        expect(r1.records.length).toBeGreaterThan(0);
        expect(r2.records.length).toBeGreaterThan(0);
        const partitionsOf = (rec: typeof r1) => new Set(rec.records.map((x) => `${x.topic}/${x.partition}`));
        const shared = [...partitionsOf(r1)].filter((p) => partitionsOf(r2).has(p));
        expect(shared, 'a stable group never gives one partition to both').toEqual([]);
      },
      testMs,
    );

    it(
      "hands a silent member's partitions to another member, re-delivering what it had not committed",
      async () => {
        const log = open();
        const stuck: typeof r.records = [];
        const r = recorder();
        const wedged = new Promise<void>((resolve) => {
          release = resolve;
        });
        // A member whose handler never returns: it never commits, and past maxPollIntervalMs it no
        // longer heartbeats (so the takeover may take maxPollIntervalMs plus a lease).
        const a = consume(log, {
          group: 'takeover',
          leaseMs: options.leaseMs,
          maxPollIntervalMs: options.leaseMs,
          handler: async (records) => {
            stuck.push(...records);
            await wedged;
          },
        });
        await until(() => a.assignment().length > 0, waitMs, 'the first member to join');
        const appended = await append(log, [Array(6).fill({ key: 'wedged.myshopify.com' })]);
        await until(() => stuck.length > 0, waitMs, 'the first member to take a batch');
        const since = Date.now();
        consume(log, { group: 'takeover', leaseMs: options.leaseMs, handler: r.handler });
        const ids = appended.map((x) => x.eventId);
        await until(() => r.has(ids), options.takeoverMs + waitMs, 'the second member to get every record');
        expect(Date.now() - since).toBeLessThan(options.takeoverMs);
        expect(r.ids().slice(0, ids.length)).toEqual(ids);
        expect(stuck.map((x) => x.event.id)).toEqual(ids.slice(0, stuck.length));
        const more = await append(log, [[{ key: 'wedged.myshopify.com' }]]);
        await until(() => r.has(more.map((x) => x.eventId)), waitMs, 'a later record');
      },
      testMs,
    );

    it(
      'keeps committed offsets for a new consumer of the same group',
      async () => {
        const first = open();
        const before = await append(first, [
          keys(5).map((key) => ({ key })),
          keys(5).map((key) => ({ key })),
        ]);
        const r1 = recorder();
        const c1 = consume(first, { group: 'durable', handler: r1.handler });
        await until(() => r1.has(before.map((a) => a.eventId)), waitMs, 'the first records');
        await c1.stop();
        await first.close();
        logs = logs.filter((l) => l !== first);

        const second = open();
        const after = await append(second, [keys(5).map((key) => ({ key }))]);
        const r2 = recorder();
        consume(second, { group: 'durable', handler: r2.handler });
        await until(() => r2.has(after.map((a) => a.eventId)), waitMs, 'the new records');
        await sleep(options.settleMs);
        expect(r2.ids().sort()).toEqual(after.map((a) => a.eventId).sort());
      },
      testMs,
    );

    it(
      'gives every group everything',
      async () => {
        const log = open();
        const appended = await append(log, [
          keys(10).map((key) => ({ key })),
          keys(10).map((key) => ({ key })),
        ]);
        const ids = appended.map((a) => a.eventId);
        const g1 = recorder();
        const g2 = recorder();
        consume(log, { group: 'router', handler: g1.handler });
        consume(log, { group: 'notifier', handler: g2.handler });
        await until(() => g1.has(ids) && g2.has(ids), waitMs, 'both groups to see every record');
        expect(g1.ids().sort()).toEqual([...ids].sort());
        expect(g2.ids().sort()).toEqual([...ids].sort());
      },
      testMs,
    );

    it(
      'flags replayed entries',
      async () => {
        const log = open();
        const [original] = await f.append(log, [{ key: 'replayed.myshopify.com' }]);
        if (!original) throw new Error('nothing appended');
        const [again] = await f.replay(log, [original]);
        expect(again).toMatchObject({
          eventId: original.eventId,
          replay: true,
          partition: original.partition,
        });
        const r = recorder();
        consume(log, { group: 'replays', handler: r.handler });
        await until(() => r.records.length >= 2, waitMs, 'the event and its replay');
        expect(r.records.map((x) => [x.event.id, x.replay])).toEqual([
          [original.eventId, false],
          [original.eventId, true],
        ]);
      },
      testMs,
    );

    it(
      'reports as lag what a group has not committed',
      async () => {
        const log = open();
        const lagOf = async (group: string) =>
          (await log.lag()).find((row) => row.group === group && row.topic === 'order-events')?.lag;
        const first = await append(log, [keys(3).map((key) => ({ key }))]);
        const r = recorder();
        const c = consume(log, { group: 'lagging', handler: r.handler });
        await until(() => r.has(first.map((a) => a.eventId)), waitMs, 'the first records');
        await c.stop();
        await until(async () => (await lagOf('lagging')) === 0, waitMs, 'lag 0 once all is committed');
        const later = await append(log, [keys(7, 'later').map((key) => ({ key }))]);
        await until(async () => (await lagOf('lagging')) === 7, waitMs, 'lag 7 for 7 new records');
        consume(log, { group: 'lagging', handler: r.handler });
        await until(() => r.has(later.map((a) => a.eventId)), waitMs, 'the new records');
        await until(async () => (await lagOf('lagging')) === 0, waitMs, 'lag 0 again');
      },
      testMs,
    );
  });
}
