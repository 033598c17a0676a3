// The delivery queue in the database. Workers claim due deliveries with FOR UPDATE SKIP LOCKED and
// a lease (a crashed worker's claims are taken over when the lease ends); ordered destinations
// release a key's next delivery only when the one before it is done; rate-limited destinations
// hand out send slots (GCRA) under a row lock, so the limit holds across every worker.
import { sql } from 'drizzle-orm';
import { type Db, queryRows } from '../store/db.ts';

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
}

export interface ClaimOptions {
  owner: string;
  limit: number;
  leaseMs: number;
  /** Deliveries this worker is already sending, per destination (counts against `perDestination`). */
  busy: ReadonlyMap<string, number>;
  perDestination: number;
}

interface CandidateRow {
  id: string;
  organization_id: string;
  event_id: string;
  installation_id: string;
  rate_limit: string | number | null;
  now: Date | string;
}

export async function claimDeliveries(db: Db, o: ClaimOptions): Promise<Claimed[]> {
  if (o.limit <= 0) return [];
  return db.transaction(async (txDb) => {
    const tx = txDb as unknown as Db;
    const candidates = await queryRows<CandidateRow>(
      tx,
      sql`select d.id, d.organization_id, d.event_id, d.installation_id, i.destination->'rateLimit' as rate_limit,
            now() as now
          from deliveries d
          join installations i on i.id = d.installation_id
          left join destination_state s on s.installation_id = d.installation_id
          where ((d.status in ('pending', 'failed') and d.next_attempt_at <= now())
                 or (d.status = 'delivering' and d.lease_until < now()))
            and i.status = 'active'
            and (s.throttled_until is null or s.throttled_until <= now())
            and (d.order_key is null or not exists (
                  select 1 from deliveries e
                  where e.installation_id = d.installation_id and e.order_key = d.order_key
                    and e.seq < d.seq and e.status in ('pending', 'delivering', 'failed')))
          order by d.next_attempt_at
          limit ${o.limit * 2}
          for update of d skip locked`,
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
    // The database's clock, one for every worker: slots booked by several hosts line up.
    const nowMs = candidates[0] ? new Date(candidates[0].now).getTime() : Date.now();
    for (const [installationId, list] of taken) {
      const rate = list[0]?.rate_limit == null ? null : Number(list[0].rate_limit);
      if (!rate) {
        for (const c of list) sendAt.set(c.id, new Date(nowMs));
        continue;
      }
      const slots = await bookSlots(tx, installationId, rate, list.length, nowMs);
      list.splice(slots.length);
      list.forEach((c, i) => {
        sendAt.set(c.id, slots[i] as Date);
      });
    }
    const ids = [...sendAt.keys()];
    if (ids.length === 0) return [];
    const rows = await queryRows<{ id: string; attempts: number; round_attempts: number }>(
      tx,
      sql`update deliveries set status = 'delivering', lease_owner = ${o.owner},
            lease_until = now() + ${`${o.leaseMs} milliseconds`}::interval,
            attempts = attempts + 1, round_attempts = round_attempts + 1, updated_at = now()
          where id in ${ids} returning id, attempts, round_attempts`,
    );
    const byId = new Map(candidates.map((c) => [c.id, c]));
    return rows.map((r) => {
      const c = byId.get(r.id) as CandidateRow;
      return {
        id: r.id,
        organizationId: c.organization_id,
        eventId: c.event_id,
        installationId: c.installation_id,
        attempt: Number(r.attempts),
        roundAttempts: Number(r.round_attempts),
        sendAt: sendAt.get(r.id) as Date,
      };
    });
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
