// The CloudEvents 1.0 envelope of a canonical event, as the API, the log and destinations see it.
import { z } from 'zod';
import { jsonColumn } from '../store/db.ts';
import type { events } from '../store/schema.ts';

export const envelopeSchema = z
  .object({
    specversion: z.literal('1.0'),
    id: z.string().describe('time-ordered (UUIDv7)'),
    source: z.string().describe('/installations/<id>, or /api-clients/<id> for events sent to the API'),
    type: z.string().describe('e.g. order.created, customer.updated, custom.cart.abandoned'),
    subject: z.string().nullable(),
    time: z.string().describe('when it happened at the source'),
    datacontenttype: z.literal('application/json'),
    organization: z.string(),
    partitionkey: z.string().describe('the ordering key: the source account, e.g. the shop domain'),
    userid: z
      .string()
      .nullable()
      .describe("the organization's user id when the event's customer is a known user"),
    data: z.unknown(),
  })
  .meta({ id: 'Event' });

export type Envelope = z.infer<typeof envelopeSchema>;
export type EventRow = typeof events.$inferSelect;

/** An `events` row as raw SQL returns it (column names, timestamps as dates or ISO text, data parsed or not). */
export interface SqlEventRow {
  id: string;
  organization_id: string;
  installation_id: string | null;
  source: string;
  type: string;
  subject: string | null;
  time: string | Date;
  partition_key: string;
  topic: string;
  user_id: string | null;
  data: unknown;
  raw_request_id: string | null;
  created_at: string | Date;
}

export function eventFromSql(r: SqlEventRow): EventRow {
  return {
    id: r.id,
    organizationId: r.organization_id,
    installationId: r.installation_id,
    source: r.source,
    type: r.type,
    subject: r.subject,
    time: new Date(r.time),
    partitionKey: r.partition_key,
    topic: r.topic,
    userId: r.user_id,
    data: jsonColumn(r.data),
    rawRequestId: r.raw_request_id,
    createdAt: new Date(r.created_at),
  };
}

export function toEnvelope(row: EventRow): Envelope {
  return {
    specversion: '1.0',
    id: row.id,
    source: row.source,
    type: row.type,
    subject: row.subject,
    time: row.time.toISOString(),
    datacontenttype: 'application/json',
    organization: row.organizationId,
    partitionkey: row.partitionKey,
    userid: row.userId,
    data: row.data,
  };
}

/**
 * `eventFromSql` for a row whose data came as the JSON text stored (`data::text`, `dataJson`):
 * `data` is parsed when first read, so a path that uses the text as it is (the webhook connector
 * splices it into its body, see `DeliveryItem.dataJson`) never parses it. Reading it gives what
 * `eventFromSql` gives.
 */
export function eventFromSqlText(r: Omit<SqlEventRow, 'data'>, dataJson: string): EventRow {
  let data: unknown;
  let parsed = false;
  return {
    id: r.id,
    organizationId: r.organization_id,
    installationId: r.installation_id,
    source: r.source,
    type: r.type,
    subject: r.subject,
    time: new Date(r.time),
    partitionKey: r.partition_key,
    topic: r.topic,
    userId: r.user_id,
    get data() {
      if (!parsed) {
        data = JSON.parse(dataJson);
        parsed = true;
      }
      return data;
    },
    rawRequestId: r.raw_request_id,
    createdAt: new Date(r.created_at),
  };
}

/** `toEnvelope` whose `data` is the row's, read only when the envelope's is (see `eventFromSqlText`). */
export function toLazyEnvelope(row: EventRow): Envelope {
  return {
    specversion: '1.0',
    id: row.id,
    source: row.source,
    type: row.type,
    subject: row.subject,
    time: row.time.toISOString(),
    datacontenttype: 'application/json',
    organization: row.organizationId,
    partitionkey: row.partitionKey,
    userid: row.userId,
    get data() {
      return row.data;
    },
  };
}

/**
 * The envelope of a row read with its data as the JSON text stored (`data::text`), as JSON text:
 * the data is spliced in as it is, not parsed and stringified again. The same bytes as
 * `JSON.stringify(toEnvelope(eventFromSql(row)))` for data the hub stored (the `json` column keeps
 * the text it was written as), in the schema's key order. Built from the row's own fields, with no
 * intermediate objects: an object literal with a getter (`eventFromSqlText`) costs a microsecond
 * or more to create, more than the splice saves.
 */
export function envelopeJson(r: Omit<SqlEventRow, 'data'>, dataJson: string): string {
  const head: Omit<Envelope, 'data'> = {
    specversion: '1.0',
    id: r.id,
    source: r.source,
    type: r.type,
    subject: r.subject,
    time: new Date(r.time).toISOString(),
    datacontenttype: 'application/json',
    organization: r.organization_id,
    partitionkey: r.partition_key,
    userid: r.user_id,
  };
  return `${JSON.stringify(head).slice(0, -1)},"data":${dataJson}}`;
}
