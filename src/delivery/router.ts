// The `router` consumer: for each event in the log, one delivery per matching destination of the
// event's organization (unique per event × destination, so re-reading a record adds nothing). A
// replayed record queues its deliveries again. Fresh deliveries are inserted in one statement, in
// log order (a destination's `seq`, which ordered delivery follows, is assigned in that order).
// It reads envelopes only (`ROUTER_CONSUMER`): an event's data is fetched just when a destination
// of its organization has a filter, or for an operational event (which names its destination).
import { and, inArray, isNotNull, ne, sql } from 'drizzle-orm';
import type { AnyConnector } from '../connectors/sdk.ts';
import { SYSTEM_EVENT_TYPES } from '../events/types.ts';
import { newId } from '../ids.ts';
import type { LogRecord } from '../log/port.ts';
import { type Db, queryPrepared } from '../store/db.ts';
import { type DestinationSettings, deliveries, installations } from '../store/schema.ts';
import { type Claimed, type ClaimedRow, leasedFromClaimed, toClaimed } from './queue.ts';
import type { Handoff } from './sender.ts';
import { subscriptionMatcher } from './subscription.ts';

export const ROUTER_GROUP = 'router';

/**
 * How long the router waits at most, per batch of the log, for its sender to have room (see
 * `createRouter`): it bounds how long a destination that is slow but still answering can hold up
 * the others of the batch.
 */
export const HANDOFF_WAIT_MS = 2000;

/**
 * How the router reads the log: envelopes without their data, four partitions at a time (a batch
 * costs a few round trips, and a poll may span dozens of partitions).
 */
export const ROUTER_CONSUMER = { group: ROUTER_GROUP, withoutData: true, concurrency: 4 } as const;

const isSystemType = (type: string) => (SYSTEM_EVENT_TYPES as readonly string[]).includes(type);

interface Destination {
  id: string;
  organizationId: string;
  connector: AnyConnector;
  settings: DestinationSettings;
  matches: (type: string, data: unknown) => boolean;
}

/**
 * `handoff`: the sender of the router's own process. Fresh deliveries to destinations that are
 * neither ordered nor rate-limited are then created already leased to it, in the statement that
 * creates them, and sent at once (no claim, no claim statement). A batch with more of them than
 * the sender has room for goes in chunks: the router waits for room (at most `HANDOFF_WAIT_MS` per
 * batch, and not for a destination the sender finds congested, see `Handoff.room`), so a
 * backlog flows through the sender instead of being written pending and claimed back (a second
 * version of every row, and a claim statement per few dozen). What is left when the wait is over
 * is created pending and claimed as usual. Should the process die, the leases end and any worker
 * claims them.
 */
export function createRouter(db: Db, catalog: (id: string) => AnyConnector | undefined, handoff?: Handoff) {
  // Compiled matchers, reused while an installation is unchanged.
  const compiled = new Map<string, { updatedAt: number; matches: Destination['matches'] }>();

  async function destinationsOf(organizationIds: string[]): Promise<Destination[]> {
    const rows = await db
      .select({
        id: installations.id,
        organizationId: installations.organizationId,
        connectorId: installations.connectorId,
        destination: installations.destination,
        updatedAt: installations.updatedAt,
      })
      .from(installations)
      .where(
        and(
          inArray(installations.organizationId, organizationIds),
          isNotNull(installations.destination),
          ne(installations.status, 'uninstalled'),
        ),
      );
    return rows.flatMap((row) => {
      const connector = catalog(row.connectorId);
      const settings = row.destination;
      if (!connector?.destination || !settings) return [];
      let entry = compiled.get(row.id);
      if (entry?.updatedAt !== row.updatedAt.getTime()) {
        entry = { updatedAt: row.updatedAt.getTime(), matches: subscriptionMatcher(settings) };
        compiled.set(row.id, entry);
      }
      return [
        { id: row.id, organizationId: row.organizationId, connector, settings, matches: entry.matches },
      ];
    });
  }

  function wanted(d: Destination, record: LogRecord): boolean {
    const { type, data } = record.event;
    // Never tell a destination about its own failures: that would feed a loop.
    if (isSystemType(type)) {
      if ((data as { destination_id?: unknown } | null)?.destination_id === d.id) return false;
    }
    if (d.connector.destination?.accepts && !d.connector.destination.accepts(type)) return false;
    return d.matches(type, data);
  }

  /**
   * Fresh deliveries, in order, in as many statements as it takes for the sender to have room for
   * the ones it may take (`handOver`): each chunk runs up to the first such delivery beyond what
   * the sender granted, unless the wait is over or its destination is congested (created pending).
   */
  async function handOver(handoff: Handoff, fresh: FreshDelivery[]): Promise<void> {
    const deadline = Date.now() + HANDOFF_WAIT_MS;
    let rest = fresh;
    while (rest.length > 0) {
      const wanted = new Map<string, number>();
      for (const row of rest) {
        if (row.handOver) wanted.set(row.installationId, (wanted.get(row.installationId) ?? 0) + 1);
      }
      if (wanted.size === 0) {
        await insertFresh(db, rest);
        return;
      }
      const waiting = await handoff.room(wanted, deadline - Date.now());
      const granted = handoff.reserve(wanted);
      const left = new Map(granted);
      let end = rest.length;
      const chunk: FreshDelivery[] = [];
      for (const [i, row] of rest.entries()) {
        const n = row.handOver ? (left.get(row.installationId) ?? 0) : 0;
        if (row.handOver && n === 0 && waiting.has(row.installationId)) {
          end = i;
          break;
        }
        if (n > 0) left.set(row.installationId, n - 1);
        chunk.push({ ...row, handOver: n > 0 });
      }
      if (chunk.length === 0) {
        // Another batch took the room first (the sender answered both waits at once): wait again.
        handoff.adopt([], granted);
        continue;
      }
      let leased: Claimed[] = [];
      try {
        leased = await insertFresh(db, chunk, handoff);
      } finally {
        handoff.adopt(leased, granted);
      }
      rest = rest.slice(end);
    }
  }

  /** The log handler: records of one partition, in order. */
  return async function route(records: LogRecord[]): Promise<void> {
    const organizationIds = [...new Set(records.map((r) => r.event.organization))];
    const destinations = await destinationsOf(organizationIds);
    if (destinations.length === 0) return;
    await fillData(db, records, destinations);
    const fresh: FreshDelivery[] = [];
    const replayed: (typeof deliveries.$inferInsert)[] = [];
    for (const record of records) {
      for (const d of destinations) {
        if (d.organizationId !== record.event.organization || !wanted(d, record)) continue;
        const row = {
          id: newId('delivery'),
          organizationId: d.organizationId,
          eventId: record.event.id,
          installationId: d.id,
          orderKey: d.settings.ordered ? record.event.partitionkey : null,
        };
        if (record.replay) replayed.push(row);
        else {
          // The sender may take it at once (see `handOver`).
          fresh.push({ ...row, handOver: !d.settings.ordered && d.settings.rateLimit == null });
        }
      }
    }
    if (replayed.length === 0) {
      if (fresh.length === 0) return;
      if (handoff) await handOver(handoff, fresh);
      else await insertFresh(db, fresh);
      return;
    }
    await db.transaction(async (txDb) => {
      const tx = txDb as unknown as Db;
      if (fresh.length > 0) await insertFresh(tx, fresh);
      await tx
        .insert(deliveries)
        .values(replayed)
        .onConflictDoUpdate({
          target: [deliveries.eventId, deliveries.installationId],
          set: { status: 'pending', roundAttempts: 0, nextAttemptAt: sql`now()`, updatedAt: sql`now()` },
          setWhere: sql`${deliveries.status} <> 'delivering'`,
        });
    });
  };
}

