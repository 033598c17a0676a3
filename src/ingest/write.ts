// One group commit's writes as one SQL statement: de-duplication keys, raw requests, events (with
// the organization's user ids) and their log entries go to the server as three small JSON
// parameters and one binary one in a single data-modifying statement. Outside a transaction the
// statement is its own: one round trip and one commit answer the whole batch, however many
// requests it holds.
//
// The bulky parts (raw bodies, event data) travel as one `bytea` parameter, in binary, which the
// JSON parameters point into by offset and length: the server slices it without parsing it as JSON
// text (it did, twice for event data, when bodies were base64 strings inside the JSON), and the hub
// neither base64-encodes the bodies nor escapes them into a JSON string. The `blob` CTE is not
// materialized and is joined, not read by a scalar subquery: each slice is then taken from the
// parameter itself. Materialized and read as `(select b from blob)`, the whole buffer (a batch's
// bodies, ~100 KB) was copied four times per statement, into the CTE's store and into each
// subquery's result (~8 % of the server's CPU per webhook, with the page faults of fresh memory).
import { sql } from 'drizzle-orm';
import type { EventLog } from '../log/port.ts';
import { type Db, queryPrepared, queryRows } from '../store/db.ts';
import type { IngestItem, IngestOutcome } from './committer.ts';

/** What the statement says of each item: accepted, or a duplicate of something committed. */
export type Verdict = 'accepted' | 'duplicate' | 'rejected';

export interface Written {
  verdict: Verdict;
  /** The events stored for an accepted item, in order (with per-event keys, the ones not seen before). */
  eventIds: string[];
}

/** Event-level keys live beside request-level ones in dedupe_keys, in a namespace of their own. */
export const EVENT_KEY_PREFIX = 'event:';

/**
 * True when each of the item's events carries its own de-duplication key (a HubSpot batch): the
 * events are then de-duplicated one by one, and the request's own key is not used.
 */
export function keyedPerEvent(item: IngestItem): boolean {
  return item.events.length > 0 && item.events.every((e) => e.dedupeKey !== undefined);
}

/**
 * Writes the batch and returns each item's verdict and stored events, in order. A key that two
 * items (or two events) of the batch share goes to the first; the unique key on dedupe_keys also
 * settles races with other batches and processes (a racing insert waits for the other's commit and
 * then yields to it). An item keyed per event is accepted when any of its events is new, and only
 * those are stored; a duplicate when none is.
 */
