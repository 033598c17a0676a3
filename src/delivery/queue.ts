// The delivery queue in the database. Workers claim due deliveries with FOR UPDATE SKIP LOCKED and
// a lease (a crashed worker's claims are taken over when the lease ends); ordered destinations
// release a key's next delivery only when the one before it is done; rate-limited destinations
// hand out send slots (GCRA) under a row lock, so the limit holds across every worker. Unlimited
// destinations are claimed in one statement; rate-limited ones in a transaction of their own, each
// destination's booking in a savepoint, so that one destination failing holds up no other.
import { type SQL, sql } from 'drizzle-orm';
import { type EventRow, eventFromSqlText, type SqlEventRow } from '../events/envelope.ts';
import { type Db, queryPrepared, queryRows } from '../store/db.ts';
import { RATE_LIMIT_MAX, RATE_LIMIT_MIN } from './subscription.ts';

/** How far ahead a claim may book send slots of a rate-limited destination. */
export const SLOT_HORIZON_MS = 1000;

export interface Claimed {
  id: string;
  organizationId: string;
  eventId: string;
  installationId: string;
  attempt: number;
  roundAttempts: number;
  /** Not before this instant (rate limit); now when unlimited. */
  sendAt: Date;
  /** The destination's connector, as the claim found it. */
  connectorId: string;
  /** The event, read by the claim itself (no second round trip). */
  event: EventRow;
  /**
   * The event's data as the JSON text stored, when it was read as such (the router's hand-over):
   * `event.data` is then parsed only when read (`eventFromSqlText`).
   */
  dataJson?: string | undefined;
  /** The connector of the installation the event came from, if any. */
  sourceConnector: string | null;
  /** Handed over by the router with no row written yet (see `Unwritten`). */
  unwritten?: Unwritten | undefined;
}

/**
 * A fresh delivery the router gave its sender without writing its row: the row is written once,
 * with the first attempt's outcome (a success: one insert, instead of an insert leased and an
 * update). Until then only the log holds it: the router commits the log past its event only once
 * the row is in the table (`written`), so a crash re-routes and re-sends it (at least once, with
 * the same `webhook-id`). The first of two things writes it: the attempt's outcome (`settling`),
 * or the router, when the answer is slow in coming, leasing it to the sender as a claim would
 * (`leasing`; the outcome then updates that row, as for any claimed delivery). Whether it is in the
 * table, the router learns from its batch's `WriteLatch`.
 */
export class Unwritten {
  state: 'unwritten' | 'settling' | 'leasing' = 'unwritten';
  /** When the router made it: the row's `created_at`. */
  readonly createdAt = new Date();
  /** While `leasing`: resolves once the leased row is written. */
  leased: Promise<void> | undefined;
  private done = false;

  constructor(private readonly latch?: WriteLatch) {
    latch?.add();
  }

  /** Its row is in the table, whichever way. */
  written(): void {
    if (this.done) return;
    this.done = true;
    this.latch?.written();
  }

  /** Its row could not be written. */
  failed(err: unknown): void {
    if (this.done) return;
    this.done = true;
    this.latch?.failed(err ?? new Error('the delivery could not be written'));
  }
}

/**
 * The rows of the deliveries a router batch handed over unwritten (`Unwritten`): `wait()` resolves
 * once every one counted is in the table, and rejects as soon as one could not be written. A
 * counter for the batch, not a promise per delivery.
 */
export class WriteLatch {
  private pending = 0;
  private failure: { err: unknown } | undefined;
  private waiting: Promise<void> | undefined;
  private resolve: () => void = () => {};
  private reject: (err: unknown) => void = () => {};

  add(): void {
    this.pending++;
  }

  written(): void {
    if (--this.pending === 0) this.resolve();
  }

  failed(err: unknown): void {
    this.pending--;
    if (this.failure) return;
    this.failure = { err };
    this.reject(err);
  }

