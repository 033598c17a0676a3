// Privacy redaction (Shopify's customers/redact and shop/redact): scrubs the personal data we
// hold on a customer, or on every customer of an installation, from stored events, and drops the
// raw bodies they came from. Ids and amounts stay, so history and totals remain consistent; a raw
// provider event, whose payload the hub cannot sort, loses its data whole.
//
// The webhook is answered once its `privacy.*` event is committed; the redaction itself runs in
// the worker, as the `privacy` consumer group of the log (`startPrivacyConsumer`), a chunk of
// events at a time, each chunk its own statements. Inside the ingest's group commit it held that
// transaction (and the log partitions it appends to) for as long as it took to read, and for a
// shop, rewrite one by one, every event of the installation: minutes for a large shop, during
// which no other webhook of those partitions could commit. Shopify allows 30 days to redact; the
// consumer commits its offset only after a redaction is done, so a crash or an outage redoes it
// (scrubbing is idempotent).
import { sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { Consumer, EventLog } from '../log/port.ts';
import { type Db, jsonColumn, queryRows } from '../store/db.ts';

const PERSONAL = new Set([
  'email',
  'first_name',
  'last_name',
  'phone',
  'name',
  'address1',
  'address2',
  'postal_code',
]);
const ADDRESSES = new Set(['address', 'billing_address', 'shipping_address']);

/** A copy of canonical data with personal fields nulled; product names in line items are kept. */
export function scrub(value: unknown, key = ''): unknown {
  if (Array.isArray(value)) return value.map((v) => scrub(v, key === 'products' ? 'products[]' : key));
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value).map(([k, v]) => {
      if (ADDRESSES.has(k)) return [k, null];
      if (PERSONAL.has(k) && !(k === 'name' && key === 'products[]')) return [k, v === undefined ? v : null];
      return [k, scrub(v, k)];
    }),
  );
}

/**
 * Raw provider events (`shopify.inventory_levels.update`) are the provider's payloads, whose
 * personal fields the hub does not know: redacted, their data is replaced whole by this.
 */
const RAW_TOPIC = 'provider-events';
const REDACTED_RAW = JSON.stringify({ redacted: true });

/**
 * Whether a raw event's data names the customer: their id as a whole number or string (digits
 * not part of a longer number), or their email, anywhere in it.
 */
function mentions(customerId: string, email: string | null | undefined) {
  const byId = /^\d+$/.test(customerId)
    ? sql`data::text ~ ${`(^|[^0-9])${customerId}([^0-9]|$)`}`
    : sql`position(${customerId} in data::text) > 0`;
  return email ? sql`(${byId} or position(lower(${email}) in lower(data::text)) > 0)` : byId;
}

export interface RedactTarget {
  organizationId: string;
  installationId: string;
  /** The customer whose data goes (customers/redact); null with `all`. */
  customerId: string | null;
  /** Their email, when the request gives it: raw provider events naming it are redacted too. */
  email?: string | null | undefined;
  /** Every customer of the installation (shop/redact). */
  all: boolean;
}

/** Events read and rewritten per chunk. */
export const REDACT_CHUNK = 500;

/**
 * Scrubs the target's events and drops their raw bodies, a chunk at a time in id order (each
 * chunk: one read, one update of the events, one of the raw requests), then the bodies of the
 * requests that were refused (see below). Returns how many events.
 * `signal` stops it between chunks (with the signal's reason): what is done stays done.
 */
