// The Postgres event log: the EventLog contract on PGlite (and on PostgreSQL with DATABASE_URL),
// plus what only a real server can show: a late commit is never skipped, and another process reads in order.
import { type ChildProcessByStdio, spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { newId } from '../src/ids.ts';
import { partitionOf } from '../src/log/partitioner.ts';
import type {
  AppendEntry,
  Appended,
  Consumer,
  ConsumerOptions,
  EventLog,
  LogRecord,
} from '../src/log/port.ts';
import { createPostgresLog } from '../src/log/postgres.ts';
import { type Db, queryRows } from '../src/store/db.ts';
import { organizations, schema } from '../src/store/schema.ts';
import { onPostgres } from './helpers/database.ts';
import { eventLogContract } from './helpers/log-contract.ts';
import {
  idsByKey,
  insertEvents,
  type LogFixture,
  openLogFixture,
  recorder,
  sleep,
  until,
} from './helpers/log-fixture.ts';

eventLogContract(
  `EventLog contract: postgres log on ${onPostgres ? 'PostgreSQL' : 'PGlite'}`,
  (f) => createPostgresLog({ db: f.store.db, logger: f.logger, notifier: f.store.notifier }),
  { leaseMs: 1000, takeoverMs: 5000, waitMs: 10_000, settleMs: 1000 },
);

let f: LogFixture;
let consumers: Consumer[] = [];
beforeEach(async () => {
  f = await openLogFixture();
}, 60_000);
afterEach(async () => {
  await Promise.allSettled(consumers.map((c) => c.stop()));
  consumers = [];
  await f.close();
}, 60_000);

describe('postgres log', () => {
  it('passes over entries whose event is gone (a deleted organization) instead of stalling the partition', async () => {
    const log = createPostgresLog({ db: f.store.db, logger: f.logger });
    const gone = newId('organization');
    await f.store.db.insert(organizations).values({ id: gone, name: 'Leaving' });
    const key = 'shared-key.myshopify.com';
    await f.store.db.transaction(async (tx) => {
      await log.append(
        tx as unknown as Db,
        await insertEvents(tx as unknown as Db, gone, Array(12).fill({ key })),
      );
    });
    await f.store.db.delete(organizations).where(sql`id = ${gone}`);
    const live = await f.append(log, Array(3).fill({ key }));
    const r = recorder();
    consumers.push(
      log.consume({
        group: 'after-delete',
        topics: ['order-events'],
        batchSize: 5,
        pollMs: 10,
        handler: r.handler,
      }),
    );
    await until(() => r.has(live.map((a) => a.eventId)), 10_000, 'the live records behind the orphaned ones');
    expect(r.ids()).toEqual(live.map((a) => a.eventId));
    await until(
      async () =>
        (await log.lag()).find((l) => l.group === 'after-delete' && l.topic === 'order-events')?.lag === 0,
      5000,
      'lag 0',
    );
  });

  it('stops at once when stopping interrupts its handler: logged as a stop, not an error, and read again next start', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) });
    const log = createPostgresLog({ db: f.store.db, logger });
    // Like the privacy consumer: a long job that stopping aborts.
    const stopping = new AbortController();
    const taken: LogRecord[] = [];
    const c = log.consume({
      group: 'interrupted',
      topics: ['order-events'],
      pollMs: 20,
      handler: async (records) => {
        taken.push(...records);
        await new Promise((_, reject) => {
          stopping.signal.addEventListener('abort', () => reject(stopping.signal.reason), { once: true });
        });
      },
    });
    const appended = await f.append(log, [{ key: 'interrupted.myshopify.com' }]);
    await until(() => taken.length > 0, 10_000, 'the handler to start');
    stopping.abort(new Error('the worker is stopping'));
    await c.stop();
    expect(lines.filter((l) => (l.level as number) >= 50)).toEqual([]);
    expect(lines).toContainEqual(
      expect.objectContaining({ level: 30, consumer_group: 'interrupted', err: expect.anything() }),
    );
    const again = recorder();
    consumers.push(
      log.consume({ group: 'interrupted', topics: ['order-events'], pollMs: 20, handler: again.handler }),
    );
    await until(() => again.has([appended[0]?.eventId ?? '']), 10_000, 'the interrupted batch again');
  });

  it('does not wait out its pause after a failed batch when stopped', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) });
    const log = createPostgresLog({ db: f.store.db, logger });
    // pollMs 1000: a failed iteration pauses min(5 s, 10 polls) = 5 s before the next.
    const c = log.consume({
      group: 'failing',
      topics: ['order-events'],
      pollMs: 1000,
      handler: async () => {
        throw new Error('the handler failed');
      },
    });
    await f.append(log, [{ key: 'failing.myshopify.com' }]);
    await until(() => lines.some((l) => l.level === 50), 10_000, 'the failure to be logged');
    const outcome = await Promise.race([c.stop().then(() => 'stopped'), sleep(4000).then(() => 'paused')]);
    expect(outcome).toBe('stopped');
  });
});