  wait(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure.err);
    if (this.pending === 0) return Promise.resolve();
    this.waiting ??= new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    return this.waiting;
  }
}

/**
 * Writes deliveries handed over unwritten as leased to `owner` (first attempt under way), as the
 * router's fresh deliveries were before write-once; answers the ids written. One already there
 * (routed by another member meanwhile) is left as it is; one whose destination was deleted
 * meanwhile is not written.
 */
export async function insertLeased(
  db: Db,
  owner: string,
  leaseMs: number,
  claimed: Claimed[],
): Promise<Set<string>> {
  if (claimed.length === 0) return new Set();
  const batch = JSON.stringify(
    claimed.map((c) => ({
      id: c.id,
      organization_id: c.organizationId,
      event_id: c.eventId,
      installation_id: c.installationId,
      attempts: c.attempt,
      created_at: (c.unwritten?.createdAt ?? new Date()).toISOString(),
    })),
  );
  const rows = await queryPrepared<{ id: string }>(
    db,
    'delivery_insert_leased',
    sql`insert into deliveries (id, organization_id, event_id, installation_id, status, attempts, round_attempts,
          lease_owner, lease_until, created_at)
        select x.id, x.organization_id, x.event_id, x.installation_id, 'delivering', x.attempts, x.attempts,
          ${owner}, now() + ${`${leaseMs} milliseconds`}::interval, x.created_at
        from json_to_recordset(${batch}::json)
          as x(id text, organization_id text, event_id text, installation_id text, attempts int, created_at timestamptz)
        where exists (select 1 from installations i where i.id = x.installation_id)
        on conflict do nothing
        returning id`,
  );
  return new Set(rows.map((r) => r.id));
}

export interface ClaimOptions {
  owner: string;
  limit: number;
  leaseMs: number;
  /** Deliveries this worker is already sending, per destination (counts against `perDestination`). */
  busy: ReadonlyMap<string, number>;
  perDestination: number;
  /** Rate-limited destinations the claim passes over (their booking failed lately: `RateLimitedClaim`). */
  passOver?: ReadonlySet<string> | undefined;
}

/** Leased by a worker whose lease has ended (its delivery is due again). */
const leaseEnded = sql`d.status = 'delivering' and d.lease_until < now()`;

/**
 * Due: waiting and its time has come, or its lease ended. For a row just locked, checked again
 * (another worker may have leased it meanwhile), in a form no partial index matches: as a plain
 * `status in (...) and ... or ...`, it let the planner reach the rows through those indexes, every
 * entry read, instead of probing the primary key for each.
 */
const stillDue = sql`case d.status when 'pending' then d.next_attempt_at <= now()
                                    when 'failed' then d.next_attempt_at <= now()
                                    when 'delivering' then d.lease_until < now()
                                    else false end`;

/** First of its key (`d`), when its destination is ordered (`deliveries_due_for` checks this itself). */
const firstOfKey = sql`(d.order_key is null or not exists (
        select 1 from deliveries e
        where e.installation_id = d.installation_id and e.order_key = d.order_key
          and e.seq < d.seq and e.status in ('pending', 'delivering', 'failed')))`;

const busyJson = (busy: ReadonlyMap<string, number>) => JSON.stringify(Object.fromEntries(busy));

interface ClaimedRow {
  id: string;
  organization_id: string;
  event_id: string;
  installation_id: string;
  attempts: number;
  round_attempts: number;
  connector_id: string;
  source_connector: string | null;
  now: Date | string;
  /** The event's row but its data, as `json_build_object` gives it. */
  event: Omit<SqlEventRow, 'data'>;
  /** The event's data as the JSON text stored (see `eventFromSqlText`). */
  data_json: string;
}

/**
 * The CTE `leased`: the deliveries a CTE `claimed` just leased (its rows: id, organization_id,
 * event_id, installation_id, attempts, round_attempts) with what sending them takes, events included.
 */
