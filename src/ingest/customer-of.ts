// The customer of an event whose provider names none but names an earlier event's subject (a
// Shopify refund names its order): read from that earlier event, which the hub stored. One query,
// made only for such events, before the request joins a group commit.
import { sql } from 'drizzle-orm';
import { type Db, queryRows } from '../store/db.ts';

/**
 * How far back the lookup reads: the installation's latest events, newest first. Events have no
 * index by subject (one would cost every insert), so the read is bounded: a refund of an order
 * older than this many of the installation's events, or of one the hub never received, gets no
 * customer rather than an unbounded read.
 */
export const CUSTOMER_LOOKBACK_EVENTS = 20_000;

/** The customer id of the latest event with `subject` (its data's `customer_id`, else `customer.customer_id`). */
export type CustomerLookup = (
  organizationId: string,
  installationId: string,
  subject: string,
) => Promise<string | null>;

export function createCustomerLookup(db: Db, lookback = CUSTOMER_LOOKBACK_EVENTS): CustomerLookup {
  return async (organizationId, installationId, subject) => {
    const [row] = await queryRows<{ customer_id: string | null }>(
      db,
      sql`select coalesce(data->>'customer_id', data->'customer'->>'customer_id') as customer_id
          from events where id = (
            select id from (
              select id, subject from events
              where organization_id = ${organizationId} and installation_id = ${installationId}
              order by id desc limit ${lookback}
            ) recent
            where subject = ${subject}
            order by id desc limit 1
          )`,
    );
    return row?.customer_id ?? null;
  };
}
