// Group commit: concurrent inbound requests that arrive within a few milliseconds share one
// transaction, so throughput is not bound by one commit (one fsync) per webhook. Each request is
// answered only after the transaction holding it has committed. The requests waiting are bounded:
// past the bound a request is refused at once with 503 `overloaded` (providers retry it).
import { eq, sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import { AppError } from '../errors.ts';
import type { Topic } from '../events/types.ts';
import type { EventLog } from '../log/port.ts';
import { type Db, driverError, isDatabaseUnavailable, type Store } from '../store/db.ts';
import { installations } from '../store/schema.ts';
import { duplicateOutcomes, writeBatch } from './write.ts';

const EFFECT_TYPES = new Set(['app.uninstalled']);

export interface PreparedEvent {
  id: string;
  source: string;
  type: string;
  subject: string | null;
  time: Date;
  partitionKey: string;
  topic: Topic;
  userId: string | null;
  data: unknown;
  /** The data's JSON text when it must be stored as it is (custom events: numbers as sent); else `data` is stringified. */
  dataJson?: string | undefined;
  /**
   * The provider's id of this one event when a request carries several that the provider may
   * regroup on retry (HubSpot): each is then de-duplicated on its own (see `keyedPerEvent`).
   */
  dedupeKey?: string | undefined;
  /**
   * The provider's customer id in its account, to be resolved to the organization's user id
   * inside the batch (one query per batch, not one per request): the user holding that id in that
   * account, else the one holding it without account. Ignored when `userId` is set.
   */
  customer?: { platform: string; account: string; externalId: string } | undefined;
}

export interface IngestItem {
  organizationId: string;
  installationId: string | null;
  /** De-duplication scope: the installation id, or `api` for events sent to the API. */
  scope: string;
  dedupeKey: string | null;
  requestId: string;
  request: {
    method: string;
    path: string;
    headers: Record<string, string>;
    body: Buffer;
    receivedAt: Date;
  } | null;
  status: 'accepted' | 'rejected';
  errorCode?: string | undefined;
  events: PreparedEvent[];
}

export type IngestOutcome =
  | { status: 'accepted'; requestId: string; eventIds: string[] }
  | { status: 'duplicate'; requestId: string | null; eventIds: string[] }
  | { status: 'rejected'; requestId: string };

interface Pending {
  item: IngestItem;
  resolve(outcome: IngestOutcome): void;
  reject(err: unknown): void;
}

/**
 * How much may wait to be committed (queued or in a batch under way): beyond either bound a
 * request is refused, so a flood or a slow database cannot pile requests up in memory. A lone
 * request is always taken, whatever its size.
 */
export interface CommitterBounds {
  /** Requests waiting. */
  maxWaiting: number;
  /** Bytes of raw request bodies waiting (events sent to the API carry none: counted by number only). */
  maxWaitingBytes: number;
}

export interface CommitterOptions {
  store: Store;
  log: EventLog;
  logger: Logger;
  /** Default: none (unit tests); the hub passes its configured bounds (see services.ts). */
  bounds?: CommitterBounds;
  /** Batches committing at once; requests arriving meanwhile wait and form the next batch. */
  concurrency?: number;
  maxBatch?: number;
}

/**
 * Natural batching: with a free slot a request is written at once (no added latency when idle);
 * while every slot is committing, arrivals queue up and go together in the next transaction. The
 * busier the hub, the larger the batches, and one commit (one fsync) answers them all.
 */
export function createCommitter({
  store,
  log,
  logger,
  bounds = { maxWaiting: Number.POSITIVE_INFINITY, maxWaitingBytes: Number.POSITIVE_INFINITY },
  concurrency = 2,
  maxBatch = 512,
}: CommitterOptions) {
  let queue: Pending[] = [];
  const waiting = { requests: 0, bytes: 0 };
  let scheduled = false;
  const inFlight = new Set<Promise<void>>();

  function flushSoon() {
    // Let the requests of this turn of the event loop join before taking the batch.
    if (scheduled) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      flush();
    });
  }

  function flush() {
    while (queue.length > 0 && inFlight.size < concurrency) {
      const batch = queue.slice(0, maxBatch);
      queue = queue.slice(batch.length);
      const run = commitBatch(batch).finally(() => {
        inFlight.delete(run);
        flush();
      });
      inFlight.add(run);
    }
  }

  async function commitBatch(batch: Pending[]): Promise<void> {
    try {
      await commitTogether(batch);
    } catch (err) {
      // One item may have failed the whole transaction (a row the database refuses): its
      // batch-mates must not pay for it, so each is tried again in a transaction of its own.
      if (batch.length === 1 || isDatabaseUnavailable(err)) return fail(batch, err);
      logger.warn(
        { err: driverError(err), batch: batch.length },
        'ingest batch failed; committing its items one by one',
      );
      for (const p of batch) {
        try {
          await commitTogether([p]);
        } catch (single) {
          fail([p], single);
        }
      }
    }
  }

  async function commitTogether(batch: Pending[]): Promise<void> {
    const items = batch.map((p) => p.item);
    // An uninstall changes another row with the batch: one transaction for all.
    // Otherwise the batch is one statement, committed on its own (no BEGIN/COMMIT round trips).
    const outcomes = items.some(hasEffects)
      ? await store.db.transaction(async (tx) => {
          const db = tx as unknown as Db;
          const result = await writeAndAnswer(db, items);
          await applyEffects(
            db,
            items.filter((_, i) => result[i]?.status === 'accepted'),
          );
          return result;
        })
      : await writeAndAnswer(store.db, items);
    if (outcomes.some((o) => o.status === 'accepted')) log.committed();
    batch.forEach((p, i) => {
      p.resolve(outcomes[i] as IngestOutcome);
    });
  }

  function fail(batch: Pending[], err: unknown): void {
    // Nothing of the batch is kept: it was one transaction, which the server rolls back (a lost
    // COMMIT may still have landed; the provider's retry is then a duplicate, answered 200).
    // Every waiting request fails, with 503 database_unavailable when the database is down.
    const unavailable = isDatabaseUnavailable(err);
    logger.error(
      { err: driverError(err), batch: batch.length },
      unavailable
        ? 'ingest batch not committed: the database is unavailable'
        : 'ingest batch failed to commit',
    );
    const failure = unavailable
      ? new AppError('database_unavailable', 'the database is unavailable; try again shortly')
      : err;
    for (const p of batch) p.reject(failure);
  }

  async function writeAndAnswer(db: Db, items: IngestItem[]): Promise<IngestOutcome[]> {
    const written = await writeBatch(db, log, items);
    const duplicates = await duplicateOutcomes(
      db,
      items,
      written.map((w) => w.verdict),
    );
    return items.map((item, i): IngestOutcome => {
      const verdict = written[i]?.verdict;
      if (verdict === 'accepted')
        return { status: 'accepted', requestId: item.requestId, eventIds: written[i]?.eventIds ?? [] };
      if (verdict === 'rejected') return { status: 'rejected', requestId: item.requestId };
      return duplicates.get(i) ?? { status: 'duplicate', requestId: null, eventIds: [] };
    });
  }

  /**
   * What an uninstall means for the hub itself, in the batch's transaction. (A privacy redaction
   * is the worker's: see `startPrivacyConsumer`.)
   */
  async function applyEffects(tx: Db, items: IngestItem[]): Promise<void> {
    for (const item of items) {
      if (item.installationId && item.events.some((e) => e.type === 'app.uninstalled')) {
        await tx
          .update(installations)
          .set({ status: 'uninstalled', uninstalledAt: sql`now()`, updatedAt: sql`now()` })
          .where(eq(installations.id, item.installationId));
      }
    }
  }

  function hasEffects(item: IngestItem): boolean {
    return item.status === 'accepted' && item.events.some((e) => EFFECT_TYPES.has(e.type));
  }

  return {
    submit(item: IngestItem): Promise<IngestOutcome> {
      const bytes = item.request?.body.length ?? 0;
      const full =
        waiting.requests > 0 &&
        (waiting.requests >= bounds.maxWaiting || waiting.bytes + bytes > bounds.maxWaitingBytes);
      if (full) {
        return Promise.reject(
          new AppError('overloaded', 'too many requests are waiting to be stored; retry shortly'),
        );
      }
      waiting.requests++;
      waiting.bytes += bytes;
      return new Promise<IngestOutcome>((resolve, reject) => {
        queue.push({ item, resolve, reject });
        flushSoon();
      }).finally(() => {
        waiting.requests--;
        waiting.bytes -= bytes;
      });
    },
    /** Waits for every queued and running batch (shutdown). */
    async drain(): Promise<void> {
      flush();
      while (inFlight.size > 0 || queue.length > 0) {
        await Promise.allSettled([...inFlight]);
        flush();
      }
    },
  };
}

export type Committer = ReturnType<typeof createCommitter>;
