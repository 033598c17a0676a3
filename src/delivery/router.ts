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
import { subscriptionMatcher } from './subscription.ts';

export const ROUTER_GROUP = 'router';

/** How the router reads the log: every topic, envelopes without their data. */
export const ROUTER_CONSUMER = { group: ROUTER_GROUP, withoutData: true } as const;

const isSystemType = (type: string) => (SYSTEM_EVENT_TYPES as readonly string[]).includes(type);

interface Destination {
  id: string;
  organizationId: string;
  connector: AnyConnector;
  settings: DestinationSettings;
  matches: (type: string, data: unknown) => boolean;
}

export function createRouter(db: Db, catalog: (id: string) => AnyConnector | undefined) {
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

  /** The log handler: records of one partition, in order. */
  return async function route(records: LogRecord[]): Promise<void> {
    const organizationIds = [...new Set(records.map((r) => r.event.organization))];
    const destinations = await destinationsOf(organizationIds);
    if (destinations.length === 0) return;
    await fillData(db, records, destinations);
    const fresh: (typeof deliveries.$inferInsert)[] = [];
    const replayed: (typeof deliveries.$inferInsert)[] = [];
    for (const record of records) {
      for (const d of destinations) {
        if (d.organizationId !== record.event.organization || !wanted(d, record)) continue;
        (record.replay ? replayed : fresh).push({
          id: newId('delivery'),
          organizationId: d.organizationId,
          eventId: record.event.id,
          installationId: d.id,
          orderKey: d.settings.ordered ? record.event.partitionkey : null,
        });
      }
    }
    if (replayed.length === 0) {
      if (fresh.length > 0) await insertFresh(db, fresh);
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

/** New deliveries, one bind parameter for the whole batch; one already there is left as it is. */
async function insertFresh(db: Db, rows: (typeof deliveries.$inferInsert)[]): Promise<void> {
  const batch = JSON.stringify(
    rows.map((r) => ({
      id: r.id,
      organization_id: r.organizationId,
      event_id: r.eventId,
      installation_id: r.installationId,
      order_key: r.orderKey ?? null,
    })),
  );
  await queryPrepared(
    db,
    'router_insert_fresh',
    sql`insert into deliveries (id, organization_id, event_id, installation_id, order_key)
        select id, organization_id, event_id, installation_id, order_key
        from json_to_recordset(${batch}::json)
          as x(id text, organization_id text, event_id text, installation_id text, order_key text)
        on conflict do nothing`,
  );
}
