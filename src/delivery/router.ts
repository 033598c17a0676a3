// The `router` consumer: for each event in the log, one delivery per matching destination of the
// event's organization (unique per event × destination, so re-reading a record adds nothing). A
// replayed record queues its deliveries again. Fresh deliveries that wait in the queue are
// inserted in one statement, in log order (a destination's `seq`, which ordered delivery follows,
// is assigned in that order); those the worker's own sender can take at once are handed to it and
// written once, with their outcome (see `createRouter`). It reads envelopes only
// (`ROUTER_CONSUMER`): an event's data is fetched just when a destination of its organization has
// a filter, for an operational event (which names its destination), or to send it.
import { sql } from 'drizzle-orm';
import type { AnyConnector } from '../connectors/sdk.ts';
import { type EventRow, eventFromSqlText, type SqlEventRow } from '../events/envelope.ts';
import { SYSTEM_EVENT_TYPES } from '../events/types.ts';
import { newId } from '../ids.ts';
import type { LogRecord } from '../log/port.ts';
import { type Db, jsonColumn, queryPrepared } from '../store/db.ts';
import { type DestinationSettings, deliveries } from '../store/schema.ts';
import { EventReading } from './filter.ts';
import { type Claimed, insertLeased, Unwritten, WriteLatch } from './queue.ts';
import type { Handoff } from './sender.ts';
import { type SubscriptionMatcher, subscriptionMatcher } from './subscription.ts';

export const ROUTER_GROUP = 'router';

/**
 * How long the router waits at most, per batch of the log, for its sender to have room (see
 * `createRouter`): it bounds how long a destination that is slow but still answering can hold up
 * the others of the batch.
 */
export const HANDOFF_WAIT_MS = 2000;

/**
 * How long the router waits, once a batch is handed over, for the outcomes that write its
 * deliveries once (see `Unwritten`); those still unanswered are then written leased to the sender,
 * and the log is committed past the batch. Only for destinations that answer quickly
 * (`Handoff.quick`); the others' are written leased at once.
 */
export const WRITE_ONCE_WAIT_MS = 250;

/**
 * How the router reads the log: envelopes without their data, eight partitions at a time. A batch
 * costs a few round trips and waits for its deliveries to be written (see `Unwritten`), and a poll
 * may span dozens of partitions. In bench/delivery's live run (events arriving at about 1,000/s):
 * four at a time, p50 145 ms from event to delivery; eight, 85 ms; sixteen, 56–64 ms, but with
 * batches so small that PostgreSQL spent 0.8–1.0 ms of CPU per delivery instead of 0.66.
 */
export const ROUTER_CONSUMER = { group: ROUTER_GROUP, withoutData: true, concurrency: 8 } as const;

const isSystemType = (type: string) => (SYSTEM_EVENT_TYPES as readonly string[]).includes(type);

interface Destination {
  id: string;
  organizationId: string;
  connector: AnyConnector;
  settings: DestinationSettings;
  /** Active and not paused (429 and the like) when the batch was read: its deliveries may be sent at once. */
  open: boolean;
  matches: SubscriptionMatcher;
}

/** What the router tells its process about (logs, metrics). */
export interface RouterHooks {
  /**
   * A destination's filter used its whole work budget on an event, or found the event's shared
   * budget used up (`budget`): the event was not routed to it.
   */
  filterExhausted?(report: {
    destinationId: string;
    organizationId: string;
    eventId: string;
    budget: 'filter' | 'event';
  }): void;
}

/**
 * `handoff`: the sender of the router's own process. Fresh deliveries to destinations that are
 * neither ordered nor rate-limited, and active and not paused, are then handed to it with no row
 * written (`Unwritten`): each is written once, with its first attempt's outcome, and the router
 * commits the log past a batch only once its deliveries are written (those whose answer is slow
 * in coming are written leased to the sender after `WRITE_ONCE_WAIT_MS`, as a claim would lease
 * them). A batch with more of them than the sender has room for goes in chunks: the router waits
 * for room (at most `HANDOFF_WAIT_MS` per batch, and not for a destination the sender finds
 * congested, see `Handoff.room`), so a backlog flows through the sender instead of being written
 * pending and claimed back (a second version of every row, and a claim statement per few dozen).
 * What is left when the wait is over is created pending and claimed as usual. Should the process
 * die, the log is read again from the last batch committed, and what had not been written is
 * routed and sent again (at least once, with the same `webhook-id`).
 */