const leasedFromClaimed = sql`leased as (
      select c.*, i.connector_id, si.connector_id as source_connector, now() as now,
        json_build_object('id', e.id, 'organization_id', e.organization_id, 'installation_id', e.installation_id,
          'source', e.source, 'type', e.type, 'subject', e.subject, 'time', e.time, 'partition_key', e.partition_key,
          'topic', e.topic, 'user_id', e.user_id, 'raw_request_id', e.raw_request_id, 'created_at', e.created_at)
          as event,
        e.data::text as data_json
      from claimed c
      join events e on e.id = c.event_id
      join installations i on i.id = c.installation_id
      left join installations si on si.id = e.installation_id
    )`;

/** CTEs leasing the deliveries `picked` selects (a query yielding `id`): `leased` has them with their events. */
function leaseAndRead(o: ClaimOptions, picked: SQL) {
  return sql`picked as (${picked}),
    claimed as (
      update deliveries d set status = 'delivering', lease_owner = ${o.owner},
        lease_until = now() + ${`${o.leaseMs} milliseconds`}::interval,
        attempts = d.attempts + 1, round_attempts = d.round_attempts + 1, updated_at = now()
      where d.id = any(array(select id from picked))
      returning d.id, d.organization_id, d.event_id, d.installation_id, d.attempts, d.round_attempts
    ),
    ${leasedFromClaimed}`;
}

function toClaimed(r: ClaimedRow, sendAt: Date): Claimed {
  return {
    id: r.id,
    organizationId: r.organization_id,
    eventId: r.event_id,
    installationId: r.installation_id,
    attempt: Number(r.attempts),
    roundAttempts: Number(r.round_attempts),
    sendAt,
    connectorId: r.connector_id,
    sourceConnector: r.source_connector,
    // The data parsed only if a connector reads it (the webhook connector sends the text).
    event: eventFromSqlText(r.event, r.data_json),
    dataJson: r.data_json,
  };
}

/** Claims due deliveries of every kind of destination: unlimited ones first, then rate-limited ones. */
export async function claimDeliveries(db: Db, o: ClaimOptions): Promise<Claimed[]> {
  const fast = await claimUnlimited(db, o);
  if (!fast.rateLimitedWork) return fast.claimed;
  const busy = new Map(o.busy);
  for (const c of fast.claimed) busy.set(c.installationId, (busy.get(c.installationId) ?? 0) + 1);
  const limited = await claimRateLimited(db, { ...o, limit: o.limit - fast.claimed.length, busy });
  return [...fast.claimed, ...limited.claimed];
}

/**
 * Destinations without a rate limit, in one autocommit statement. A window of the earliest due
 * deliveries (twice what one destination may take) is read along the due index, and ended leases
 * along theirs, without locking; of those on an active, unpaused destination (first of their key
 * when ordered), at most `perDestination` per destination less what this worker already sends
 * there are picked, and only those are locked (skipping any another worker holds), leased and
 * read with their events. When a full window gives nothing, it may hold only backlogs this claim
 * cannot take (see `claimPerDestination`), which then looks at every destination one by one.
 *
 * The function `deliveries_due_window` (migration 0006) reads the window along the due index
 * whatever the planner believes of the table: planned here, with statistics taken while nearly
 * every delivery had succeeded (a steady state), a burst that queued thousands had all of them
 * read and sorted on every claim. Locking only the picked rows matters as much: a destination with
 * little room left once had the whole window locked, a WAL record per row, to take a few.
 *
 * It also tells whether any rate-limited destination has work outstanding (`claimRateLimited`
 * is worth its transaction then), so a hub without such destinations never runs that.
 */
