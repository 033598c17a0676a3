// The events API's service: list and read an organization's events, replay one into the log,
// and take custom events sent by the organization's own systems (idempotent by their `id`).

import { and, eq, type SQL, sql } from 'drizzle-orm';
import { AppError } from '../errors.ts';
import { parseExact, sameJson, stringifyExact, toDoubles } from '../exact-json.ts';
import { uuidv7 } from '../ids.ts';
import type { Committer } from '../ingest/committer.ts';
import type { EventLog } from '../log/port.ts';
import { type Db, queryPrepared } from '../store/db.ts';
import { encodeCursor } from '../store/pagination.ts';
import { events, inboundRequests } from '../store/schema.ts';
import { ENVELOPE_JSON_SQL, type EventRow, envelopeJson, toEnvelope } from './envelope.ts';
import { isKnownEventType, parseEventData, topicOf } from './types.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export interface EventQuery {
  limit: number;
  cursor?: string | undefined;
  /** Exact type, or a family ending in `.*` (`order.*`; the API also takes `order` for it). */
  type?: string | undefined;
  installationId?: string | undefined;
  /** Exact subject (`orders/820982911946154508`): read along `events_subject_idx`. */
  subject?: string | undefined;
  since?: Date | undefined;
  until?: Date | undefined;
}

export interface CustomEventInput {
  type: string;
  subject?: string | undefined;
  /** As `parseExact` reads it: numbers keep the text they were sent as. */
  data: Record<string, unknown>;
  id?: string | undefined;
  partitionKey?: string | undefined;
  time?: string | undefined;
  userId?: string | undefined;
}

function decodeEventCursor(cursor: string | undefined): string | undefined {
  if (cursor === undefined) return undefined;
  const id = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!UUID.test(id)) throw new AppError('invalid_cursor', 'cursor is not one this API returned');
  return id;
}

interface StoredEvent {
  envelope: string;
  type: string;
  subject: string | null;
  partition_key: string;
  user_id: string | null;
  time: Date | string;
  data: string;
}

/**
 * The fields in which a re-sent custom event differs from the one stored under its id: type,
 * subject, partition key, user, time (when the re-send gives one) and data (as JSON: key order and
 * number spelling aside). None: the re-send is a replay, answered with the stored event.
 */
function differences(
  stored: StoredEvent,
  sent: {
    type: string;
    subject: string | null;
    partitionKey: string;
    userId: string | null;
    time: Date | undefined;
    dataJson: string;
  },
): string[] {
  const out: string[] = [];
  if (stored.type !== sent.type) out.push('type');
  if (stored.subject !== sent.subject) out.push('subject');
  if (stored.partition_key !== sent.partitionKey) out.push('partition_key');
  if (stored.user_id !== sent.userId) out.push('user_id');
  if (sent.time && new Date(stored.time).getTime() !== sent.time.getTime()) out.push('time');
  if (!sameJson(parseExact(stored.data), parseExact(sent.dataJson))) out.push('data');
  return out;
}