describe('postgres log: handlers slower than the lease (maxPollIntervalMs)', () => {
  const leaseMs = 300;
  /** Lets go of every handler a test holds, so a failed test does not leave its consumers unstoppable. */
  let gates: Array<() => void> = [];
  afterEach(() => {
    for (const open of gates) open();
    gates = [];
  });
  const consume = (log: EventLog, o: Omit<ConsumerOptions, 'topics'>) => {
    const c = log.consume({ topics: ['order-events'], pollMs: 20, leaseMs, ...o });
    consumers.push(c);
    return c;
  };
  const offsetRow = async (group: string, partition: number) => {
    const [row] = await queryRows<{ committed: string | number; owner: string | null }>(
      f.store.db,
      sql`select committed, owner from consumer_offsets
          where group_id = ${group} and topic = 'order-events' and partition = ${partition}`,
    );
    return row;
  };

  it('hands several partitions to the handler at once with `concurrency`, each still in order, and commits them all', async () => {
    const log = createPostgresLog({ db: f.store.db, logger: f.logger });
    // Keys in four different partitions, three records each.
    const keys: string[] = [];
    for (let i = 0; keys.length < 4; i++) {
      const key = `shop-${i}.myshopify.com`;
      if (!keys.some((k) => partitionOf(k, 16) === partitionOf(key, 16))) keys.push(key);
    }
    const appended = await f.append(
      log,
      [0, 1, 2].flatMap(() => keys.map((key) => ({ key }))),
    );
    let running = 0;
    let most = 0;
    const r = recorder();
    let release: () => void = () => {};
    const allIn = new Promise<void>((resolve) => {
      release = resolve;
    });
    const c = log.consume({
      group: 'concurrent',
      topics: ['order-events'],
      concurrency: 4,
      batchSize: 2,
      pollMs: 20,
      handler: async (records) => {
        running++;
        most = Math.max(most, running);
        // The first four calls wait for one another: they can only all be under way together.
        if (most < 4) await Promise.race([allIn, sleep(5000)]);
        else release();
        running--;
        await r.handler(records);
      },
    });
    consumers.push(c);
    await until(() => r.has(appended.map((a) => a.eventId)), 20_000, 'every record');
    expect(most).toBe(4);
    expect(r.records).toHaveLength(appended.length);
    expect(r.byKey()).toEqual(idsByKey(appended));
    // Committed: a new member of the group reads nothing again.
    await c.stop();
    const again = recorder();
    consumers.push(
      log.consume({ group: 'concurrent', topics: ['order-events'], pollMs: 20, handler: again.handler }),
    );
    await sleep(500);
    expect(again.records).toHaveLength(0);
  });

  it('keeps the partitions of a handler that runs 3 leases: a member started meanwhile gets none of its records', async () => {
    const log = createPostgresLog({ db: f.store.db, logger: f.logger });
    const slow: LogRecord[] = [];
    let calls = 0;
    let finish: () => void = () => {};
    const finished = new Promise<void>((resolve) => {
      finish = resolve;
    });
    gates.push(finish);
    let returned = false;
    const a = consume(log, {
      group: 'slow',
      handler: async (records) => {
        calls++;
        slow.push(...records);
        await finished;
        returned = true;
      },
    });
    await until(() => a.assignment().length > 0, 10_000, 'the first member to join');
    const appended = await f.append(log, Array(5).fill({ key: 'slow-handler.myshopify.com' }));
    const ids = appended.map((x) => x.eventId);
    const partition = `order-events/${appended[0]?.partition}`;
    await until(() => slow.length > 0, 10_000, 'the slow handler to start');

    const r = recorder();
    const b = consume(log, { group: 'slow', handler: r.handler });
    await until(
      async () =>
        (
          await queryRows(
            f.store.db,
            sql`select 1 from consumer_members where group_id = 'slow' and member_id = ${b.memberId}`,
          )
        ).length > 0,
      10_000,
      'the second member to join',
    );
    // The handler runs three leases while the second member rebalances every lease/5.
    const heldByB: string[][] = [];
    const since = Date.now();
    while (Date.now() - since < 3 * leaseMs) {
      heldByB.push(b.assignment());
      await sleep(20);
    }
    finish();
    await until(() => returned, 10_000, 'the slow handler to return');
    await until(
      async () => Number((await offsetRow('slow', appended[0]?.partition ?? -1))?.committed) === ids.length,
      10_000,
      'the slow member to commit',
    );
    await sleep(3 * leaseMs);
    expect(heldByB.some((held) => held.includes(partition))).toBe(false);
    expect(r.ids().filter((id) => ids.includes(id))).toEqual([]);
    expect(calls).toBe(1);
    expect(slow.map((x) => x.event.id)).toEqual(ids);
  }, 60_000);

  it('gives the partitions of a handler stuck past maxPollIntervalMs to another member, and discards its late commit', async () => {
    const warnings: Array<Record<string, unknown>> = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => warnings.push(JSON.parse(line)) });
    const log = createPostgresLog({ db: f.store.db, logger });
    const stuck: LogRecord[] = [];
    let releaseA: () => void = () => {};
    const wedgedA = new Promise<void>((resolve) => {
      releaseA = resolve;
    });
    gates.push(releaseA);
    const a = consume(log, {
      group: 'overdue',
      maxPollIntervalMs: 3 * leaseMs,
      handler: async (records) => {
        stuck.push(...records);
        await wedgedA;
      },
    });
    await until(() => a.assignment().length > 0, 10_000, 'the first member to join');
    const appended = await f.append(log, Array(6).fill({ key: 'overdue-handler.myshopify.com' }));
    const ids = appended.map((x) => x.eventId);
    const partition = appended[0]?.partition ?? -1;
    await until(() => stuck.length > 0, 10_000, 'the first member to take the records');
    expect(stuck.map((x) => x.event.id)).toEqual(ids);

    // The second member takes one record at a time and holds the first until released.
    const seen: LogRecord[] = [];
    let releaseB: () => void = () => {};
    const gateB = new Promise<void>((resolve) => {
      releaseB = resolve;
    });
    gates.push(releaseB);
    const b = consume(log, {
      group: 'overdue',
      batchSize: 1,
      handler: async (records) => {
        seen.push(...records);
        await gateB;
      },
    });
    await until(() => seen.length > 0, 30_000, 'the second member to take the wedged partition');
    expect(b.assignment()).toContain(`order-events/${partition}`);
    expect(warnings).toContainEqual(
      expect.objectContaining({
        level: 40,
        consumer_group: 'overdue',
        member: a.memberId,
        partitions: expect.arrayContaining([`order-events/${partition}`]),
      }),
    );

    // The first handler returns at last: stopping waits for its commit, which must not pass over
    // the records the new owner has not handled yet.
    releaseA();
    await a.stop();
    expect(await offsetRow('overdue', partition)).toMatchObject({ owner: b.memberId });
    expect(Number((await offsetRow('overdue', partition))?.committed)).toBe(0);

    releaseB();
    await until(() => seen.length >= ids.length, 10_000, 'the second member to handle every record');
    await until(
      async () => Number((await offsetRow('overdue', partition))?.committed) === ids.length,
      10_000,
      'the second member to commit',
    );
    expect(seen.map((x) => x.event.id)).toEqual(ids);
  }, 60_000);
});