export async function writeBatch(db: Db, log: EventLog, items: IngestItem[]): Promise<Written[]> {
  const firstOfKey = new Set<string>();
  const batchDuplicate = new Set<number>();
  const skippedEvents = new Set<string>();
  const keys: { o: string; s: string; k: string; r: string | null; e: string[] }[] = [];
  const judged: { i: number; o: string; s: string; k: string | null }[] = [];
  const claim = (o: string, s: string, k: string): boolean => {
    const key = `${o}\0${s}\0${k}`;
    if (firstOfKey.has(key)) return false;
    firstOfKey.add(key);
    return true;
  };
  items.forEach((item, i) => {
    if (item.status !== 'accepted') return;
    const { organizationId: o, scope: s } = item;
    const r = item.request ? item.requestId : null;
    if (keyedPerEvent(item)) {
      for (const e of item.events) {
        const k = `${EVENT_KEY_PREFIX}${e.dedupeKey}`;
        if (claim(o, s, k)) keys.push({ o, s, k, r, e: [e.id] });
        else skippedEvents.add(e.id);
      }
      judged.push({ i, o, s, k: null });
      return;
    }
    if (item.dedupeKey === null) {
      judged.push({ i, o, s, k: null });
      return;
    }
    if (!claim(o, s, item.dedupeKey)) {
      batchDuplicate.add(i);
      return;
    }
    keys.push({ o, s, k: item.dedupeKey, r, e: item.events.map((e) => e.id) });
    judged.push({ i, o, s, k: item.dedupeKey });
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
            pe: keyedPerEvent(item),
          },
        ]
      : [],
  );
  let seq = 0;
  const eventRows = items.flatMap((item, i) =>
    item.status !== 'accepted' || batchDuplicate.has(i)
      ? []
      : item.events
          .filter((e) => !skippedEvents.has(e.id))
          .map((e) => ({
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
            ac: e.userId === null && e.customer ? e.customer.account : null,
            xid: e.userId === null && e.customer ? e.customer.externalId : null,
            r: item.request ? item.requestId : null,
            sc: item.scope,
            ek: e.dedupeKey === undefined ? null : `${EVENT_KEY_PREFIX}${e.dedupeKey}`,
            ...dataSlice(blob, e.dataJson ?? JSON.stringify(e.data) ?? 'null'),
          })),
  );

  const rows = await queryPrepared<{ i: number; id: string | null }>(
    db,
    'ingest_write_batch',
    sql`with blob as not materialized (select ${blob.build()}::bytea as b), keys as (
      insert into dedupe_keys (organization_id, scope, key, request_id, event_ids)
      select x.o, x.s, x.k, x.r, x.e from json_to_recordset(${JSON.stringify(keys)}::json)
        as x(o text, s text, k text, r text, e text[])
      order by x.o, x.s, x.k
      on conflict do nothing
      returning organization_id, scope, key
    ), won as (
      select x.i from json_to_recordset(${JSON.stringify(judged)}::json) as x(i int, o text, s text, k text)
      where x.k is null
         or exists (select 1 from keys where keys.organization_id = x.o and keys.scope = x.s and keys.key = x.k)
    ), fresh as (
      select x.*, coalesce(x.u, ue.user_id) as user_id,
        convert_from(substring(blob.b from x.dof + 1 for x.dn), 'UTF8')::json as d
      from json_to_recordset(${JSON.stringify(eventRows)}::json)
        as x(i int, q int, id text, o text, ins text, src text, t text, sub text, tm timestamptz, pk text,
             tp text, pt int, u text, pl text, ac text, xid text, r text, sc text, ek text, dof int, dn int)
      cross join blob
      join won w on w.i = x.i
      -- The customer's user: its id in the event's account, else its id given without account.
      left join lateral (
        select ue.user_id from user_external_ids ue
        where x.u is null and ue.organization_id = x.o and ue.platform = x.pl and ue.external_id = x.xid
          and ue.account in (x.ac, '')
        order by ue.account = '' limit 1
      ) ue on true
      where x.ek is null
         or exists (select 1 from keys where keys.organization_id = x.o and keys.scope = x.sc and keys.key = x.ek)
    ), kept as (
      select i, count(*)::int as n from fresh group by i
    ), requests as (
      insert into inbound_requests (id, organization_id, installation_id, received_at, method, path, headers,
        body, body_size, status, error_code, dedupe_key, event_count)
      select x.id, x.o, x.ins, x.at, x.m, x.p, x.h,
        case when x.rj or a.ok then substring(blob.b from x.bo + 1 for x.n) end, x.n,
        case when x.rj then 'rejected' when a.ok then 'accepted' else 'duplicate' end,
        x.ec, x.dk, case when a.ok then coalesce(k.n, 0) else 0 end
      from json_to_recordset(${JSON.stringify(requests)}::json)
        as x(i int, id text, o text, ins text, at timestamptz, m text, p text, h jsonb, bo int, n int,
             rj boolean, ec text, dk text, pe boolean)
      cross join blob
      left join won w on w.i = x.i
      left join kept k on k.i = x.i
      -- Accepted: the request won its key, and (keyed per event) some event of it was new.
      cross join lateral (select w.i is not null and (not x.pe or k.n is not null) as ok) a
    ), stored as (
      insert into events (id, organization_id, installation_id, source, type, subject, time, partition_key,
        topic, user_id, data, raw_request_id)
      select id, o, ins, src, t, sub, tm, pk, tp, user_id, d, r from fresh order by q
    ), appended as (
      select tp as topic, pt as partition, q as seq, id as event_id from fresh
    )${sql.raw(log.appendCtes('appended'))}
    select w.i, f.id from won w left join fresh f on f.i = w.i order by w.i, f.q`,
  );
  const kept = new Map<number, string[]>();
  for (const row of rows) {
    const list = kept.get(Number(row.i)) ?? [];
    if (row.id !== null) list.push(row.id);
    kept.set(Number(row.i), list);
  }
  return items.map((item, i): Written => {
    if (item.status === 'rejected') return { verdict: 'rejected', eventIds: [] };
    const ids = kept.get(i);
    if (ids === undefined || (keyedPerEvent(item) && ids.length === 0))
      return { verdict: 'duplicate', eventIds: [] };
    return { verdict: 'accepted', eventIds: ids };
  });
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
function dataSlice(blob: BlobBuilder, dataJson: string): { dof: number; dn: number } {
  const bytes = Buffer.from(dataJson, 'utf8');
  return { dof: blob.add(bytes), dn: bytes.length };
}

/**
 * What each duplicate answers: the request and every event the first delivery of its key made
 * (a HubSpot batch makes several), in order, from the keys' rows alone. One query for all of a
 * batch's duplicates.
 */
export async function duplicateOutcomes(
  db: Db,
  items: IngestItem[],
  verdicts: Verdict[],
): Promise<Map<number, IngestOutcome>> {
  // One row per key: the request's, or each event's (`n` keeps the events' order).
  const wanted = items.flatMap((item, i) => {
    if (verdicts[i] !== 'duplicate') return [];
    const { organizationId: o, scope: s } = item;
    if (keyedPerEvent(item))
      return item.events.map((e, n) => ({ i, n, o, s, k: `${EVENT_KEY_PREFIX}${e.dedupeKey}` }));
    return item.dedupeKey === null ? [] : [{ i, n: 0, o, s, k: item.dedupeKey }];
  });
  const outcomes = new Map<number, IngestOutcome>();
  if (wanted.length === 0) return outcomes;
  const rows = await queryRows<{ i: number; request_id: string | null; event_ids: string[] }>(
    db,
    sql`select x.i, k.request_id, k.event_ids
        from json_to_recordset(${JSON.stringify(wanted)}::json) as x(i int, n int, o text, s text, k text)
        join dedupe_keys k on k.organization_id = x.o and k.scope = x.s and k.key = x.k
        order by x.i, x.n`,
  );
  for (const row of rows) {
    const i = Number(row.i);
    const before = outcomes.get(i);
    const eventIds = row.event_ids;
    outcomes.set(
      i,
      before && before.status === 'duplicate'
        ? { ...before, eventIds: [...before.eventIds, ...eventIds] }
        : { status: 'duplicate', requestId: row.request_id, eventIds },
    );
  }
  return outcomes;
}
