// What an attempt's result does to the queue, atomically: the attempt is recorded; the delivery
// succeeds, is scheduled for a retry, or is dead; the destination is throttled, marked failing or
// disabled; and `delivery.exhausted` / `endpoint.disabled` enter the organization's log. A batch of
// successes only (the common case) is one statement; any failure makes it a transaction.
import { sql } from 'drizzle-orm';
import type { DeliveryResult } from '../connectors/sdk.ts';
import { topicOf } from '../events/types.ts';
import { newId, uuidv7 } from '../ids.ts';
import type { EventLog } from '../log/port.ts';
import { type Db, isDatabaseUnavailable, queryPrepared, queryRows } from '../store/db.ts';
import { deliveryAttempts, events } from '../store/schema.ts';
import { type Claimed, insertLeased } from './queue.ts';
import { MAX_RETRY_AFTER_MS, nextDelay, type RetryPolicy } from './retry.ts';

export const RESPONSE_EXCERPT_BYTES = 4096;

export interface OutcomeContext {
  db: Db;
  log: EventLog;
  policy: RetryPolicy;
  disableAfterMs: number;
  owner: string;
}

export interface AttemptRecord {
  claimed: Claimed;
  connector: string;
  eventType: string;
  startedAt: Date;
  durationMs: number;
  result: DeliveryResult;
}

/** What happened, for metrics and logs. */
export type Settled = 'succeeded' | 'retrying' | 'dead' | 'lost';

function excerpt(text: string | undefined): string | null {
  if (text === undefined) return null;
  // At most three UTF-8 bytes per UTF-16 unit: short enough without encoding it.
  if (text.length * 3 <= RESPONSE_EXCERPT_BYTES) return text;
  const bytes = Buffer.from(text, 'utf8');
  return bytes.length <= RESPONSE_EXCERPT_BYTES
    ? text
    : bytes.subarray(0, RESPONSE_EXCERPT_BYTES).toString('utf8');
}

/**
 * The delivery is still leased to this worker. A lease owner is set only with the status
 * `delivering` and cleared by every change away from it, so the owner alone says so; testing the
 * status as well let the planner find the batch's rows through the partial index of leased
 * deliveries (`status = 'delivering'`), whose entries for every delivery leased since the last
 * vacuum it then read (19,000 to settle 3, in the backlog benchmark), instead of one primary-key
 * probe per row.
 */
const heldBy = (owner: string) => sql`d.lease_owner = ${owner}`;

const ms = (n: number) => sql`${`${Math.round(n)} milliseconds`}::interval`;

async function emit(tx: Db, log: EventLog, organizationId: string, type: string, key: string, data: object) {
  const id = uuidv7();
  const topic = topicOf(type);
  await tx.insert(events).values({
    id,
    organizationId,
    installationId: null,
    source: '/interchange/delivery',
    type,
    subject: `installations/${key}`,
    time: new Date(),
    partitionKey: key,
    topic,
    userId: null,
    data,
  });
  await log.append(tx, [{ eventId: id, topic, partitionKey: key }]);
}

/** Disables the destination if it is still active; true when it did (and logged `endpoint.disabled`). */
async function disable(
  tx: Db,
  ctx: OutcomeContext,
  a: AttemptRecord,
  reason: 'gone' | 'failing',
  failingSince: Date | null,
): Promise<boolean> {
  const rows = await queryRows<{ disabled_at: Date | string }>(
    tx,
    sql`update installations set status = 'disabled', disabled_reason = ${reason}, disabled_at = now(), updated_at = now()
        where id = ${a.claimed.installationId} and status = 'active' returning disabled_at`,
  );
  const row = rows[0];
  if (!row) return false;
  await emit(tx, ctx.log, a.claimed.organizationId, 'endpoint.disabled', a.claimed.installationId, {
    destination_id: a.claimed.installationId,
    connector: a.connector,
    reason,
    failing_since: failingSince ? failingSince.toISOString() : null,
    disabled_at: new Date(row.disabled_at).toISOString(),
  });
  return true;
}

function attemptRow(ctx: OutcomeContext, a: AttemptRecord) {
  const { claimed, result } = a;
  return {
    id: newId('deliveryAttempt'),
    deliveryId: claimed.id,
    organizationId: claimed.organizationId,
    attempt: claimed.attempt,
    startedAt: a.startedAt,
    durationMs: Math.round(a.durationMs),
    outcome: result.status === 'delivered' ? ('succeeded' as const) : result.status,
    statusCode: result.statusCode ?? null,
    error: result.status === 'delivered' ? null : result.error.slice(0, 1000),
    response: excerpt(result.response),
    worker: ctx.owner,
  };
}