export async function claimUnlimited(
  db: Db,
  o: ClaimOptions,
): Promise<{ claimed: Claimed[]; rateLimitedWork: boolean; nothingDue: boolean }> {
  const busy = busyJson(o.busy);
  const limit = Math.max(0, o.limit);
  // No claim takes more than `perDestination` from one destination: a window larger than twice
  // that mostly read rows it could not take when one destination has the backlog.
  const windowSize = 2 * Math.min(limit, o.perDestination);
  const rows = await queryPrepared<
    Partial<ClaimedRow> & { rate_limited: boolean; window_full: boolean; nothing_due: boolean }
  >(
    db,
    'delivery_claim_unlimited',
    sql`with waiting as materialized (select * from deliveries_due_window(${windowSize})),
        expired as materialized (
          select d.id, d.installation_id, d.next_attempt_at, d.seq, d.order_key from deliveries d
          join installations i on i.id = d.installation_id
          where ${leaseEnded} and i.status = 'active' and (i.destination->>'rateLimit') is null
          order by d.lease_until limit ${windowSize}),
        candidates as (
          select d.id, d.next_attempt_at,
            row_number() over (partition by d.installation_id order by d.next_attempt_at, d.seq)
              + coalesce((${busy}::jsonb ->> d.installation_id)::int, 0) as n
          from (select * from waiting union all select * from expired) d
          join installations i on i.id = d.installation_id
          left join destination_state s on s.installation_id = d.installation_id
          where i.status = 'active' and (i.destination->>'rateLimit') is null
            and (s.throttled_until is null or s.throttled_until <= now()) and ${firstOfKey}
        ),
        ${leaseAndRead(
          o,
          // One primary-key probe per picked id, the row checked again once locked.
          sql`select d.id
              from unnest(array(
                  select id from candidates where n <= ${o.perDestination} order by next_attempt_at limit ${limit}
                )) as p(id)
              join deliveries d on d.id = p.id
              where ${stillDue}
              for update of d skip locked`,
        )}
        select l.*, f.rate_limited, f.window_full, f.nothing_due
        from (select (select count(*) from waiting) >= ${windowSize} as window_full,
          not exists (select 1 from waiting) and not exists (select 1 from expired) as nothing_due, exists (
            select 1 from installations ri
            where ri.status = 'active' and (ri.destination->>'rateLimit') is not null
              and exists (select 1 from deliveries rd where rd.installation_id = ri.id
                            and rd.status in ('pending', 'failed', 'delivering'))
          ) as rate_limited) f
        left join leased l on true`,
  );
  const claimed = rows.flatMap((r) =>
    r.id ? [toClaimed(r as ClaimedRow, new Date(r.now as Date | string))] : [],
  );
  // Starved only if the window was all there was room for: fewer rows means it saw every due one.
  // A full window that gave nothing holds only what this claim cannot take: a destination's
  // backlog at its cap, older backlogs of rate-limited, paused or inactive destinations, or rows
  // another worker has just locked.
  const full = [...o.busy].flatMap(([id, n]) => (n >= o.perDestination ? [id] : []));
  const starved = claimed.length === 0 && Boolean(rows[0]?.window_full);
  return {
    claimed: starved ? await claimPerDestination(db, o, full) : claimed,
    rateLimitedWork: Boolean(rows[0]?.rate_limited),
    // No delivery due at all, at any destination: slots given back cannot change that.
    nothingDue: Boolean(rows[0]?.nothing_due),
  };
}

/**
 * Unlimited destinations one by one (their due deliveries found per destination, along their own
 * index: `deliveries_due_for`), leaving out the ones this worker sends its most to. A backlog
 * older than everything else that this claim cannot take (a slow endpoint at its cap, a
 * rate-limited, paused or disabled one) fills `claimUnlimited`'s window on every claim; without
 * this, no other destination would get a delivery until that backlog drained. It costs an index
 * probe per destination, so it runs only when a full window gave nothing.
 */
