// The deliveries API's service: list and read deliveries with their attempts, send one again,
// recover a destination (re-enable it and re-queue what failed since a time), and per-destination
// statistics for the API and /metrics.
import { and, asc, eq, gt, type SQL, sql } from 'drizzle-orm';
import { AppError } from '../errors.ts';
import { isId } from '../ids.ts';
import { type Db, queryRows } from '../store/db.ts';
import { decodeCursor, toPage } from '../store/pagination.ts';
import { type DeliveryStatus, deliveries, deliveryAttempts, installations } from '../store/schema.ts';

export type DeliveryRow = typeof deliveries.$inferSelect;
export type AttemptRow = typeof deliveryAttempts.$inferSelect;

export interface DeliveryQuery {
  limit: number;
  cursor?: string | undefined;
  status?: DeliveryStatus | undefined;
  destination?: string | undefined;
  event?: string | undefined;
}

export interface DestinationStats {
  destinationId: string;
  connector: string;
  status: string;
  counts: Record<DeliveryStatus, number>;
  /** Succeeded ÷ (succeeded + dead) over the window; null before any delivery ended. */
  successRate: number | null;
  latencyP50Ms: number | null;
  latencyP99Ms: number | null;
  /** Deliveries not yet ended: pending, delivering and failed (waiting for a retry). */
  queueDepth: number;
  oldestPendingAgeSeconds: number | null;
}

const requeue = {
  status: 'pending' as const,
  roundAttempts: 0,
  nextAttemptAt: sql`now()`,
  updatedAt: sql`now()`,
};

