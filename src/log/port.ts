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
  pollMs?: number;
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
  consume(options: ConsumerOptions): Consumer;
  lag(): Promise<LagRow[]>;
  close(): Promise<void>;
}