async function claimPerDestination(db: Db, o: ClaimOptions, full: string[]): Promise<Claimed[]> {
  if (o.limit <= 0) return [];
  const rows = await queryPrepared<ClaimedRow>(
    db,
    'delivery_claim_per_destination',
    sql`with ${leaseAndRead(
      o,
      sql`select d.id from installations i
          left join destination_state s on s.installation_id = i.id
          cross join lateral (
            select d.id, d.next_attempt_at
            from deliveries_due_for(i.id, greatest(0, ${o.perDestination} - coalesce((${busyJson(o.busy)}::jsonb ->> i.id)::int, 0))) w
            join deliveries d on d.id = w.id
            where (s.throttled_until is null or s.throttled_until <= now()) and ${stillDue}
            order by d.next_attempt_at
            for update of d skip locked
          ) d
          where i.status = 'active' and i.destination is not null and (i.destination->>'rateLimit') is null
            and i.id <> all (select json_array_elements_text(${JSON.stringify(full)}::json))
          order by d.next_attempt_at
          limit ${o.limit}`,
    )}
    select * from leased`,
  );
  return rows.map((r) => toClaimed(r, new Date(r.now)));
}

interface CandidateRow {
  id: string;
  installation_id: string;
  rate_limit: string | number;
  now: Date | string;
}

/**
 * A destination's stored rate limit (`i`: its installation) as the claim reads it: within the range
 * the API accepts, and the least for anything but a number, as `effectiveRateLimit` does. A row
 * stored before the API checked the range (or written by hand) would otherwise have the claim
 * book slots no timestamp can hold, or overflow an integer, and fail for every destination.
 */
const storedRateLimit = (i: string) => {
  const value = sql.raw(`${i}.destination->'rateLimit'`);
  return sql`least(greatest(case jsonb_typeof(${value}) when 'number' then (${value})::numeric else 0 end,
    ${sql.raw(String(RATE_LIMIT_MIN))}), ${sql.raw(String(RATE_LIMIT_MAX))})::float8`;
};

/** What a claim of rate-limited destinations took, and the destinations whose booking failed. */
export interface RateLimitedClaim {
  claimed: Claimed[];
  /**
   * Destinations whose slots could not be booked: their deliveries were left as they were, and the
   * caller passes them over for a while (`ClaimOptions.passOver`). The error may hold the query's
   * parameters: log the driver's own error (`driverError`).
   */
  failed: { installationId: string; error: unknown }[];
}

/**
 * Destinations with a rate limit, in a transaction: their due deliveries (found per destination,
 * so a long backlog elsewhere is not scanned), then send slots booked under each destination's
 * row lock, then the leases. Destinations whose slots are booked a horizon ahead are passed over,
 * and so are those of `passOver`. Each destination's booking runs in a savepoint: one that fails
 * is rolled back and reported in `failed`, and the others are claimed.
 */