export async function redact(
  db: Db,
  target: RedactTarget,
  options: { chunk?: number; signal?: AbortSignal } = {},
): Promise<number> {
  const chunk = options.chunk ?? REDACT_CHUNK;
  if (!target.all && !target.customerId) return 0;
  const { organizationId: o, installationId: ins, customerId: c } = target;
  const concerns = target.all
    ? sql``
    : sql`and (data->>'customer_id' = ${c} or data->'customer'->>'customer_id' = ${c}
               or (topic = ${RAW_TOPIC} and ${mentions(c ?? '', target.email)}))`;
  let after = '';
  let total = 0;
  for (;;) {
    options.signal?.throwIfAborted();
    const rows = await queryRows<{ id: string; topic: string; data: unknown; raw_request_id: string | null }>(
      db,
      sql`select id, topic, data, raw_request_id from events
          where organization_id = ${o} and installation_id = ${ins} and id > ${after} ${concerns}
          order by id limit ${chunk}`,
    );
    if (rows.length === 0) break;
    const scrubbed = rows.map((r) => ({
      id: r.id,
      d: r.topic === RAW_TOPIC ? REDACTED_RAW : JSON.stringify(scrub(jsonColumn(r.data))),
    }));
    await db.execute(
      sql`update events e set data = x.d::json
          from json_to_recordset(${JSON.stringify(scrubbed)}::json) as x(id text, d text)
          where e.organization_id = ${o} and e.id = x.id`,
    );
    const raw = [...new Set(rows.flatMap((r) => (r.raw_request_id ? [r.raw_request_id] : [])))];
    if (raw.length > 0)
      await db.execute(
        sql`update inbound_requests set body = null
            where organization_id = ${o} and id in (select json_array_elements_text(${JSON.stringify(raw)}::json))`,
      );
    total += rows.length;
    after = (rows.at(-1) as { id: string }).id;
  }
  // Requests refused after verification made no events, so the chunks above never reach them,
  // and their bodies are kept for debugging (GET /v1/inbound-requests/{id}/body): for a shop every
  // body of the installation goes; for a customer, the refused ones that hold their id anywhere (a
  // substring: one too many dropped loses a debugging body, one too few would keep personal data).
  options.signal?.throwIfAborted();
  await db.execute(
    target.all
      ? sql`update inbound_requests set body = null
            where organization_id = ${o} and installation_id = ${ins} and body is not null`
      : sql`update inbound_requests set body = null
            where organization_id = ${o} and installation_id = ${ins} and status = 'rejected'
              and body is not null and position(convert_to(${c}, 'UTF8') in body) > 0`,
  );
  return total;
}

export const PRIVACY_GROUP = 'privacy';
const REDACTIONS = new Set(['privacy.customer_redact', 'privacy.shop_redact']);

/**
 * The worker's `privacy` consumer: each `privacy.customer_redact` or `privacy.shop_redact` event
 * in `app-events` is carried out (see `redact`); the group's offset moves past it only once done.
 * Stopping interrupts a redaction between chunks: it is done again, from the start, on the next run.
 */
export function startPrivacyConsumer(db: Db, log: EventLog, logger: Logger): Consumer {
  const stopping = new AbortController();
  const consumer = log.consume({
    group: PRIVACY_GROUP,
    topics: ['app-events'],
    // Most of app-events is not privacy: the data of those that are is read with their row.
    withoutData: true,
    // A large shop's redaction may take minutes: its partitions stay with this member meanwhile.
    maxPollIntervalMs: 60 * 60_000,
    handler: async (records) => {
      for (const { event } of records) {
        if (!REDACTIONS.has(event.type)) continue;
        const [row] = await queryRows<{ installation_id: string | null; data: unknown }>(
          db,
          sql`select installation_id, data from events where organization_id = ${event.organization} and id = ${event.id}`,
        );
        if (!row?.installation_id) continue;
        const data = jsonColumn(row.data) as { customer_id?: string | null; email?: string | null };
        const all = event.type === 'privacy.shop_redact';
        const target = {
          organizationId: event.organization,
          installationId: row.installation_id,
          customerId: all ? null : (data.customer_id ?? null),
          email: all ? null : (data.email ?? null),
          all,
        };
        const started = Date.now();
        const events = await redact(db, target, { signal: stopping.signal });
        logger.info(
          {
            event_id: event.id,
            type: event.type,
            installation_id: target.installationId,
            events,
            duration_ms: Date.now() - started,
          },
          'privacy redaction done',
        );
      }
    },
  });
  return {
    ...consumer,
    async stop() {
      stopping.abort(new Error('the worker is stopping: the redaction resumes on its next start'));
      await consumer.stop();
    },
  };
}
