// The customer of an event whose provider names none but names an earlier event's subject (a
// Shopify refund names its order): read from that earlier event, which the hub stored. One query,
// made only for such events, before the request joins a group commit.
import { sql } from 'drizzle-orm';
import { type Db, queryPrepared } from '../store/db.ts';

/** The customer id of the latest event with `subject` (its data's `customer_id`, else `customer.customer_id`). */
export type CustomerLookup = (
  organizationId: string,
  installationId: string,
  subject: string,
) => Promise<string | null>;

/**
 * Reads the newest event of the subject in the installation, however old, along
 * `events_subject_idx` (organization, subject, id): newest first among the organization's events
 * of that subject, the first of the installation ends the read.
 */
export function createCustomerLookup(db: Db): CustomerLookup {
  return async (organizationId, installationId, subject) => {
    const [row] = await queryPrepared<{ customer_id: string | null }>(
      db,
      'events_customer_of_subject',
      sql`select coalesce(data->>'customer_id', data->'customer'->>'customer_id') as customer_id
          from events
          where organization_id = ${organizationId} and subject = ${subject}
            and installation_id = ${installationId}
          order by id desc limit 1`,
    );
    return row?.customer_id ?? null;
  };
}