/**
 * The late-commit trap (a reader must never pass a row that commits late), played on two
 * connections of a real server.
 */
async function lateCommit(log: EventLog, group: string) {
  const url = f.database.url as string;
  const [connA, connB] = [new pg.Client({ connectionString: url }), new pg.Client({ connectionString: url })];
  await Promise.all([connA.connect(), connB.connect()]);
  const [dbA, dbB] = [connA, connB].map((c) => drizzle(c, { schema }) as unknown as Db) as [Db, Db];
  const key = 'late-commit.myshopify.com';
  const r = recorder();
  try {
    const consumer = log.consume({ group, topics: ['order-events'], pollMs: 10, handler: r.handler });
    consumers.push(consumer);
    await until(() => consumer.assignment().length > 0, 5000, 'the consumer to join');

    // A appends and stays open.
    await connA.query('begin');
    const a = await log.append(dbA, await insertEvents(dbA, f.organizationId, [{ key }, { key }]));
    // B appends to the same partition and commits as soon as it is allowed to.
    let bCommitted = false;
    const b = (async () => {
      await connB.query('begin');
      const appended = await log.append(dbB, await insertEvents(dbB, f.organizationId, [{ key }]));
      await connB.query('commit');
      bCommitted = true;
      return appended;
    })();
    await sleep(1000); // the consumer polls every 10 ms meanwhile
    const bWaitedForA = !bCommitted;
    await connA.query('commit');
    const bAppended = await b;
    const all = [...a, ...bAppended].map((x) => x.eventId);
    await until(() => r.has(all), 3000, 'every record').catch(() => {});
    return {
      a: a.map((x) => x.eventId),
      b: bAppended.map((x) => x.eventId),
      delivered: r.records,
      bWaitedForA,
    };
  } finally {
    await Promise.all([connA.end(), connB.end()]);
  }
}