/**
 * Settles many attempts atomically: successes only in one statement; otherwise one transaction,
 * every attempt recorded, the successes in one statement, anything else one by one. Returns what
 * became of each, in order.
 */
export async function settleAll(ctx: OutcomeContext, records: AttemptRecord[]): Promise<Settled[]> {
  if (records.length === 0) return [];
  if (records.every((a) => a.result.status === 'delivered')) return settleDelivered(ctx, records);
  const settled = await ctx.db.transaction(async (txDb) => {
    const tx = txDb as unknown as Db;
    const settled: Settled[] = records.map(() => 'lost');
    // Deliveries handed over unwritten are written leased first, then settled like the others
    // (failures are rare: not worth a path of their own). One another member wrote is lost.
    const unwritten = records.filter((a) => a.claimed.unwritten);
    const wrote = await insertLeased(
      tx,
      ctx.owner,
      0,
      unwritten.map((a) => a.claimed),
    );
    // A claimed delivery's row may be gone (its destination deleted meanwhile): its attempt is not
    // recorded. The rows are locked as a foreign key's check would (attempts have none, see
    // `deliveryAttempts`), so that a deletion waits for this transaction and takes the attempts along.
    const claimedIds = records.flatMap((a) => (a.claimed.unwritten ? [] : [a.claimed.id]));
    const exist = new Set(
      claimedIds.length === 0
        ? []
        : (
            await queryRows<{ id: string }>(
              tx,
              sql`select id from deliveries where id in ${claimedIds} for key share`,
            )
          ).map((r) => r.id),
    );
    const present = records.flatMap((a, i) =>
      (a.claimed.unwritten ? wrote : exist).has(a.claimed.id) ? [i] : [],
    );
    if (present.length > 0)
      await tx
        .insert(deliveryAttempts)
        .values(present.map((i) => attemptRow(ctx, records[i] as AttemptRecord)));
    let logged = false;
    const ok = present.filter((i) => (records[i] as AttemptRecord).result.status === 'delivered');
    if (ok.length > 0) {
      const values = sql.join(
        ok.map((i) => {
          const a = records[i] as AttemptRecord;
          return sql`(${a.claimed.id}, ${a.result.statusCode ?? null}::int)`;
        }),
        sql`, `,
      );
      const done = await queryRows<{ id: string }>(
        tx,
        sql`update deliveries d set status = 'succeeded', delivered_at = now(), lease_owner = null, lease_until = null,
              last_status_code = v.code, last_error = null, updated_at = now()
            from (values ${values}) as v(id, code)
            where d.id = v.id and ${heldBy(ctx.owner)}
            returning d.id`,
      );
      const won = new Set(done.map((r) => r.id));
      for (const i of ok)
        settled[i] = won.has((records[i] as AttemptRecord).claimed.id) ? 'succeeded' : 'lost';
      const destinations = [...new Set(ok.map((i) => (records[i] as AttemptRecord).claimed.installationId))];
      await tx.execute(
        sql`update destination_state set failing_since = null
            where installation_id in ${destinations} and failing_since is not null`,
      );
    }
    for (const i of present) {
      const a = records[i] as AttemptRecord;
      if (a.result.status === 'delivered') continue;
      const failure = await settleFailure(tx, ctx, a);
      settled[i] = failure.settled;
      logged ||= failure.logged;
    }
    return { settled, logged };
  });
  // Consumers are woken only when a failure logged `delivery.exhausted` or `endpoint.disabled`.
  if (settled.logged) ctx.log.committed();
  return settled.settled;
}

/**
 * Successes only, in one autocommit statement (no BEGIN/COMMIT round trips): the deliveries this
 * worker still holds marked succeeded, those handed over unwritten inserted succeeded (their one
 * write; one that another member wrote meanwhile is lost), the attempts of both recorded, the
 * destinations' failing streaks ended. The batch travels as one JSON parameter.
 */