export async function claimRateLimited(db: Db, o: ClaimOptions): Promise<RateLimitedClaim> {
  if (o.limit <= 0) return { claimed: [], failed: [] };
  const busy = busyJson(o.busy);
  const passOver = JSON.stringify([...(o.passOver ?? [])]);
  return db.transaction(async (txDb) => {
    const tx = txDb as unknown as Db;
    const candidates = await queryRows<CandidateRow>(
      tx,
      sql`select d.id, d.installation_id, ${storedRateLimit('i')} as rate_limit, now() as now
          from installations i
          left join destination_state s on s.installation_id = i.id
          -- No more than this worker may take, nor than the horizon has slots for.
          cross join lateral (select greatest(0, least(
              ${o.perDestination} - coalesce((${busy}::jsonb ->> i.id)::int, 0),
              ceil(${storedRateLimit('i')} * ${SLOT_HORIZON_MS / 1000}) + 1))::int as n) room
          cross join lateral (
            select d.id, d.installation_id, d.next_attempt_at
            from (
              select w.id from deliveries_due_for(i.id, room.n) w
              union all
              select e.id from deliveries e
              where e.installation_id = i.id and e.status = 'delivering' and e.lease_until < now()
            ) c
            join deliveries d on d.id = c.id
            where (s.throttled_until is null or s.throttled_until <= now()) and ${stillDue} and ${firstOfKey}
            order by d.next_attempt_at
            limit room.n
            for update of d skip locked
          ) d
          where i.status = 'active' and (i.destination->>'rateLimit') is not null
            and i.id <> all (select json_array_elements_text(${passOver}::json))
            and (s.tat is null or s.tat < now() + ${`${SLOT_HORIZON_MS} milliseconds`}::interval)
          order by d.next_attempt_at
          limit ${o.limit * 2}`,
    );
    // At most `perDestination` in flight per destination, so one slow endpoint cannot take every slot.
    const taken = new Map<string, CandidateRow[]>();
    let total = 0;
    for (const c of candidates) {
      const list = taken.get(c.installation_id) ?? [];
      if (total >= o.limit || list.length + (o.busy.get(c.installation_id) ?? 0) >= o.perDestination)
        continue;
      list.push(c);
      taken.set(c.installation_id, list);
      total++;
    }
    const sendAt = new Map<string, Date>();
    const failed: RateLimitedClaim['failed'] = [];
    // The database's clock, one for every worker: slots booked by several hosts line up.
    const nowMs = candidates[0] ? new Date(candidates[0].now).getTime() : Date.now();
    for (const [installationId, list] of taken) {
      const rate = Number(list[0]?.rate_limit);
      let slots: Date[];
      try {
        // A savepoint: a failure rolls back this destination's booking only.
        slots = await tx.transaction((savepoint) =>
          bookSlots(savepoint as unknown as Db, installationId, rate, list.length, nowMs),
        );
      } catch (error) {
        failed.push({ installationId, error });
        continue;
      }
      list.splice(slots.length);
      list.forEach((c, i) => {
        sendAt.set(c.id, slots[i] as Date);
      });
    }
    if (sendAt.size === 0) return { claimed: [], failed };
    const ids = JSON.stringify([...sendAt.keys()]);
    const rows = await queryRows<ClaimedRow>(
      tx,
      sql`with ${leaseAndRead(o, sql`select value as id from json_array_elements_text(${ids}::json)`)}
          select * from leased`,
    );
    return { claimed: rows.map((r) => toClaimed(r, sendAt.get(r.id) as Date)), failed };
  });
}

/**
 * Books up to `wanted` send slots `1/rate` seconds apart, no further ahead than the horizon (GCRA:
 * `tat` is when the next request may go). Returns the slots' instants, possibly fewer than wanted.
 */
async function bookSlots(
  tx: Db,
  installationId: string,
  rate: number,
  wanted: number,
  nowMs: number,
): Promise<Date[]> {
  await tx.execute(
    sql`insert into destination_state (installation_id) values (${installationId}) on conflict do nothing`,
  );
  const [state] = await queryRows<{ tat: Date | string | null }>(
    tx,
    sql`select tat from destination_state where installation_id = ${installationId} for update`,
  );
  // The clock is read again once the row is ours: a claim that waited for it (a settling
  // transaction holds it) must not book slots already past, which would all go out at once.
  const [clock] = await queryRows<{ now: Date | string }>(tx, sql`select clock_timestamp() as now`);
  nowMs = Math.max(nowMs, clock ? new Date(clock.now).getTime() : nowMs);
  const interval = 1000 / rate;
  const start = Math.max(nowMs, state?.tat ? new Date(state.tat).getTime() : 0);
  const room = Math.floor((nowMs + Math.max(SLOT_HORIZON_MS, interval) - start) / interval);
  const count = Math.max(0, Math.min(wanted, room));
  if (count === 0) return [];
  const slots = Array.from({ length: count }, (_, i) => new Date(start + i * interval));
  await tx.execute(
    sql`update destination_state set tat = ${new Date(start + count * interval)} where installation_id = ${installationId}`,
  );
  return slots;
}