/** What a plain bigserial log would do: offsets from a sequence, no partition lock. */
function bigserialLog(db: Db): EventLog {
  const real = createPostgresLog({ db, logger: f.logger });
  return {
    ...real,
    async append(tx: Db, entries: AppendEntry[]): Promise<Appended[]> {
      const out: Appended[] = [];
      for (const e of entries) {
        const partition = partitionOf(e.partitionKey);
        const rows =
          (await tx.execute(sql`insert into log_entries (topic, partition, "offset", event_id, replay)
          values (${e.topic}, ${partition}, nextval('naive_offsets'), ${e.eventId}, false) returning "offset"`)) as unknown as {
            rows: Array<{ offset: string }>;
          };
        out.push({ ...e, partition, offset: Number(rows.rows[0]?.offset) });
      }
      return out;
    },
  };
}

describe.skipIf(!onPostgres)(
  'late commits (PostgreSQL only: PGlite is one connection, so two transactions cannot be open at once)',
  () => {
    it('delivers a row that commits late, and the rows behind it, in offset order', async () => {
      const log = createPostgresLog({ db: f.store.db, logger: f.logger });
      const { a, b, delivered, bWaitedForA } = await lateCommit(log, 'late');
      expect(delivered.map((x) => x.event.id)).toEqual([...a, ...b]);
      expect(delivered.map((x) => x.offset)).toEqual(
        [...delivered.map((x) => x.offset)].sort((p, q) => p - q),
      );
      // This implementation makes B wait for A's partition lock (a visibility horizon would not).
      expect(bWaitedForA).toBe(true);
    });

    it('catches a plain bigserial log skipping the late row (the check above can fail)', async () => {
      await f.store.db.execute(sql`create sequence naive_offsets minvalue 0 start 0`);
      const { a, b, delivered, bWaitedForA } = await lateCommit(bigserialLog(f.store.db), 'naive');
      expect(bWaitedForA).toBe(false);
      // B's row is read and committed past while A's are invisible; A's are never delivered.
      expect(delivered.map((x) => x.event.id)).toEqual(b);
      expect(a).toHaveLength(2);
    });
  },
);

