// The EventLog port: append events to topics in the ingest transaction, and read them back in
// consumer groups, at least once, in order per partition. Implementations: postgres.ts (also
// PGlite) and kafka.ts.
import type { Envelope } from '../events/envelope.ts';
import type { Topic } from '../events/types.ts';
import type { Db } from '../store/db.ts';

export interface AppendEntry {
  eventId: string;
  topic: Topic;
  partitionKey: string;
  replay?: boolean;
}

export interface Appended extends AppendEntry {
  partition: number;
  offset: number;
}

export interface LogRecord {
  topic: Topic;
  partition: number;
  offset: number;
  replay: boolean;
  event: Envelope;
}

/** Handles one partition's records in offset order; the offsets are committed when it resolves. */
export type RecordHandler = (records: LogRecord[]) => Promise<void>;

export interface ConsumerOptions {
  group: string;
  topics: readonly Topic[];
  handler: RecordHandler;
  /** Max records per handler call. */
  batchSize?: number;
  /** How long a member may hold partitions without renewing (and how soon a dead one's are taken over). */
  leaseMs?: number;
  /**
   * How long one poll's handler calls may run while the member keeps its partitions, like Kafka's
   * `max.poll.interval.ms`: a slow handler keeps heartbeating and renewing its leases until then, so
   * no other member takes its records meanwhile; a handler stuck longer lets its partitions go to
   * the group's other members when their lease ends (its late commit is then discarded).
   * Postgres log: default 5 minutes. Kafka log: default `leaseMs`, the session timeout.
   *
   * @example
   * log.consume({ group: 'exports', topics: ['order-events'], handler, maxPollIntervalMs: 15 * 60_000 });
   */
  maxPollIntervalMs?: number;
  pollMs?: number;
  /**
   * The handler reads only the envelope: the Postgres log then leaves each record's `event.data`
   * null (an event's data is never null), so the data is neither read from the table nor parsed,
   * and a handler that needs some of it fetches it. The Kafka log delivers it all the same.
   */
  withoutData?: boolean;
  /**
   * Partitions whose records go to the handler at the same time (each partition's still in order,
   * one call at a time): a handler that waits on round trips gets through a poll that spans many
   * partitions that much sooner. Default 1. Postgres log only; the Kafka log handles a batch's
   * partitions one after another.
   */
  concurrency?: number;
}

export interface Consumer {
  readonly memberId: string;
  /** The partitions this member holds now, as `topic/partition`. */
  assignment(): string[];
  stop(): Promise<void>;
}

export interface LagRow {
  group: string;
  topic: string;
  lag: number;
}

export interface EventLog {
  readonly kind: 'postgres' | 'kafka';
  /** Appends inside the caller's transaction: the entries commit (and become readable) with it. */
  append(tx: Db, entries: AppendEntry[]): Promise<Appended[]>;
  /**
   * The same append as SQL, for a caller that writes a whole batch in one statement: CTEs (each
   * starting with a comma) that append every row of the caller's CTE `source`, whose columns are
   * `topic`, `partition` (from `partitionOf`), `seq` (order within the statement) and `event_id`.
   */
  appendCtes(source: string): string;
  /** The partition of a key, as `append` computes it. */
  partitionOf(key: string): number;
  /**
   * Tells the log that appended entries were committed: this process's consumers read now rather
   * than at their next poll (other processes' at theirs). Call it after the commit, never before.
   */
  committed(): void;
  consume(options: ConsumerOptions): Consumer;
  lag(): Promise<LagRow[]>;
  close(): Promise<void>;
}