async function settleDelivered(ctx: OutcomeContext, records: AttemptRecord[]): Promise<Settled[]> {
  // The rows of `attemptRow`, built directly (a hot path: one per delivery).
  const batch = JSON.stringify(
    records.map(({ claimed, result, startedAt, durationMs }) => ({
      id: newId('deliveryAttempt'),
      delivery_id: claimed.id,
      organization_id: claimed.organizationId,
      installation_id: claimed.installationId,
      event_id: claimed.eventId,
      attempt: claimed.attempt,
      started_at: startedAt.toISOString(),
      duration_ms: Math.round(durationMs),
      status_code: result.statusCode ?? null,
      response: excerpt(result.response),
      created_at: claimed.unwritten ? claimed.unwritten.createdAt.toISOString() : null,
    })),
  );
  const done = await queryPrepared<{ id: string }>(
    ctx.db,
    'delivery_settle_delivered',
    sql`with a as (
          select * from json_to_recordset(${batch}::json) as x(id text, delivery_id text, organization_id text,
            installation_id text, event_id text, attempt int, started_at timestamptz, duration_ms int,
            status_code int, response text, created_at timestamptz)
        ),
        once as (
          insert into deliveries (id, organization_id, event_id, installation_id, status, attempts, round_attempts,
            last_status_code, delivered_at, created_at)
          select delivery_id, organization_id, event_id, installation_id, 'succeeded', attempt, attempt, status_code,
            now(), created_at
          -- A destination deleted while its delivery was under way takes the delivery with it.
          from a where created_at is not null and exists (select 1 from installations i where i.id = a.installation_id)
          on conflict do nothing
          returning id
        ),
        -- The rows through unnest, which the planner takes for a few (json_to_recordset: always
        -- 100), so that it probes the primary key for each rather than scanning the table.
        updated as (
          update deliveries d set status = 'succeeded', delivered_at = now(), lease_owner = null, lease_until = null,
            last_status_code = t.code, last_error = null, updated_at = now()
          from unnest(array(select delivery_id from a where created_at is null),
                      array(select status_code from a where created_at is null)) as t(id, code)
          where d.id = t.id and ${heldBy(ctx.owner)}
          returning d.id
        ),
        recorded as (
          insert into delivery_attempts (id, delivery_id, organization_id, attempt, started_at, duration_ms,
            outcome, status_code, error, response, worker)
          select id, delivery_id, organization_id, attempt, started_at, duration_ms, 'succeeded', status_code,
            null, response, ${ctx.owner} from a
          -- Written or updated just now, or a claimed delivery this worker no longer holds whose row
          -- is still there, locked as a foreign key's check would (attempts have none, see
          -- \`deliveryAttempts\`): a deletion waits for this statement and takes the attempt along.
          -- (A row this statement updates cannot be locked by it as well: the lock would skip it.)
          where a.delivery_id in (select id from once) or a.delivery_id in (select id from updated)
            or (a.created_at is null and a.delivery_id not in (select id from updated)
              and exists (select 1 from deliveries d where d.id = a.delivery_id for key share))
        ),
        recovered as (
          update destination_state set failing_since = null
          where installation_id in (select installation_id from a) and failing_since is not null
        )
        select id from once union all select id from updated`,
  );
  const won = new Set(done.map((r) => r.id));
  return records.map((a) => (won.has(a.claimed.id) ? 'succeeded' : 'lost'));
}

/**
 * A retry or a final failure: reschedule or bury the delivery, and judge the destination. `logged`:
 * an operational event went into the log with it.
 */