describe.skipIf(!onPostgres)('wake-ups across processes (PostgreSQL only: LISTEN/NOTIFY)', () => {
  it("wakes another process's consumer when this one commits (NOTIFY), long before its next poll", async () => {
    const writer = createPostgresLog({ db: f.store.db, logger: f.logger, notifier: f.store.notifier });
    const reader = createPostgresLog({ db: f.store.db, logger: f.logger, notifier: f.store.notifier });
    try {
      const r = recorder();
      // A poll interval far longer than the wait: only a notification can bring the record in time.
      const c = reader.consume({
        group: 'notified',
        topics: ['order-events'],
        pollMs: 10 * 60_000,
        handler: r.handler,
      });
      consumers.push(c);
      await until(() => c.assignment().length > 0, 10_000, 'partitions assigned');
      // The listener connects on its own; give it a moment, as a process would have had.
      await sleep(500);
      const appended = await f.append(writer, [{ key: 'acme-store.myshopify.com' }]);
      writer.committed();
      await until(() => r.has(appended.map((a) => a.eventId)), 10_000, 'the record, on notification');
      expect(r.ids()).toEqual(appended.map((a) => a.eventId));

      // The listening connections lost (a server restart, a failover): they come back on their own.
      const listeners = async () =>
        (
          await queryRows<{ pid: number }>(
            f.store.db,
            sql`select pid from pg_stat_activity where datname = current_database() and query ilike 'listen %'`,
          )
        ).map((x) => x.pid);
      const before = await listeners();
      expect(before.length).toBeGreaterThan(0);
      await f.store.db.execute(
        sql`select pg_terminate_backend(pid) from pg_stat_activity where pid = any(${sql.raw(`array[${before.join(',')}]`)}::int[])`,
      );
      await until(
        async () => (await listeners()).filter((pid) => !before.includes(pid)).length >= before.length,
        10_000,
        'the listeners reconnected',
      );
      const again = await f.append(writer, [{ key: 'acme-store.myshopify.com' }]);
      writer.committed();
      await until(() => r.has(again.map((a) => a.eventId)), 10_000, 'the next record, after reconnecting');
    } finally {
      await reader.close();
      await writer.close();
    }
  });
});

const READER = fileURLToPath(new URL('./helpers/log-reader.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('..', import.meta.url));

describe.skipIf(!onPostgres)(
  'a consumer group in another process (PostgreSQL only: an embedded PGlite belongs to one process)',
  () => {
    let child: ChildProcessByStdio<null, Readable, Readable> | undefined;
    afterEach(() => {
      child?.kill('SIGKILL');
    });

    it('reads every keyed event, in per-key order', async () => {
      const log = createPostgresLog({ db: f.store.db, logger: f.logger });
      const keys = Array.from({ length: 6 }, (_, i) => `remote-${i}.myshopify.com`);
      const appended: Appended[] = [];
      appended.push(
        ...(await f.append(
          log,
          keys.map((key) => ({ key })),
        )),
      );

      const proc = spawn(process.execPath, ['--import', 'tsx', READER], {
        cwd: ROOT,
        env: { ...process.env, LOG_READER_URL: f.database.url, LOG_READER_GROUP: 'remote-reader' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child = proc;
      let stdout = '';
      let stderr = '';
      proc.stdout.on('data', (d) => {
        stdout += String(d);
      });
      proc.stderr.on('data', (d) => {
        stderr += String(d);
      });
      const exited = new Promise<number | null>((resolve) => proc.on('close', (code) => resolve(code)));
      const lines = () =>
        stdout
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as { ready?: boolean; id?: string; key?: string });
      await until(() => lines().some((l) => l.ready), 30_000, `the reader to join (stderr: ${stderr})`);

      for (let round = 0; round < 10; round++) {
        const order = round % 2 ? [...keys].reverse() : keys;
        appended.push(
          ...(await f.append(
            log,
            order.flatMap((key) => (round === 4 ? [{ key }, { key }] : [{ key }])),
          )),
        );
      }
      const ids = new Set(appended.map((a) => a.eventId));
      await until(
        () => lines().filter((l) => l.id && ids.has(l.id)).length >= ids.size,
        20_000,
        `the reader to print ${ids.size} records (stderr: ${stderr})`,
      );
      const read = new Map<string, string[]>();
      for (const l of lines()) if (l.id && l.key) read.set(l.key, [...(read.get(l.key) ?? []), l.id]);
      for (const [key, expected] of idsByKey(appended)) expect(read.get(key), key).toEqual(expected);

      proc.kill('SIGTERM');
      expect(await exited, stderr).toBe(0);
      child = undefined;
      const [row] = (
        (await f.store.db.execute(
          sql`select count(*)::int as n from consumer_members where group_id = 'remote-reader'`,
        )) as unknown as { rows: Array<{ n: number }> }
      ).rows;
      expect(row?.n, 'a clean stop leaves the group').toBe(0);
    }, 90_000);
  },
);
