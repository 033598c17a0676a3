// Group commit: concurrent inbound requests that arrive within a few milliseconds share one
// transaction, so throughput is not bound by one commit (one fsync) per webhook. Each request is
// answered only after the transaction holding it has committed.
import { and, eq, sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import { AppError } from '../errors.ts';
import type { Topic } from '../events/types.ts';
import type { EventLog } from '../log/port.ts';
import { type Db, driverError, isDatabaseUnavailable, queryRows, type Store } from '../store/db.ts';
import { dedupeKeys, events, inboundRequests, installations } from '../store/schema.ts';
import { redact } from './redact.ts';

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
  /**
   * The provider's customer id, to be resolved to the organization's user id inside the batch
   * (one query per batch, not one per request). Ignored when `userId` is set.
   */
  customer?: { platform: string; externalId: string } | undefined;
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

export interface CommitterOptions {
  store: Store;
  log: EventLog;
  logger: Logger;
  /** Batches committing at once; requests arriving meanwhile wait and form the next batch. */
  concurrency?: number;
  maxBatch?: number;
}

/**
 * Natural batching: with a free slot a request is written at once (no added latency when idle);
 * while every slot is committing, arrivals queue up and go together in the next transaction. The
 * busier the hub, the larger the batches, and one commit (one fsync) answers them all.
 */
export function createCommitter({ store, log, logger, concurrency = 2, maxBatch = 512 }: CommitterOptions) {
  let queue: Pending[] = [];
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
    const outcomes = await store.db.transaction((tx) =>
      writeBatch(
        tx as unknown as Db,
        batch.map((p) => p.item),
      ),
    );
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

  async function writeBatch(tx: Db, items: IngestItem[]): Promise<IngestOutcome[]> {
    // 1. De-duplicate: first within the batch, then against what is committed (the unique key
    // also serializes two processes racing on the same key).
    const firstOfKey = new Map<string, number>();
    const candidates: number[] = [];
    items.forEach((item, i) => {
      if (item.status !== 'accepted' || item.dedupeKey === null) return;
      const key = `${item.organizationId}\0${item.scope}\0${item.dedupeKey}`;
      if (!firstOfKey.has(key)) {
        firstOfKey.set(key, i);
        candidates.push(i);
      }
    });
    const accepted = new Set(
      items.flatMap((item, i) => (item.status === 'accepted' && item.dedupeKey === null ? [i] : [])),
    );
    if (candidates.length > 0) {
      const sorted = [...candidates].sort((a, b) =>
        (items[a]?.dedupeKey ?? '') < (items[b]?.dedupeKey ?? '') ? -1 : 1,
      );
      const inserted = await tx
        .insert(dedupeKeys)
        .values(
          sorted.map((i) => {
            const item = items[i] as IngestItem;
            return {
              organizationId: item.organizationId,
              scope: item.scope,
              key: item.dedupeKey as string,
              requestId: item.request ? item.requestId : null,
              eventId: item.events[0]?.id ?? null,
            };
          }),
        )
        .onConflictDoNothing()
        .returning({
          organizationId: dedupeKeys.organizationId,
          scope: dedupeKeys.scope,
          key: dedupeKeys.key,
        });
      const won = new Set(inserted.map((r) => `${r.organizationId}\0${r.scope}\0${r.key}`));
      for (const i of candidates) {
        const item = items[i] as IngestItem;
        if (won.has(`${item.organizationId}\0${item.scope}\0${item.dedupeKey}`)) accepted.add(i);
      }
    }

    await resolveUsers(
      tx,
      items.filter((_, i) => accepted.has(i)),
    );
    const outcomes: IngestOutcome[] = [];
    const requestRows: (typeof inboundRequests.$inferInsert)[] = [];
    const eventRows: (typeof events.$inferInsert)[] = [];
    const duplicates: number[] = [];
    items.forEach((item, i) => {
      const status = item.status === 'rejected' ? 'rejected' : accepted.has(i) ? 'accepted' : 'duplicate';
      if (item.request) {
        requestRows.push({
          id: item.requestId,
          organizationId: item.organizationId,
          installationId: item.installationId,
          receivedAt: item.request.receivedAt,
          method: item.request.method,
          path: item.request.path,
          headers: item.request.headers,
          body: status === 'duplicate' ? null : item.request.body,
          bodySize: item.request.body.length,
          status,
          errorCode: item.errorCode ?? null,
          dedupeKey: item.dedupeKey,
          eventCount: status === 'accepted' ? item.events.length : 0,
        });
      }
      if (status === 'accepted') {
        for (const { customer: _resolved, ...e } of item.events) {
          eventRows.push({
            ...e,
            organizationId: item.organizationId,
            installationId: item.installationId,
            rawRequestId: item.request ? item.requestId : null,
          });
        }
        outcomes.push({ status, requestId: item.requestId, eventIds: item.events.map((e) => e.id) });
      } else if (status === 'duplicate') {
        duplicates.push(i);
        outcomes.push({ status, requestId: null, eventIds: [] });
      } else {
        outcomes.push({ status, requestId: item.requestId });
      }
    });
    if (requestRows.length > 0) await tx.insert(inboundRequests).values(requestRows);
    if (eventRows.length > 0) {
      await tx.insert(events).values(eventRows);
      await log.append(
        tx,
        eventRows.map((e) => ({ eventId: e.id, topic: e.topic as Topic, partitionKey: e.partitionKey })),
      );
    }
    // A duplicate answers with what the first delivery produced.
    for (const i of duplicates) {
      const item = items[i] as IngestItem;
      const [original] = await tx
        .select({ requestId: dedupeKeys.requestId, eventId: dedupeKeys.eventId })
        .from(dedupeKeys)
        .where(
          and(
            eq(dedupeKeys.organizationId, item.organizationId),
            eq(dedupeKeys.scope, item.scope),
            eq(dedupeKeys.key, item.dedupeKey as string),
          ),
        );
      // Every event the original request made (a HubSpot batch makes several), in order.
      const made = original?.requestId
        ? await tx
            .select({ id: events.id })
            .from(events)
            .where(
              and(
                eq(events.organizationId, item.organizationId),
                eq(events.rawRequestId, original.requestId),
              ),
            )
            .orderBy(events.id)
        : [];
      outcomes[i] = {
        status: 'duplicate',
        requestId: original?.requestId ?? null,
        eventIds: made.length > 0 ? made.map((e) => e.id) : original?.eventId ? [original.eventId] : [],
      };
    }
    await applyEffects(
      tx,
      items.filter((_, i) => accepted.has(i)),
    );
    return outcomes;
  }

  /** Sets each event's `userId` from the organization's users' external ids, one query per batch. */
  async function resolveUsers(tx: Db, items: IngestItem[]): Promise<void> {
    const wanted = items.flatMap((item) =>
      item.events.flatMap((e) =>
        e.userId === null && e.customer
          ? [{ organizationId: item.organizationId, event: e, ...e.customer }]
          : [],
      ),
    );
    if (wanted.length === 0) return;
    const triples = sql.join(
      wanted.map((w) => sql`(${w.organizationId}, ${w.platform}, ${w.externalId})`),
      sql`, `,
    );
    const rows = await queryRows<{
      organization_id: string;
      platform: string;
      external_id: string;
      user_id: string;
    }>(
      tx,
      sql`select organization_id, platform, external_id, user_id from user_external_ids
          where (organization_id, platform, external_id) in (${triples})`,
    );
    const found = new Map(
      rows.map((r) => [`${r.organization_id}\0${r.platform}\0${r.external_id}`, r.user_id]),
    );
    for (const w of wanted) {
      w.event.userId = found.get(`${w.organizationId}\0${w.platform}\0${w.externalId}`) ?? null;
    }
  }

  /** What some canonical events mean for the hub itself: an uninstall, a privacy redaction. */
  async function applyEffects(tx: Db, items: IngestItem[]): Promise<void> {
    for (const item of items) {
      for (const e of item.events) {
        if (e.type === 'app.uninstalled' && item.installationId) {
          await tx
            .update(installations)
            .set({ status: 'uninstalled', uninstalledAt: sql`now()`, updatedAt: sql`now()` })
            .where(eq(installations.id, item.installationId));
        } else if (
          (e.type === 'privacy.customer_redact' || e.type === 'privacy.shop_redact') &&
          item.installationId
        ) {
          const customerId =
            e.type === 'privacy.customer_redact'
              ? (e.data as { customer_id?: string | null }).customer_id
              : undefined;
          await redact(tx, {
            organizationId: item.organizationId,
            installationId: item.installationId,
            customerId: customerId ?? null,
            all: e.type === 'privacy.shop_redact',
          });
        }
      }
    }
  }

  return {
    submit(item: IngestItem): Promise<IngestOutcome> {
      return new Promise((resolve, reject) => {
        queue.push({ item, resolve, reject });
        flushSoon();
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