export function createRouter(
  db: Db,
  catalog: (id: string) => AnyConnector | undefined,
  handoff?: Handoff,
  hooks: RouterHooks = {},
) {
  // Compiled matchers, reused while an installation is unchanged.
  const compiled = new Map<string, { updatedAt: number; matches: Destination['matches'] }>();

  /** Creates deliveries pending (see `insertFresh`), and tells the sender there is work to claim. */
  async function queue(rows: FreshDelivery[]): Promise<void> {
    await insertFresh(db, rows);
    handoff?.queued?.();
  }

  async function destinationsOf(organizationIds: string[]): Promise<Destination[]> {
    // A prepared statement (one per batch of the log): the organizations as one JSON parameter.
    const rows = await queryPrepared<{
      id: string;
      organization_id: string;
      connector_id: string;
      destination: DestinationSettings | string | null;
      updated_at: Date | string;
      open: boolean;
    }>(
      db,
      'router_destinations',
      sql`select i.id, i.organization_id, i.connector_id, i.destination, i.updated_at,
            i.status = 'active' and (s.throttled_until is null or s.throttled_until <= now()) as open
          from installations i left join destination_state s on s.installation_id = i.id
          where i.organization_id = any(array(select json_array_elements_text(${JSON.stringify(organizationIds)}::json)))
            and i.destination is not null and i.status <> 'uninstalled'
          order by i.id`,
    );
    return rows.flatMap((row) => {
      const connector = catalog(row.connector_id);
      const settings = jsonColumn<DestinationSettings | null>(row.destination);
      if (!connector?.destination || !settings) return [];
      const updatedAt = new Date(row.updated_at).getTime();
      let entry = compiled.get(row.id);
      if (entry?.updatedAt !== updatedAt) {
        entry = { updatedAt, matches: subscriptionMatcher(settings) };
        compiled.set(row.id, entry);
      }
      return [
        {
          id: row.id,
          organizationId: row.organization_id,
          connector,
          settings,
          open: Boolean(row.open),
          matches: entry.matches,
        },
      ];
    });
  }

  function wanted(d: Destination, record: LogRecord, reading: EventReading): boolean {
    const { type, data } = record.event;
    // Never tell a destination about its own failures: that would feed a loop.
    if (isSystemType(type)) {
      if ((data as { destination_id?: unknown } | null)?.destination_id === d.id) return false;
    }
    if (d.connector.destination?.accepts && !d.connector.destination.accepts(type)) return false;
    return d.matches(type, reading, (evaluation) =>
      hooks.filterExhausted?.({
        destinationId: d.id,
        organizationId: d.organizationId,
        eventId: record.event.id,
        budget: evaluation.exhausted || 'filter',
      }),
    );
  }

  /**
   * Fresh deliveries, in order: those the sender may take (`handOver`) handed to it unwritten as far
   * as it has room, chunk after chunk, the others created pending. A chunk runs up to the first
   * such delivery beyond what the sender granted, unless the wait is over or its destination is
   * congested (created pending). Resolves once every delivery is in the table.
   */
  async function handOver(
    handoff: Handoff,
    fresh: FreshDelivery[],
    read: Map<string, ReadEvent>,
  ): Promise<void> {
    const deadline = Date.now() + HANDOFF_WAIT_MS;
    const handed: Claimed[] = [];
    const latch = new WriteLatch();
    let rest = fresh;
    try {
      while (rest.length > 0) {
        const wanted = new Map<string, number>();
        for (const row of rest) {
          if (row.handOver) wanted.set(row.installationId, (wanted.get(row.installationId) ?? 0) + 1);
        }
        if (wanted.size === 0) {
          await queue(rest);
          return;
        }
        const waiting = await handoff.room(wanted, deadline - Date.now());
        const granted = handoff.reserve(wanted);
        const left = new Map(granted);
        let end = rest.length;
        const chunk: Claimed[] = [];
        const pending: FreshDelivery[] = [];
        for (const [i, row] of rest.entries()) {
          const n = row.handOver ? (left.get(row.installationId) ?? 0) : 0;
          if (row.handOver && n === 0 && waiting.has(row.installationId)) {
            end = i;
            break;
          }
          const event = n > 0 ? read.get(pairKey(row.eventId, row.installationId)) : undefined;
          if (event) {
            left.set(row.installationId, n - 1);
            chunk.push(unwrittenDelivery(row, event, latch));
          } else pending.push(row);
        }
        if (chunk.length === 0 && pending.length === 0) {
          // Another batch took the room first (the sender answered both waits at once): wait again.
          handoff.adopt([], granted);
          continue;
        }
        handed.push(...chunk);
        handoff.adopt(chunk, granted);
        // Pending rows keep the log's order among themselves (ordered destinations follow `seq`).
        if (pending.length > 0) await queue(pending);
        rest = rest.slice(end);
      }
    } finally {
      // Also when this batch failed half-way: what was handed over is being sent, so it is written.
      await writeHandedOver(handoff, handed, latch);
    }
  }

  /**
   * Waits (at most `WRITE_ONCE_WAIT_MS`) for the outcomes that write `handed` once, writes the
   * rest leased to the sender, and resolves once all are in the table; rejects when one could
   * not be written (the batch is then read again, and what was not written sent again). The
   * deliveries to destinations that are not quick (`Handoff.quick`) are written leased at once:
   * waiting for them would hold every partition of the next poll back by their answer time.
   */
  async function writeHandedOver(handoff: Handoff, handed: Claimed[], latch: WriteLatch): Promise<void> {
    if (handed.length === 0) return;
    const lease = (claimed: Claimed[]) => {
      const waiting = claimed.filter((c) => c.unwritten?.state === 'unwritten');
      if (waiting.length === 0) return;
      const leasing = insertLeased(db, handoff.owner, handoff.leaseMs, waiting).then(() => {});
      const unwritten = waiting.map((c) => c.unwritten as Unwritten);
      for (const u of unwritten) {
        u.state = 'leasing';
        u.leased = leasing;
      }
      leasing.then(
        () => {
          for (const u of unwritten) u.written();
        },
        (err) => {
          for (const u of unwritten) u.failed(err);
        },
      );
    };
    const quick = handoff.quick;
    if (quick) lease(handed.filter((c) => !quick(c.installationId)));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      latch.wait().catch(() => {}),
      new Promise((r) => (timer = setTimeout(r, WRITE_ONCE_WAIT_MS))),
    ]);
    clearTimeout(timer);
    lease(handed);
    await latch.wait();
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
      // The event's filters share one budget and what they read, destination after destination
      // in the order they were created (by id): when the budget runs out, the same ones miss it.
      const reading = new EventReading(record.event.data);
      for (const d of destinations) {
        if (d.organizationId !== record.event.organization || !wanted(d, record, reading)) continue;
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
          fresh.push({
            ...row,
            handOver: !d.settings.ordered && d.settings.rateLimit == null && d.open,
          });
        }
      }
    }
    if (replayed.length === 0) {
      if (fresh.length === 0) return;
      if (handoff && fresh.some((r) => r.handOver)) {
        const read = await readEvents(
          db,
          fresh.filter((r) => r.handOver),
          new Map(destinations.map((d) => [d.id, d.connector.id])),
        );
        const todo = fresh.filter((r) => !r.handOver || read.has(pairKey(r.eventId, r.installationId)));
        if (todo.length > 0) await handOver(handoff, todo, read);
      } else await queue(fresh);
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
    handoff?.queued?.();
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
  const data = new Map(rows.map((r) => [r.id, jsonColumn(r.data)]));
  for (const r of wanting) r.event.data = data.get(r.event.id) ?? null;
}

