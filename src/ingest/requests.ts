// The inbound requests API's service: what each verified webhook of an installation was (its
// headers, size and outcome) and, while the hub keeps it, its raw body. A request refused after
// verification (malformed JSON, no topic, a body that is not what its topic says) is kept
// with its error code so that it can be looked at here; one refused before (a bad signature) is not
// kept at all: nothing unverified is stored.
import { sql } from 'drizzle-orm';
import { AppError } from '../errors.ts';
import { isId } from '../ids.ts';
import { type Db, jsonColumn, queryPrepared } from '../store/db.ts';
import { decodeCursor, type Page, toPage } from '../store/pagination.ts';
import { keptHeaders } from './headers.ts';

export const STATUSES = ['accepted', 'duplicate', 'rejected'] as const;
export type InboundStatus = (typeof STATUSES)[number];

export interface InboundRequest {
  id: string;
  installationId: string | null;
  receivedAt: Date;
  method: string;
  path: string;
  headers: Record<string, string>;
  bodySize: number;
  /** Whether the raw body is still kept (a duplicate's is the first delivery's; a redaction drops it). */
  bodyKept: boolean;
  status: InboundStatus;
  errorCode: string | null;
  dedupeKey: string | null;
  eventCount: number;
}

export interface InboundRequestQuery {
  limit: number;
  cursor?: string | undefined;
  status?: InboundStatus | undefined;
  /** Received at or after. */
  since?: Date | undefined;
}

interface Row {
  id: string;
  installation_id: string | null;
  received_at: string | Date;
  method: string;
  path: string;
  headers: Record<string, string> | string;
  body_size: number;
  body_kept: boolean;
  status: InboundStatus;
  error_code: string | null;
  dedupe_key: string | null;
  event_count: number;
}

const COLUMNS = sql.raw(`id, installation_id, received_at, method, path, headers, body_size,
  body is not null as body_kept, status, error_code, dedupe_key, event_count`);

function fromRow(r: Row): InboundRequest {
  return {
    id: r.id,
    installationId: r.installation_id,
    receivedAt: new Date(r.received_at),
    method: r.method,
    path: r.path,
    headers: keptHeaders(jsonColumn(r.headers)),
    bodySize: Number(r.body_size),
    bodyKept: r.body_kept,
    status: r.status,
    errorCode: r.error_code,
    dedupeKey: r.dedupe_key,
    eventCount: Number(r.event_count),
  };
}

/**
 * The smallest request id made at or after `since`: ids begin with their creation's Unix
 * milliseconds (UUIDv7), and a request's id is made after its `received_at`, so every request
 * received since then has an id at least this one. The list reads from there along its index.
 */
function firstIdSince(since: Date): string {
  const ms = Math.max(0, Math.min(since.getTime(), 2 ** 48 - 1));
  return `req_${ms.toString(16).padStart(12, '0')}${'0'.repeat(20)}`;
}

export function createInboundRequestService(db: Db) {
  const notFound = (id: string) =>
    new AppError('inbound_request_not_found', `inbound request ${id} not found`);

  return {
    /** An installation's requests, oldest first (the installation is the caller's: checked before). */
    async list(
      organizationId: string,
      installationId: string,
      q: InboundRequestQuery,
    ): Promise<Page<InboundRequest>> {
      const after = decodeCursor('inboundRequest', q.cursor);
      const from = q.since ? firstIdSince(q.since) : undefined;
      // A prepared statement per combination of filters (its name says which), read along
      // inbound_requests_installation_idx (organization, installation, id), or for refused requests
      // along inbound_requests_rejected_idx: the status is written into the statement, not passed
      // as a parameter, so that a plan made for any parameters can still use that partial index.
      const status = q.status && STATUSES.includes(q.status) ? q.status : undefined;
      const shape = `${after ? 'a' : ''}${from ? 's' : ''}${status ? `t${status[0]}` : ''}`;
      const rows = await queryPrepared<Row>(
        db,
        `inbound_requests_list_${shape || 'all'}`,
        sql`select ${COLUMNS} from inbound_requests
            where organization_id = ${organizationId} and installation_id = ${installationId}
              ${after ? sql`and id > ${after}` : sql``}
              ${from ? sql`and id >= ${from} and received_at >= ${q.since}` : sql``}
              ${status ? sql.raw(`and status = '${status}'`) : sql``}
            order by id limit ${q.limit + 1}`,
      );
      return toPage(rows.map(fromRow), q.limit);
    },

    async get(organizationId: string, id: string): Promise<InboundRequest> {
      if (!isId('inboundRequest', id)) throw notFound(id);
      const [row] = await queryPrepared<Row>(
        db,
        'inbound_request_get',
        sql`select ${COLUMNS} from inbound_requests where organization_id = ${organizationId} and id = ${id}`,
      );
      if (!row) throw notFound(id);
      return fromRow(row);
    },

    /** The raw body as received, and its content type; 410 once it is no longer kept. */
    async body(organizationId: string, id: string): Promise<{ body: Buffer; contentType: string | null }> {
      if (!isId('inboundRequest', id)) throw notFound(id);
      const [row] = await queryPrepared<{
        body: Uint8Array | null;
        status: InboundStatus;
        type: string | null;
      }>(
        db,
        'inbound_request_body',
        sql`select body, status, headers->>'content-type' as type from inbound_requests
            where organization_id = ${organizationId} and id = ${id}`,
      );
      if (!row) throw notFound(id);
      if (row.body === null)
        throw new AppError(
          'request_body_gone',
          row.status === 'duplicate'
            ? 'a duplicate delivery keeps no body: the first delivery of its key has it'
            : 'the body was removed (privacy redaction)',
        );
      return {
        body: Buffer.from(row.body.buffer, row.body.byteOffset, row.body.byteLength),
        contentType: row.type,
      };
    },
  };
}

export type InboundRequestService = ReturnType<typeof createInboundRequestService>;
