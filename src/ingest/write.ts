// One group commit's writes as one SQL statement: de-duplication keys, raw requests, events (with
// the organization's user ids) and their log entries go to the server as three small JSON
// parameters and one binary one in a single data-modifying statement. Outside a transaction the
// statement is its own: one round trip and one commit answer the whole batch, however many
// requests it holds.
//
// The bulky parts (raw bodies, event data) travel as one `bytea` parameter, in binary, which the
// JSON parameters point into by offset and length: the server slices it without parsing it as JSON
// text (it did, twice for event data, when bodies were base64 strings inside the JSON), and the hub
// neither base64-encodes the bodies nor escapes them into a JSON string.
import { sql } from 'drizzle-orm';
import type { EventLog } from '../log/port.ts';
import { type Db, queryPrepared, queryRows } from '../store/db.ts';
import type { IngestItem, IngestOutcome } from './committer.ts';

/** What the statement says of each item: accepted, or a duplicate of something committed. */
export type Verdict = 'accepted' | 'duplicate' | 'rejected';

/**
 * Writes the batch and returns each item's verdict, in order. A key that two items of the batch
 * share goes to the first; the unique key on dedupe_keys also settles races with other batches
 * and processes (a racing insert waits for the other's commit and then yields to it).
 */
export async function writeBatch(db: Db, log: EventLog, items: IngestItem[]): Promise<Verdict[]> {
  const firstOfKey = new Set<string>();
  const batchDuplicate = new Set<number>();
  const keys: { o: string; s: string; k: string; r: string | null; e: string | null }[] = [];
  const judged: { i: number; o: string; s: string; k: string | null }[] = [];
  items.forEach((item, i) => {
    if (item.status !== 'accepted') return;
    if (item.dedupeKey === null) {
      judged.push({ i, o: item.organizationId, s: item.scope, k: null });
      return;
    }
    const key = `${item.organizationId}\0${item.scope}\0${item.dedupeKey}`;
    if (firstOfKey.has(key)) {
      batchDuplicate.add(i);
      return;
    }
    firstOfKey.add(key);
    keys.push({
      o: item.organizationId,
      s: item.scope,
      k: item.dedupeKey,
      r: item.request ? item.requestId : null,
      e: item.events[0]?.id ?? null,
    });
    judged.push({ i, o: item.organizationId, s: item.scope, k: item.dedupeKey });
  });

  const blob = new BlobBuilder();
  const requests = items.flatMap((item, i) =>
    item.request
      ? [
          {
            i,
            id: item.requestId,
            o: item.organizationId,
            ins: item.installationId,
            at: item.request.receivedAt.toISOString(),
            m: item.request.method,
            p: item.request.path,
            h: item.request.headers,
            bo: blob.add(item.request.body),
            n: item.request.body.length,
            rj: item.status === 'rejected',
            ec: item.errorCode ?? null,
            dk: item.dedupeKey,
            ev: item.events.length,
          },
        ]
      : [],
  );
  let seq = 0;
  const eventRows = items.flatMap((item, i) =>
    item.status !== 'accepted' || batchDuplicate.has(i)
      ? []
      : item.events.map((e) => ({
          i,
          q: seq++,
          id: e.id,
          o: item.organizationId,
          ins: item.installationId,
          src: e.source,
          t: e.type,
          sub: e.subject,
          tm: e.time.toISOString(),
          pk: e.partitionKey,
          tp: e.topic,
          pt: log.partitionOf(e.partitionKey),
          u: e.userId,
          pl: e.userId === null && e.customer ? e.customer.platform : null,
          xid: e.userId === null && e.customer ? e.customer.externalId : null,
          r: item.request ? item.requestId : null,
          ...dataSlice(blob, e.data),
        })),
  );

  const rows = await queryPrepared<{ i: number }>(
    db,
    'ingest_write_batch',
    sql`with blob as (select ${blob.build()}::bytea as b), keys as (
      insert into dedupe_keys (organization_id, scope, key, request_id, event_id)
      select x.o, x.s, x.k, x.r, x.e from json_to_recordset(${JSON.stringify(keys)}::json)
        as x(o text, s text, k text, r text, e text)
      order by x.o, x.s, x.k
      on conflict do nothing
      returning organization_id, scope, key
    ), won as (
      select x.i from json_to_recordset(${JSON.stringify(judged)}::json) as x(i int, o text, s text, k text)
      where x.k is null
         or exists (select 1 from keys where keys.organization_id = x.o and keys.scope = x.s and keys.key = x.k)
    ), requests as (
      insert into inbound_requests (id, organization_id, installation_id, received_at, method, path, headers,
        body, body_size, status, error_code, dedupe_key, event_count)
      select x.id, x.o, x.ins, x.at, x.m, x.p, x.h,
        case when x.rj or w.i is not null then substring((select b from blob) from x.bo + 1 for x.n) end, x.n,
        case when x.rj then 'rejected' when w.i is not null then 'accepted' else 'duplicate' end,
        x.ec, x.dk, case when w.i is not null then x.ev else 0 end
      from json_to_recordset(${JSON.stringify(requests)}::json)
        as x(i int, id text, o text, ins text, at timestamptz, m text, p text, h jsonb, bo int, n int,
             rj boolean, ec text, dk text, ev int)
      left join won w on w.i = x.i
    ), fresh as (
      select x.*, coalesce(x.u, ue.user_id) as user_id,
        convert_from(substring((select b from blob) from x.dof + 1 for x.dn), 'UTF8')::jsonb as d
      from json_to_recordset(${JSON.stringify(eventRows)}::json)
        as x(i int, q int, id text, o text, ins text, src text, t text, sub text, tm timestamptz, pk text,
             tp text, pt int, u text, pl text, xid text, r text, dof int, dn int)
      join won w on w.i = x.i
      left join user_external_ids ue on x.u is null and ue.organization_id = x.o and ue.platform = x.pl
        and ue.external_id = x.xid
    ), stored as (
      insert into events (id, organization_id, installation_id, source, type, subject, time, partition_key,
        topic, user_id, data, raw_request_id)
      select id, o, ins, src, t, sub, tm, pk, tp, user_id, d, r from fresh order by q
    ), appended as (
      select tp as topic, pt as partition, q as seq, id as event_id from fresh
    )${sql.raw(log.appendCtes('appended'))}
    select i from won`,
  );
  const won = new Set(rows.map((r) => Number(r.i)));
  return items.map((item, i) =>
    item.status === 'rejected' ? 'rejected' : won.has(i) ? 'accepted' : 'duplicate',
  );
}