type FreshDelivery = typeof deliveries.$inferInsert & { handOver?: boolean };

interface ReadEvent {
  /** Its data parsed only if read (`eventFromSqlText`); one object for all of an event's deliveries. */
  event: EventRow;
  /** The event's data as the JSON text stored. */
  data: string;
  sourceConnector: string | null;
  connectorId: string;
}

const pairKey = (eventId: string, installationId: string) => `${eventId} ${installationId}`;

/**
 * The events (data included) of the deliveries to hand over, with what sending them takes, as a
 * claim reads them, by event and destination (`pairKey`): one query for the batch, one row per
 * event however many destinations it goes to. A delivery already in the table (its batch is read
 * again: a failure before the log was committed, or a partition that changed hands) is left out,
 * so it is not sent again; so is one whose event is gone (deleted with its organization): neither
 * is created. `connectorOf`: each destination's connector.
 */
async function readEvents(
  db: Db,
  rows: FreshDelivery[],
  connectorOf: ReadonlyMap<string, string>,
): Promise<Map<string, ReadEvent>> {
  const ids = JSON.stringify([...new Set(rows.map((r) => r.eventId))]);
  const found = await queryPrepared<
    SqlEventRow & { data: string; source_connector: string | null; delivered: string[] }
  >(
    db,
    'router_read_events',
    // The ids through unnest, which the planner takes for a few (a JSON function: always 100, for
    // which it once scanned and hashed the whole of deliveries and events at every batch). The
    // data as text: parsed only if a connector reads it (the webhook connector sends the text).
    sql`select e.id, e.organization_id, e.installation_id, e.source, e.type, e.subject, e.time, e.partition_key,
          e.topic, e.user_id, e.raw_request_id, e.created_at, e.data::text as data,
          si.connector_id as source_connector,
          array(select d.installation_id from deliveries d where d.event_id = e.id) as delivered
        from unnest(array(select json_array_elements_text(${ids}::json))) as x(id)
        join events e on e.id = x.id
        left join installations si on si.id = e.installation_id`,
  );
  const events = new Map(
    found.map(({ data, source_connector, delivered, ...row }) => [
      row.id,
      { event: eventFromSqlText(row, data), data, sourceConnector: source_connector, delivered },
    ]),
  );
  const read = new Map<string, ReadEvent>();
  for (const r of rows) {
    const found = events.get(r.eventId);
    const connectorId = connectorOf.get(r.installationId);
    if (!found || connectorId === undefined || found.delivered.includes(r.installationId)) continue;
    read.set(pairKey(r.eventId, r.installationId), {
      event: found.event,
      data: found.data,
      sourceConnector: found.sourceConnector,
      connectorId,
    });
  }
  return read;
}

/** A fresh delivery handed to the sender with no row written: its first attempt. */
function unwrittenDelivery(row: FreshDelivery, read: ReadEvent, latch: WriteLatch): Claimed {
  return {
    id: row.id as string,
    organizationId: row.organizationId,
    eventId: row.eventId,
    installationId: row.installationId,
    attempt: 1,
    roundAttempts: 1,
    sendAt: new Date(),
    connectorId: read.connectorId,
    event: read.event,
    dataJson: read.data,
    sourceConnector: read.sourceConnector,
    unwritten: new Unwritten(latch),
  };
}

/**
 * New deliveries, pending, one bind parameter for the whole batch, in order (ordered destinations
 * follow `seq`); one already there is left as it is.
 */
async function insertFresh(db: Db, rows: FreshDelivery[]): Promise<void> {
  const batch = JSON.stringify(
    rows.map((r, n) => ({
      n,
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
          as x(n int, id text, organization_id text, event_id text, installation_id text, order_key text)
        order by x.n
        on conflict do nothing`,
  );
}
