// The event log in PostgreSQL (and PGlite). Appends take the partition's row lock in
// log_partitions until commit, so one partition's offsets become visible strictly in order and a
// reader never passes a row that commits late. Consumer groups share partitions among live
// members by lease; a member that stops heartbeating loses its partitions when the lease ends, and
// a member whose handler runs longer than maxPollIntervalMs stops heartbeating.

import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import { eventFromSql, type SqlEventRow, toEnvelope } from '../events/envelope.ts';
import { TOPICS, type Topic } from '../events/types.ts';
import { type Db, type Notifier, queryPrepared, queryRows } from '../store/db.ts';
import { consumerOffsets, logEntries } from '../store/schema.ts';
import { DEFAULT_PARTITIONS, partitionOf } from './partitioner.ts';
import type {
  AppendEntry,
  Appended,
  Consumer,
  ConsumerOptions,
  EventLog,
  LagRow,
  LogRecord,
} from './port.ts';

// The columns of `events` a record is made of, named (not `e.*`): the poll is a prepared
// statement, and a column added by a newer release's migration must not break a running one.
const EVENT_COLUMNS = `e.id, e.organization_id, e.installation_id, e.source, e.type, e.subject, e.time,
  e.partition_key, e.topic, e.user_id, e.raw_request_id, e.created_at`;
/** With the data, or (for consumers that read only envelopes) without it. */
const RECORD_COLUMNS = sql.raw(`${EVENT_COLUMNS}, e.data`);
const ENVELOPE_COLUMNS = sql.raw(`${EVENT_COLUMNS}, null::json as data`);

/** Like Kafka's `max.poll.interval.ms` default. */
const DEFAULT_MAX_POLL_INTERVAL_MS = 5 * 60_000;

export interface PostgresLogOptions {
  db: Db;
  logger: Logger;
  partitions?: number;
  /** PostgreSQL's LISTEN/NOTIFY: `committed()` in one process wakes the consumers of the others. */
  notifier?: Notifier | undefined;
}

/** The NOTIFY channel of committed log entries; the payload names the process that committed. */
export const LOG_CHANNEL = 'interchange_log';
const NOTIFY_EVERY_MS = 20;

export function createPostgresLog({
  db,
  logger,
  partitions = DEFAULT_PARTITIONS,
  notifier,
}: PostgresLogOptions): EventLog {
  const consumers = new Set<Consumer>();
  // Each running consumer's wake-up: `committed()` ends its wait between polls.
  const wakes = new Set<() => void>();
  const wakeAll = () => {
    for (const wake of wakes) wake();
  };
  // Other processes hear of commits through NOTIFY, at most one per NOTIFY_EVERY_MS: the commits
  // made meanwhile are told by the next (a busy process would otherwise send one per commit, and a
  // round trip costs more than the wake-up is worth).
  const self = randomBytes(8).toString('hex');
  let notifying = false;
  let notifyAgain = false;
  let lastNotify = 0;
  const tellOthers = () => {
    if (!notifier) return;
    if (notifying) {
      notifyAgain = true;
      return;
    }
    notifying = true;
    setTimeout(
      () => {
        lastNotify = Date.now();
        notifier
          .notify(LOG_CHANNEL, self)
          .catch((err) => logger.debug({ err }, 'could not notify other processes of committed log entries'))
          .finally(() => {
            notifying = false;
            if (notifyAgain) {
              notifyAgain = false;
              tellOthers();
            }
          });
      },
      Math.max(0, lastNotify + NOTIFY_EVERY_MS - Date.now()),
    ).unref();
  };
  // Listening starts with the first consumer: a process that only appends listens to nothing.
  let listener: { close(): Promise<void> } | undefined;
  const listen = () => {
    if (!notifier || listener) return;
    listener = notifier.listen(LOG_CHANNEL, (from) => {
      if (from !== self) wakeAll();
    });
  };

  async function append(tx: Db, entries: AppendEntry[]): Promise<Appended[]> {
    if (entries.length === 0) return [];
    const groups = new Map<string, { topic: Topic; partition: number; items: AppendEntry[] }>();
    for (const entry of entries) {
      const partition = partitionOf(entry.partitionKey, partitions);
      const key = `${entry.topic}/${String(partition).padStart(4, '0')}`;
      const group = groups.get(key) ?? { topic: entry.topic, partition, items: [] };
      group.items.push(entry);
      groups.set(key, group);
    }
    const appended: Appended[] = [];
    // Sorted, so concurrent appenders lock partitions in one order and never deadlock.
    for (const key of [...groups.keys()].sort()) {
      const { topic, partition, items } = groups.get(key) as {
        topic: Topic;
        partition: number;
        items: AppendEntry[];
      };
      const [row] = await queryRows<{ next_offset: string | number }>(
        tx,
        sql`insert into log_partitions (topic, partition, next_offset) values (${topic}, ${partition}, ${items.length})
            on conflict (topic, partition) do update set next_offset = log_partitions.next_offset + excluded.next_offset
            returning next_offset`,
      );
      const first = Number(row?.next_offset) - items.length;
      const rows = items.map((item, i) => ({
        topic,
        partition,
        offset: first + i,
        eventId: item.eventId,
        replay: item.replay ?? false,
      }));
      await tx.insert(logEntries).values(rows);
      appended.push(...items.map((item, i) => ({ ...item, partition, offset: first + i })));
    }
    return appended;
  }

  function consume(options: ConsumerOptions): Consumer {
    listen();
    const consumer = startConsumer(db, logger, partitions, options, wakes);
    consumers.add(consumer);
    const stop = consumer.stop;
    return Object.assign(consumer, {
      stop: async () => {
        consumers.delete(consumer);
        await stop();
      },
    });
  }

  async function lag(): Promise<LagRow[]> {
    const rows = await queryRows<{ group_id: string; topic: string; lag: string | number }>(
      db,
      sql`select c.group_id, c.topic, sum(coalesce(p.next_offset, 0) - c.committed) as lag
          from consumer_offsets c left join log_partitions p on p.topic = c.topic and p.partition = c.partition
          group by c.group_id, c.topic order by c.group_id, c.topic`,
    );
    return rows.map((r) => ({ group: r.group_id, topic: r.topic, lag: Number(r.lag) }));
  }

  return {
    kind: 'postgres',
    append,
    appendCtes,
    partitionOf: (key) => partitionOf(key, partitions),
    committed() {
      wakeAll();
      tellOthers();
    },
    consume,
    lag,
    async close() {
      await Promise.all([...consumers].map((c) => c.stop()));
      await listener?.close();
      listener = undefined;
    },
  };
}