async function settleFailure(
  tx: Db,
  ctx: OutcomeContext,
  a: AttemptRecord,
): Promise<{ settled: Settled; logged: boolean }> {
  const { claimed, result } = a;
  if (result.status === 'delivered') throw new Error('not a failure');
  const mine = sql`id = ${claimed.id} and status = 'delivering' and lease_owner = ${ctx.owner}`;
  const code = result.statusCode ?? null;
  const error = result.error.slice(0, 1000);
  const delay =
    result.status === 'retry' ? nextDelay(ctx.policy, claimed.roundAttempts, result.retryAfterMs) : undefined;
  let settled: Settled;
  let logged = false;
  if (delay !== undefined) {
    const rows = await queryRows(
      tx,
      sql`update deliveries set status = 'failed', next_attempt_at = now() + ${ms(delay)}, lease_owner = null,
            lease_until = null, last_status_code = ${code}, last_error = ${error}, updated_at = now() where ${mine} returning id`,
    );
    settled = rows.length > 0 ? 'retrying' : 'lost';
  } else {
    const rows = await queryRows(
      tx,
      sql`update deliveries set status = 'dead', lease_owner = null, lease_until = null,
            last_status_code = ${code}, last_error = ${error}, updated_at = now() where ${mine} returning id`,
    );
    settled = rows.length > 0 ? 'dead' : 'lost';
    if (settled === 'dead' && a.eventType !== 'delivery.exhausted') {
      await emit(tx, ctx.log, claimed.organizationId, 'delivery.exhausted', claimed.installationId, {
        delivery_id: claimed.id,
        destination_id: claimed.installationId,
        event_id: claimed.eventId,
        event_type: a.eventType,
        attempts: claimed.attempt,
        last_status_code: code,
        last_error: error,
      });
      logged = true;
    }
  }

  if (result.status === 'failed' && result.disable) {
    logged = (await disable(tx, ctx, a, 'gone', null)) || logged;
  } else if (result.status === 'retry') {
    // The destination is failing: note since when, pause it when it asks to slow down, and
    // disable it once it has failed without a break for too long.
    const throttleMs = result.throttle
      ? Math.min(result.retryAfterMs ?? delay ?? 5000, MAX_RETRY_AFTER_MS)
      : 0;
    const [state] = await queryRows<{ failing_since: Date | string; now: Date | string }>(
      tx,
      sql`insert into destination_state (installation_id, failing_since, throttled_until)
          values (${claimed.installationId}, now(), ${throttleMs > 0 ? sql`now() + ${ms(throttleMs)}` : null})
          on conflict (installation_id) do update set
            failing_since = coalesce(destination_state.failing_since, excluded.failing_since),
            throttled_until = coalesce(greatest(destination_state.throttled_until, excluded.throttled_until), destination_state.throttled_until, excluded.throttled_until)
          returning failing_since, now() as now`,
    );
    if (state) {
      const since = new Date(state.failing_since);
      if (new Date(state.now).getTime() - since.getTime() >= ctx.disableAfterMs) {
        logged = (await disable(tx, ctx, a, 'failing', since)) || logged;
      }
    }
  }
  return { settled, logged };
}

/**
 * Group settling: attempts that finish while a statement is under way wait and are settled
 * together in the next, so a busy worker commits once per batch, not once per delivery. Two lanes,
 * one statement at a time each: successes (one statement for the batch) and the rest (a
 * transaction), so a slow failure transaction never holds successes back, and successes come in
 * batches as large as one statement's time lets them grow (with two statements at a time, half
 * the size: twice the statements, each a round trip and a wake-up of the server).
 */
export function createSettler(ctx: OutcomeContext, maxBatch = 256) {
  type Pending = { record: AttemptRecord; resolve(s: Settled): void; reject(e: unknown): void };
  const lanes = [
    { queue: [] as Pending[], running: false },
    { queue: [] as Pending[], running: false },
  ];
  let scheduled = false;

  /**
   * One statement (or transaction) for the batch. Should it fail for anything but the database
   * being unavailable, one attempt may be the cause (a row the database refuses): its batch-mates
   * must not pay for it, so each is settled again on its own.
   */
  async function settleBatch(batch: Pending[]): Promise<void> {
    try {
      const results = await settleAll(
        ctx,
        batch.map((p) => p.record),
      );
      batch.forEach((p, i) => {
        p.resolve(results[i] as Settled);
      });
      return;
    } catch (err) {
      if (batch.length === 1 || isDatabaseUnavailable(err)) {
        for (const p of batch) p.reject(err);
        return;
      }
    }
    for (const p of batch) {
      try {
        const [result] = await settleAll(ctx, [p.record]);
        p.resolve(result as Settled);
      } catch (err) {
        p.reject(err);
      }
    }
  }

  function flush() {
    for (const lane of lanes) {
      if (lane.running || lane.queue.length === 0) continue;
      const batch = lane.queue.splice(0, maxBatch);
      lane.running = true;
      settleBatch(batch).finally(() => {
        lane.running = false;
        flush();
      });
    }
  }

  const enqueue = (record: AttemptRecord): Promise<Settled> =>
    new Promise((resolve, reject) => {
      (lanes[record.result.status === 'delivered' ? 0 : 1] as (typeof lanes)[number]).queue.push({
        record,
        resolve,
        reject,
      });
      if (!scheduled) {
        scheduled = true;
        setImmediate(() => {
          scheduled = false;
          flush();
        });
      }
    });

  return async (record: AttemptRecord): Promise<Settled> => {
    const { unwritten } = record.claimed;
    if (!unwritten) return enqueue(record);
    if (unwritten.state === 'leasing') {
      // The router is writing it leased: settle that row, like any claimed delivery.
      await unwritten.leased;
      return enqueue({ ...record, claimed: { ...record.claimed, unwritten: undefined } });
    }
    // Its outcome writes it: the router waits for that before committing the log past its event.
    unwritten.state = 'settling';
    try {
      const settled = await enqueue(record);
      unwritten.written();
      return settled;
    } catch (err) {
      unwritten.failed(err);
      throw err;
    }
  };
}