/**
 * The bulky values of a batch, end to end in one buffer: `add` answers where a value starts (a
 * byte offset), and the statement takes each back with `substring(... from offset + 1 for length)`.
 */
class BlobBuilder {
  private readonly parts: Buffer[] = [];
  private size = 0;

  add(bytes: Buffer): number {
    const offset = this.size;
    this.parts.push(bytes);
    this.size += bytes.length;
    return offset;
  }

  build(): Buffer {
    return Buffer.concat(this.parts, this.size);
  }
}

/** An event's data as JSON text in the blob: its offset (`dof`) and length in bytes (`dn`). */
function dataSlice(blob: BlobBuilder, data: unknown): { dof: number; dn: number } {
  const bytes = Buffer.from(JSON.stringify(data) ?? 'null', 'utf8');
  return { dof: blob.add(bytes), dn: bytes.length };
}

/**
 * What each duplicate answers: the request and every event the first delivery of its key made
 * (a HubSpot batch makes several), in order. One query for all of a batch's duplicates.
 */
export async function duplicateOutcomes(
  db: Db,
  items: IngestItem[],
  verdicts: Verdict[],
): Promise<Map<number, IngestOutcome>> {
  const wanted = items.flatMap((item, i) =>
    verdicts[i] === 'duplicate' && item.dedupeKey !== null
      ? [{ i, o: item.organizationId, s: item.scope, k: item.dedupeKey }]
      : [],
  );
  const outcomes = new Map<number, IngestOutcome>();
  if (wanted.length === 0) return outcomes;
  const rows = await queryRows<{
    i: number;
    request_id: string | null;
    event_id: string | null;
    made: string[] | string | null;
  }>(
    db,
    sql`select x.i, k.request_id, k.event_id,
          (select json_agg(e.id order by e.id) from events e
            where e.organization_id = k.organization_id and e.raw_request_id = k.request_id) as made
        from json_to_recordset(${JSON.stringify(wanted)}::json) as x(i int, o text, s text, k text)
        join dedupe_keys k on k.organization_id = x.o and k.scope = x.s and k.key = x.k`,
  );
  for (const row of rows) {
    const made = typeof row.made === 'string' ? (JSON.parse(row.made) as string[]) : (row.made ?? []);
    outcomes.set(Number(row.i), {
      status: 'duplicate',
      requestId: row.request_id,
      eventIds: made.length > 0 ? made : row.event_id ? [row.event_id] : [],
    });
  }
  return outcomes;
}