export function createEventService(db: Db, log: EventLog, committer: Committer) {
  async function find(organizationId: string, id: string): Promise<EventRow> {
    const [row] = UUID.test(id)
      ? await db
          .select()
          .from(events)
          .where(and(eq(events.organizationId, organizationId), eq(events.id, id)))
      : [];
    if (!row) throw new AppError('event_not_found', `event ${id} not found`);
    return row;
  }

  /** The stored event's envelope as JSON text (its data as stored, see ENVELOPE_JSON_SQL). */
  async function findJson(organizationId: string, id: string) {
    const [row] = UUID.test(id)
      ? await queryPrepared<{ envelope: string; raw_request_id: string | null }>(
          db,
          'events_get',
          sql`select ${sql.raw(ENVELOPE_JSON_SQL)} as envelope, raw_request_id
              from events where organization_id = ${organizationId} and id = ${id}`,
        )
      : [];
    if (!row) throw new AppError('event_not_found', `event ${id} not found`);
    return row;
  }

  /** What an idempotent re-send is compared with: the stored event's fields and its envelope. */
  async function findStored(organizationId: string, id: string): Promise<StoredEvent> {
    const [row] = await queryPrepared<StoredEvent>(
      db,
      'events_get_stored',
      sql`select ${sql.raw(ENVELOPE_JSON_SQL)} as envelope, type, subject, partition_key, user_id,
            time, data::text as data
          from events where organization_id = ${organizationId} and id = ${id}`,
    );
    if (!row) throw new AppError('conflict', 'an event with this id was accepted before but is gone');
    return row;
  }

  /**
   * The data's JSON text as it will be stored. Custom data keeps every number as it was sent;
   * canonical data goes through its schema, which takes numbers as doubles, so a number a double
   * would change is refused rather than stored changed.
   */
  function checkedData(type: string, data: Record<string, unknown>): string {
    const plain = isKnownEventType(type) ? toDoubles(data) : { value: data };
    if ('inexact' in plain) {
      const { path, text, message } = plain.inexact;
      const where = ['body', 'data', path].filter(Boolean).join('.');
      throw new AppError('number_not_exact', `${where}: ${text} ${message}`, {
        details: [{ path: where, message: `${text} ${message}` }],
      });
    }
    const checked = parseEventData(type, plain.value);
    if (!checked.success) {
      throw new AppError('validation_failed', `data does not fit a ${type} event`, {
        details: checked.error.issues.map((i) => ({
          path: ['body', 'data', ...i.path.map(String)].join('.'),
          message: i.message,
        })),
      });
    }
    return isKnownEventType(type) ? JSON.stringify(checked.data) : stringifyExact(data);
  }

  return {
    async list(organizationId: string, q: EventQuery) {
      const after = decodeEventCursor(q.cursor);
      // A prepared statement for each combination of filters (its name says which): one text per
      // name, run without building the query again (Drizzle's building was a fifth of the time).
      const where: SQL[] = [sql`organization_id = ${organizationId}`];
      let shape = '';
      if (q.type?.endsWith('.*')) {
        const prefix = q.type
          .slice(0, -2)
          .replaceAll('\\', '\\\\')
          .replaceAll('%', '\\%')
          .replaceAll('_', '\\_');
        where.push(sql`type like ${`${prefix}.%`}`);
        shape += 'p';
      } else if (q.type) {
        where.push(sql`type = ${q.type}`);
        shape += 't';
      }
      if (q.installationId) {
        where.push(sql`installation_id = ${q.installationId}`);
        shape += 'i';
      }
      if (q.subject !== undefined) {
        where.push(sql`subject = ${q.subject}`);
        shape += 'j';
      }
      if (q.since) {
        where.push(sql`time >= ${q.since}`);
        shape += 's';
      }
      if (q.until) {
        where.push(sql`time < ${q.until}`);
        shape += 'u';
      }
      // A time range is listed by time, then id, along `events_time_idx`: ordered by id, the
      // page would be read by walking the organization's events and skipping those outside the
      // range (every one of them for a recent `since`). The cursor is still the last event's id:
      // its time is read back with it.
      const byTime = q.since !== undefined || q.until !== undefined;
      if (after) {
        where.push(
          byTime
            ? sql`(time, id) > ((select c.time from events c where c.organization_id = ${organizationId} and c.id = ${after}), ${after})`
            : sql`id > ${after}`,
        );
        shape += 'a';
      }
      // Each event comes as its envelope's JSON text, built by the database (`ENVELOPE_JSON_SQL`).
      const rows = await queryPrepared<{ id: string; envelope: string }>(
        db,
        `events_list_${shape || 'all'}`,
        sql`select id, ${sql.raw(ENVELOPE_JSON_SQL)} as envelope
            from events where ${sql.join(where, sql` and `)}
            order by ${byTime ? sql`time, id` : sql`id`} limit ${q.limit + 1}`,
      );
      const page = rows.slice(0, q.limit);
      const hasMore = rows.length > q.limit;
      const last = page.at(-1);
      const nextCursor = hasMore && last ? encodeCursor(last.id) : null;
      // The page as the API's JSON body: `{data, has_more, next_cursor}`.
      return `{"data":[${page.map((r) => r.envelope).join(',')}],"has_more":${hasMore},"next_cursor":${JSON.stringify(nextCursor)}}`;
    },

    /** The event's envelope as JSON text, and the metadata of the request it came in. */
    async get(organizationId: string, id: string) {
      const row = await findJson(organizationId, id);
      const [request] = row.raw_request_id
        ? await db
            .select({
              id: inboundRequests.id,
              receivedAt: inboundRequests.receivedAt,
              method: inboundRequests.method,
              path: inboundRequests.path,
              headers: inboundRequests.headers,
              bodySize: inboundRequests.bodySize,
              status: inboundRequests.status,
            })
            .from(inboundRequests)
            .where(
              and(
                eq(inboundRequests.organizationId, organizationId),
                eq(inboundRequests.id, row.raw_request_id),
              ),
            )
        : [];
      return { envelopeJson: row.envelope, request: request ?? null };
    },

    /** Appends the event to its topic again; consumers see it as a replay. */
    async replay(organizationId: string, id: string) {
      const row = await find(organizationId, id);
      const [appended] = await db.transaction((tx) =>
        log.append(tx as unknown as Db, [
          { eventId: row.id, topic: topicOf(row.type), partitionKey: row.partitionKey, replay: true },
        ]),
      );
      log.committed();
      return appended;
    },

    /**
     * Stores a custom event, or finds the one stored before under the same `id`. Answers its
     * envelope as JSON text, the data as stored: numbers exactly as they were sent.
     */
    async createCustom(
      organizationId: string,
      clientId: string,
      input: CustomEventInput,
    ): Promise<{ created: boolean; json: string }> {
      const dataJson = checkedData(input.type, input.data);
      const time = input.time ? new Date(input.time) : new Date();
      const event = {
        id: uuidv7(),
        source: `/api-clients/${clientId}`,
        type: input.type,
        subject: input.subject ?? null,
        time,
        partitionKey: input.partitionKey ?? input.subject ?? organizationId,
        topic: topicOf(input.type),
        userId: input.userId ?? null,
        data: null,
        dataJson,
      };
      const outcome = await committer.submit({
        organizationId,
        installationId: null,
        scope: 'api',
        dedupeKey: input.id ?? null,
        requestId: '',
        request: null,
        status: 'accepted',
        events: [event],
      });
      if (outcome.status === 'accepted') {
        // Stored as given: answered from memory, without reading the row back (a round trip).
        const { data: _none, ...head } = toEnvelope({
          ...event,
          organizationId,
          installationId: null,
          rawRequestId: null,
          createdAt: new Date(),
        });
        return { created: true, json: envelopeJson(head, dataJson) };
      }
      const eventId = outcome.status === 'duplicate' ? outcome.eventIds[0] : undefined;
      if (!eventId) throw new AppError('conflict', 'an event with this id was accepted before but is gone');
      const stored = await findStored(organizationId, eventId);
      const differs = differences(stored, { ...event, time: input.time ? time : undefined });
      if (differs.length > 0) {
        throw new AppError(
          'event_id_conflict',
          `an event with id ${input.id} was sent before with another ${differs.join(', ')}: send it with a new id`,
          { details: [{ path: 'body.id', message: `the first event is ${eventId}` }] },
        );
      }
      return { created: false, json: stored.envelope };
    },
  };
}

export type EventService = ReturnType<typeof createEventService>;