export function createDeliveryService(db: Db) {
  async function find(organizationId: string, id: string): Promise<DeliveryRow> {
    const [row] = isId('delivery', id)
      ? await db
          .select()
          .from(deliveries)
          .where(and(eq(deliveries.organizationId, organizationId), eq(deliveries.id, id)))
      : [];
    if (!row) throw new AppError('delivery_not_found', `delivery ${id} not found`);
    return row;
  }

  async function destination(organizationId: string, id: string) {
    const [row] = isId('installation', id)
      ? await db
          .select({ id: installations.id, destination: installations.destination })
          .from(installations)
          .where(and(eq(installations.organizationId, organizationId), eq(installations.id, id)))
      : [];
    if (!row) throw new AppError('installation_not_found', `installation ${id} not found`);
    if (!row.destination) throw new AppError('not_a_destination', `installation ${id} is not a destination`);
    return row;
  }

  return {
    async list(organizationId: string, q: DeliveryQuery) {
      const after = decodeCursor('delivery', q.cursor);
      const rows = await db
        .select()
        .from(deliveries)
        .where(
          and(
            eq(deliveries.organizationId, organizationId),
            q.status ? eq(deliveries.status, q.status) : undefined,
            q.destination ? eq(deliveries.installationId, q.destination) : undefined,
            q.event ? eq(deliveries.eventId, q.event) : undefined,
            after ? gt(deliveries.id, after) : undefined,
          ),
        )
        .orderBy(asc(deliveries.id))
        .limit(q.limit + 1);
      return toPage(rows, q.limit);
    },

    async get(
      organizationId: string,
      id: string,
    ): Promise<{ delivery: DeliveryRow; attempts: AttemptRow[] }> {
      const delivery = await find(organizationId, id);
      const attempts = await db
        .select()
        .from(deliveryAttempts)
        .where(eq(deliveryAttempts.deliveryId, delivery.id))
        .orderBy(asc(deliveryAttempts.attempt));
      return { delivery, attempts };
    },

    /** Sends a delivery again now, whatever its state, unless an attempt is under way. */
    async retry(organizationId: string, id: string): Promise<DeliveryRow> {
      const row = await find(organizationId, id);
      const [updated] = await db
        .update(deliveries)
        .set(requeue)
        .where(and(eq(deliveries.id, row.id), sql`${deliveries.status} <> 'delivering'`))
        .returning();
      if (!updated) throw new AppError('delivery_in_progress', 'an attempt of this delivery is under way');
      return updated;
    },

    /** Re-enables a disabled destination and re-queues its failed and dead deliveries created since `since`. */
    async recover(
      organizationId: string,
      installationId: string,
      since: Date,
    ): Promise<{ requeued: number }> {
      const dest = await destination(organizationId, installationId);
      return db.transaction(async (tx) => {
        await tx
          .update(installations)
          .set({ status: 'active', disabledReason: null, disabledAt: null, updatedAt: new Date() })
          .where(and(eq(installations.id, dest.id), eq(installations.status, 'disabled')));
        await tx.execute(
          sql`update destination_state set failing_since = null, throttled_until = null where installation_id = ${dest.id}`,
        );
        const rows = await tx
          .update(deliveries)
          .set(requeue)
          .where(
            and(
              eq(deliveries.installationId, dest.id),
              sql`${deliveries.status} in ('failed', 'dead')`,
              sql`${deliveries.createdAt} >= ${since}`,
            ),
          )
          .returning({ id: deliveries.id });
        return { requeued: rows.length };
      });
    },

    /** Per destination of the organization (or of every organization when null, for /metrics). */
    async stats(organizationId: string | null, windowHours = 24): Promise<DestinationStats[]> {
      const scope: SQL = organizationId === null ? sql`true` : sql`i.organization_id = ${organizationId}`;
      const rows = await queryRows<{
        id: string;
        connector_id: string;
        status: string;
        pending: number;
        delivering: number;
        failed: number;
        succeeded: number;
        dead: number;
        ended_ok: number;
        ended_dead: number;
        p50: number | null;
        p99: number | null;
        oldest: number | null;
      }>(
        db,
        sql`select i.id, i.connector_id, i.status,
              count(*) filter (where d.status = 'pending')::int as pending,
              count(*) filter (where d.status = 'delivering')::int as delivering,
              count(*) filter (where d.status = 'failed')::int as failed,
              count(*) filter (where d.status = 'succeeded')::int as succeeded,
              count(*) filter (where d.status = 'dead')::int as dead,
              count(*) filter (where d.status = 'succeeded' and d.updated_at > now() - ${`${windowHours} hours`}::interval)::int as ended_ok,
              count(*) filter (where d.status = 'dead' and d.updated_at > now() - ${`${windowHours} hours`}::interval)::int as ended_dead,
              percentile_cont(0.5) within group (order by extract(epoch from d.delivered_at - e.created_at) * 1000)
                filter (where d.delivered_at > now() - ${`${windowHours} hours`}::interval) as p50,
              percentile_cont(0.99) within group (order by extract(epoch from d.delivered_at - e.created_at) * 1000)
                filter (where d.delivered_at > now() - ${`${windowHours} hours`}::interval) as p99,
              extract(epoch from now() - min(d.created_at) filter (where d.status in ('pending', 'delivering', 'failed'))) as oldest
            from installations i
            left join deliveries d on d.installation_id = i.id
            left join events e on e.id = d.event_id
            where ${scope} and i.destination is not null
            group by i.id, i.connector_id, i.status
            order by i.id`,
      );
      // Rounded: percentile_cont's interpolation leaves float noise (73.26400000000001 ms).
      const rounded = (v: unknown, places: number) =>
        v === null || v === undefined ? null : Number(Number(v).toFixed(places));
      return rows.map((r) => {
        const ended = Number(r.ended_ok) + Number(r.ended_dead);
        return {
          destinationId: r.id,
          connector: r.connector_id,
          status: r.status,
          counts: {
            pending: Number(r.pending),
            delivering: Number(r.delivering),
            failed: Number(r.failed),
            succeeded: Number(r.succeeded),
            dead: Number(r.dead),
          },
          successRate: ended > 0 ? Number(r.ended_ok) / ended : null,
          latencyP50Ms: rounded(r.p50, 2),
          latencyP99Ms: rounded(r.p99, 2),
          queueDepth: Number(r.pending) + Number(r.delivering) + Number(r.failed),
          oldestPendingAgeSeconds: rounded(r.oldest, 3),
        };
      });
    },
  };
}

export type DeliveryService = ReturnType<typeof createDeliveryService>;