/**
 * The data of the records that a destination must look into and the log left out (null): those of
 * organizations with a filtering destination, and operational events. One query for the batch.
 */
async function fillData(db: Db, records: LogRecord[], destinations: Destination[]): Promise<void> {
  const filtering = new Set(destinations.filter((d) => d.settings.filter).map((d) => d.organizationId));
  const wanting = records.filter(
    (r) => r.event.data === null && (filtering.has(r.event.organization) || isSystemType(r.event.type)),
  );
  if (wanting.length === 0) return;
  const rows = await queryPrepared<{ id: string; data: unknown }>(
    db,
    'router_event_data',
    sql`select e.id, e.data from json_array_elements_text(${JSON.stringify(wanting.map((r) => r.event.id))}::json) as x(id)
        join events e on e.id = x.id`,
  );
  const data = new Map(rows.map((r) => [r.id, typeof r.data === 'string' ? JSON.parse(r.data) : r.data]));
  for (const r of wanting) r.event.data = data.get(r.event.id) ?? null;
}

type FreshDelivery = typeof deliveries.$inferInsert & { handOver?: boolean };

/**
 * New deliveries, one bind parameter for the whole batch, in order (ordered destinations follow
 * `seq`); one already there is left as it is. With `handoff`, those marked `handOver` are created
 * leased to its sender (first attempt under way) when their destination is active and not paused,
 * and come back with their events, as a claim would give them.
 */
async function insertFresh(db: Db, rows: FreshDelivery[], handoff?: Handoff): Promise<Claimed[]> {
  const batch = JSON.stringify(
    rows.map((r, n) => ({
      n,
      id: r.id,
      organization_id: r.organizationId,
      event_id: r.eventId,
      installation_id: r.installationId,
      order_key: r.orderKey ?? null,
      h: Boolean(handoff && r.handOver),
    })),
  );
  if (!handoff || !rows.some((r) => r.handOver)) {
    await queryPrepared(
      db,
      'router_insert_fresh',
      sql`insert into deliveries (id, organization_id, event_id, installation_id, order_key)
          select id, organization_id, event_id, installation_id, order_key
          from json_to_recordset(${batch}::json)
            as x(n int, id text, organization_id text, event_id text, installation_id text, order_key text, h boolean)
          order by x.n
          on conflict do nothing`,
    );
    return [];
  }
  const rowsLeased = await queryPrepared<ClaimedRow>(
    db,
    'router_insert_handed_over',
    sql`with claimed as (
          insert into deliveries (id, organization_id, event_id, installation_id, order_key, status,
            attempts, round_attempts, lease_owner, lease_until)
          select x.id, x.organization_id, x.event_id, x.installation_id, x.order_key,
            case when k.ok then 'delivering' else 'pending' end,
            case when k.ok then 1 else 0 end, case when k.ok then 1 else 0 end,
            case when k.ok then ${handoff.owner} end,
            case when k.ok then now() + ${`${handoff.leaseMs} milliseconds`}::interval end
          from json_to_recordset(${batch}::json)
            as x(n int, id text, organization_id text, event_id text, installation_id text, order_key text, h boolean)
          left join installations i on x.h and i.id = x.installation_id
          left join destination_state s on x.h and s.installation_id = x.installation_id
          cross join lateral (select coalesce(x.h and x.order_key is null and i.status = 'active'
            and (i.destination->>'rateLimit') is null
            and (s.throttled_until is null or s.throttled_until <= now()), false) as ok) k
          order by x.n
          on conflict do nothing
          returning id, organization_id, event_id, installation_id, attempts, round_attempts, status
        ),
        ${leasedFromClaimed}
        select * from leased where status = 'delivering'`,
  );
  return rowsLeased.map((r) => toClaimed(r, new Date(r.now)));
}