/**
 * `append` as CTEs of the caller's statement: each partition's counter is taken under its row
 * lock (in one order, topic then partition, byte-wise like `append`'s sort, so appenders never
 * deadlock) and the rows get the offsets that follow, in `seq` order.
 */
function appendCtes(source: string): string {
  return `, log_parts as (
    insert into log_partitions (topic, partition, next_offset)
    select topic, partition, count(*) from ${source} group by topic, partition
    order by topic collate "C", partition
    on conflict (topic, partition) do update set next_offset = log_partitions.next_offset + excluded.next_offset
    returning topic, partition, next_offset
  ), log_rows as (
    insert into log_entries (topic, partition, "offset", event_id)
    select s.topic, s.partition,
      p.next_offset - count(*) over (partition by s.topic, s.partition)
        + row_number() over (partition by s.topic, s.partition order by s.seq) - 1,
      s.event_id
    from ${source} s join log_parts p on p.topic = s.topic and p.partition = s.partition
  )`;
}

function startConsumer(
  db: Db,
  logger: Logger,
  partitions: number,
  options: ConsumerOptions,
  wakes: Set<() => void>,
): Consumer {
  const memberId = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  const { group, handler } = options;
  const topics = options.topics.filter((t) => TOPICS.includes(t));
  const batchSize = options.batchSize ?? 100;
  const leaseMs = options.leaseMs ?? 5000;
  const pollMs = options.pollMs ?? 100;
  const rebalanceMs = Math.max(100, Math.floor(leaseMs / 5));
  const maxPollIntervalMs = options.maxPollIntervalMs ?? DEFAULT_MAX_POLL_INTERVAL_MS;
  const concurrency = Math.max(1, Math.floor(options.concurrency ?? 1));
  const renewMs = Math.max(20, Math.floor(leaseMs / 3));
  const all = topics.flatMap((topic) => Array.from({ length: partitions }, (_, p) => `${topic}/${p}`));
  const log = logger.child({ consumer_group: group, member: memberId });
  let owned: string[] = [];
  let running = true;
  let lastRebalance = 0;

  const leaseInterval = sql`(${leaseMs} || ' milliseconds')::interval`;

  // Between polls the loop waits `pollMs`, or less when this process commits entries: a commit
  // while a poll is under way makes the next wait end at once (the poll may have missed it).
  let woken = false;
  let endWait: (() => void) | undefined;
  /** Ends the pause after a failed iteration (stop does not wait it out). */
  let endBackoff: (() => void) | undefined;
  const wake = () => {
    woken = true;
    endWait?.();
  };
  wakes.add(wake);
  const idle = () =>
    new Promise<void>((resolve) => {
      if (woken || !running) return resolve();
      const timer = setTimeout(finish, pollMs);
      function finish() {
        clearTimeout(timer);
        endWait = undefined;
        resolve();
      }
      endWait = finish;
    });

  async function join(): Promise<void> {
    const rows = topics.flatMap((topic) =>
      Array.from({ length: partitions }, (_, partition) => ({ groupId: group, topic, partition })),
    );
    if (rows.length > 0) await db.insert(consumerOffsets).values(rows).onConflictDoNothing();
  }

  /** Heartbeat, then take this member's share of the partitions and let go of the rest. */
  async function rebalance(): Promise<void> {
    await db.execute(sql`insert into consumer_members (group_id, member_id, heartbeat_at) values (${group}, ${memberId}, now())
      on conflict (group_id, member_id) do update set heartbeat_at = now()`);
    const members = (
      await queryRows<{ member_id: string }>(
        db,
        sql`select member_id from consumer_members where group_id = ${group} and heartbeat_at > now() - ${leaseInterval} order by member_id`,
      )
    ).map((r) => r.member_id);
    const index = Math.max(0, members.indexOf(memberId));
    const count = Math.max(1, members.length);
    const share = all.filter((_, i) => i % count === index);
    if (share.length > 0) {
      await db.execute(sql`update consumer_offsets set owner = ${memberId}, lease_until = now() + ${leaseInterval}
        where group_id = ${group} and topic || '/' || partition in ${share}
          and (owner is null or owner = ${memberId} or lease_until < now())`);
    }
    await db.execute(sql`update consumer_offsets set owner = null, lease_until = null
      where group_id = ${group} and owner = ${memberId} ${share.length > 0 ? sql`and topic || '/' || partition not in ${share}` : sql``}`);
    owned = (
      await queryRows<{ key: string }>(
        db,
        sql`select topic || '/' || partition as key from consumer_offsets where group_id = ${group} and owner = ${memberId} order by 1`,
      )
    ).map((r) => r.key);
    await db.execute(
      sql`delete from consumer_members where group_id = ${group} and heartbeat_at < now() - ${leaseInterval} * 10`,
    );
    lastRebalance = Date.now();
  }

  /**
   * While a poll's handler calls run (the loop cannot rebalance meanwhile), heartbeats and renews
   * the leases this member holds every leaseMs/3, for at most maxPollIntervalMs: a handler stuck
   * longer lets its partitions go to other members when their lease ends.
   */
  function keepAlive(): { overdue(): boolean; stop(): Promise<void> } {
    const started = Date.now();
    let overdue = false;
    let stopped = false;
    let renewing: Promise<void> = Promise.resolve();
    let timer: NodeJS.Timeout | undefined;
    const tick = () => {
      if (stopped) return;
      if (Date.now() - started >= maxPollIntervalMs) {
        overdue = true;
        log.warn(
          // `log` names the group and the member.
          { partitions: owned, max_poll_interval_ms: maxPollIntervalMs },
          'handler outlived maxPollIntervalMs: no longer renewing, its partitions go to other members when their lease ends',
        );
        return;
      }
      renewing = db
        .execute(sql`with heartbeat as (
            update consumer_members set heartbeat_at = now() where group_id = ${group} and member_id = ${memberId}
          )
          update consumer_offsets set lease_until = now() + ${leaseInterval}
          where group_id = ${group} and owner = ${memberId}`)
        .then(
          () => {},
          (err) => log.warn({ err }, 'could not renew leases while the handler runs; retrying'),
        )
        .then(() => {
          if (!stopped) timer = setTimeout(tick, renewMs);
        });
    };
    timer = setTimeout(tick, renewMs);
    return {
      overdue: () => overdue,
      async stop() {
        stopped = true;
        clearTimeout(timer);
        await renewing;
      },
    };
  }

  /**
   * One read across every owned partition; each partition's records go to the handler in order.
   * True when some partition filled its batch: more may be waiting, and the next poll comes at once.
   * Otherwise everything committed before the read has been handled, and anything committed since
   * has woken (or will wake) the loop, so it waits.
   */
  async function poll(): Promise<boolean> {
    const rows = await queryPrepared<EventRowWithLog>(
      db,
      options.withoutData ? 'log_poll_envelopes' : 'log_poll',
      sql`select l.topic as log_topic, l.partition as log_partition, l.offset as log_offset, l.replay as log_replay,
            ${options.withoutData ? ENVELOPE_COLUMNS : RECORD_COLUMNS}
          from consumer_offsets c
          cross join lateral (
            select * from log_entries l where l.topic = c.topic and l.partition = c.partition and l.offset >= c.committed
            order by l.offset limit ${batchSize}
          ) l
          left join events e on e.id = l.event_id
          where c.group_id = ${group} and c.owner = ${memberId} and c.lease_until > now()
          order by l.topic, l.partition, l.offset`,
    );
    if (rows.length === 0) return false;
    const byPartition = new Map<
      string,
      { topic: string; partition: number; last: number; rows: number; records: LogRecord[] }
    >();
    for (const row of rows) {
      const key = `${row.log_topic}/${row.log_partition}`;
      const entry = byPartition.get(key) ?? {
        topic: row.log_topic,
        partition: Number(row.log_partition),
        last: 0,
        rows: 0,
        records: [],
      };
      entry.last = Number(row.log_offset);
      entry.rows++;
      // An entry whose event is gone (deleted with its organization) is passed over, not waited for.
      if (row.id !== null) {
        entry.records.push({
          topic: row.log_topic as Topic,
          partition: Number(row.log_partition),
          offset: Number(row.log_offset),
          replay: Boolean(row.log_replay),
          event: toEnvelope(eventFromSql({ ...row, id: row.id })),
        });
      }
      byPartition.set(key, entry);
    }
    // Each partition's records go to the handler in turn; the offsets of every partition that was
    // handled are committed together, in one statement, even when a later partition's handler fails.
    // With `concurrency`, several partitions are handled at once; the first failure stops the
    // others from starting, and those already handled are still committed.
    const done: { topic: string; partition: number; next: number }[] = [];
    const full = [...byPartition.values()].some((p) => p.rows >= batchSize);
    const alive = keepAlive();
    try {
      const queue = [...byPartition.values()];
      let failed = false;
      const work = async () => {
        for (let next = queue.shift(); next; next = queue.shift()) {
          // Overdue: the partitions may be another member's by now; what is left is read again.
          if (!running || failed || alive.overdue()) return;
          const { topic, partition, last, records } = next;
          try {
            if (records.length > 0) await handler(records);
          } catch (err) {
            failed = true;
            throw err;
          }
          done.push({ topic, partition, next: last + 1 });
        }
      };
      const results = await Promise.allSettled(Array.from({ length: concurrency }, work));
      const rejected = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (rejected) throw rejected.reason;
    } finally {
      await alive.stop();
      if (done.length > 0) {
        // Only while this member still holds the partition: otherwise its new owner re-reads (at least once).
        await queryPrepared(
          db,
          'log_commit',
          sql`update consumer_offsets c set committed = x.next, lease_until = now() + ${leaseInterval}
          from json_to_recordset(${JSON.stringify(done)}::json) as x(topic text, partition int, next bigint)
          where c.group_id = ${group} and c.topic = x.topic and c.partition = x.partition
            and c.owner = ${memberId} and c.committed < x.next`,
        );
      }
    }
    return full;
  }

  const loop = (async () => {
    let joined = false;
    while (running) {
      try {
        // Joining is retried like everything else: the database may be down when a worker starts.
        if (!joined) {
          await join();
          joined = true;
        }
        if (Date.now() - lastRebalance >= rebalanceMs) await rebalance();
        woken = false;
        const more = await poll();
        if (!more) await idle();
      } catch (err) {
        // Stopping may interrupt a handler (the privacy consumer aborts a long redaction): the
        // batch's offset was not committed, so it is read again on the next start. Not an error.
        if (!running) {
          log.info({ err }, 'consumer stopped during a batch; it is read again on the next start');
          break;
        }
        log.error({ err }, 'consumer iteration failed; retrying');
        await new Promise<void>((resolve) => {
          const timer = setTimeout(done, Math.min(5000, pollMs * 10));
          function done() {
            clearTimeout(timer);
            endBackoff = undefined;
            resolve();
          }
          endBackoff = done;
        });
      }
    }
  })();

  return {
    memberId,
    assignment: () => [...owned],
    async stop() {
      running = false;
      wakes.delete(wake);
      endWait?.();
      endBackoff?.();
      await loop;
      try {
        await db.execute(
          sql`update consumer_offsets set owner = null, lease_until = null where group_id = ${group} and owner = ${memberId}`,
        );
        await db.execute(
          sql`delete from consumer_members where group_id = ${group} and member_id = ${memberId}`,
        );
      } catch (err) {
        log.warn({ err }, 'consumer could not release its partitions; they return when the lease ends');
      }
    },
  };
}

type EventRowWithLog = Omit<SqlEventRow, 'id'> & {
  log_topic: string;
  log_partition: number;
  log_offset: string | number;
  log_replay: boolean;
  /** Null when the entry's event is gone. */
  id: string | null;
};
