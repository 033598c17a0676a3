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

/**
 * The envelope as JSON text with `dataJson` as its data, spliced in unparsed: the bytes of
 * `JSON.stringify(envelope)` when `dataJson` is `JSON.stringify` of the data.
 */
export function envelopeJson(head: Omit<Envelope, 'data'>, dataJson: string): string {
  return `${JSON.stringify(head).slice(0, -1)},"data":${dataJson}}`;
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
 * The envelope of an `events` row as JSON text, built by the database in the statement that reads
 * the row (`select ${ENVELOPE_JSON_SQL} as envelope from events ...`): the same bytes as
 * `JSON.stringify(toEnvelope(row))`, in the schema's key order, with the data spliced in as the
 * text stored (the `json` column keeps what the hub wrote: it is neither parsed nor stringified
 * again). One text column per row instead of one per field: PGlite's client decodes every field of
 * a result in JavaScript, and a page of 20 events read as thirteen columns and spliced here took
 * 620–670 µs in a loop, as one column 290–320 (on PostgreSQL 210 → 140). `to_json(text)` escapes
 * as `JSON.stringify` does (quotes, backslashes, control characters as \u00xx; U+2028 and
 * non-ASCII left as they are); the time is `toISOString`'s form (milliseconds truncated, as a
 * `Date` read from the row has them) for the years 0001–9999.
 */
export const ENVELOPE_JSON_SQL = `'{"specversion":"1.0","id":' || to_json(id)::text
  || ',"source":' || to_json(source)::text || ',"type":' || to_json(type)::text
  || ',"subject":' || coalesce(to_json(subject)::text, 'null')
  || ',"time":"' || to_char(time at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
  || '","datacontenttype":"application/json","organization":' || to_json(organization_id)::text
  || ',"partitionkey":' || to_json(partition_key)::text
  || ',"userid":' || coalesce(to_json(user_id)::text, 'null') || ',"data":' || data::text || '}'`;
