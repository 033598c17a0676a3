// A local fake of Mixpanel's ingestion API for tests and the demo: POST /import (Basic auth by
// service account + project_id or by project token, strict=1 validation with Mixpanel's answers,
// gzip, size limits, $insert_id de-duplication) and POST /engage (profile updates with $token).
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { gunzipSync } from 'node:zlib';

export interface MixpanelSimOptions {
  projectId?: string;
  projectToken?: string;
  serviceAccount?: { username: string; secret: string };
}

/** An event as stored: what a Mixpanel query would show (duplicates collapsed). */
export interface SimEvent {
  event: string;
  properties: Record<string, unknown>;
}

export interface SimRequest {
  path: string;
  query: Record<string, string>;
  auth: 'service_account' | 'project_token' | 'none' | 'invalid';
  gzip: boolean;
  /** Uncompressed body size. */
  bytes: number;
  records: number;
  status: number;
}

export interface MixpanelSim {
  /** Base URL, e.g. http://127.0.0.1:54321 (no trailing slash). */
  url: string;
  options: Required<MixpanelSimOptions>;
  events: SimEvent[];
  /** distinct_id → profile properties. */
  profiles: Map<string, Record<string, unknown>>;
  requests: SimRequest[];
  /** The next `count` requests answer `status` (429, 500, 503 …), with Retry-After if given. */
  failNext(count: number, status: number, retryAfter?: string): void;
  close(): Promise<void>;
}

const MAX_REQUEST_BYTES = 2_097_152;
const MAX_EVENT_BYTES = 1_048_576;
const MAX_RECORDS = 2000;
const MAX_KEYS = 255;
/** Values Mixpanel refuses as distinct_id or $insert_id (its documented list). */
const INVALID_IDS = new Set(
  '00000000-0000-0000-0000-000000000000 anon anonymous nil none null n/a na undefined unknown <nil> 0 -1 true false [] {}'.split(
    ' ',
  ),
);
const HOUR = 3_600_000;
const EPOCH_1971 = Date.UTC(1971, 0, 1);

type Json = Record<string, unknown>;
type HeaderMap = Record<string, string>;
type Failure = { index: number; insert_id: string; field: string; message: string };

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Strict-mode validation of one event, as Mixpanel documents it; undefined when valid. */
function validateEvent(raw: unknown, index: number): Failure | undefined {
  const props = isObject(raw) && isObject(raw.properties) ? raw.properties : {};
  const insertId = typeof props.$insert_id === 'string' ? props.$insert_id : '';
  const fail = (field: string, message: string) => ({ index, insert_id: insertId, field, message });
  if (!isObject(raw)) return fail('', 'event must be a JSON object');
  if (Buffer.byteLength(JSON.stringify(raw)) > MAX_EVENT_BYTES) return fail('', 'event exceeds 1MB');
  if (typeof raw.event !== 'string' || raw.event === '') return fail('event', "'event' is required");
  if (!isObject(raw.properties)) return fail('properties', "'properties' must be an object");
  const { time, distinct_id: distinctId, $insert_id: id } = props;
  if (typeof time !== 'number') return fail('properties.time', "'properties.time' is required");
  const ms = time < 1e11 ? time * 1000 : time;
  if (ms < EPOCH_1971 || ms > Date.now() + HOUR)
    return fail('properties.time', "'properties.time' is invalid: before 1971 or in the future");
  if (typeof distinctId !== 'string' || INVALID_IDS.has(distinctId.toLowerCase()))
    return fail('properties.distinct_id', "'properties.distinct_id' is invalid");
  if (typeof id !== 'string' || !/^[A-Za-z0-9-]{1,36}$/.test(id) || INVALID_IDS.has(id.toLowerCase()))
    return fail('properties.$insert_id', "'properties.$insert_id' is invalid");
  if (Object.keys(props).length >= MAX_KEYS) return fail('properties', 'too many properties');
  for (const [key, value] of Object.entries(props)) {
    if (Array.isArray(value) && value.length >= MAX_KEYS) return fail(`properties.${key}`, 'array too long');
    if (isObject(value) && Object.keys(value).length >= MAX_KEYS)
      return fail(`properties.${key}`, 'too many');
  }
  return undefined;
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  413: 'Request Entity Too Large',
  429: 'Too Many Requests',
};

function reply(res: ServerResponse, status: number, body: unknown, headers: HeaderMap = {}): number {
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
  return status;
}

/** Mixpanel's error body: `{code, error, status}`. */
function fail(res: ServerResponse, code: number, error: string, headers: HeaderMap = {}): number {
  return reply(res, code, { code, error, status: STATUS_TEXT[code] ?? 'Error' }, headers);
}

function parseBody(raw: Buffer, contentType: string): unknown[] | undefined {
  const text = raw.toString('utf8');
  try {
    if (contentType.includes('x-ndjson'))
      return text
        .split(/\n+/)
        .filter(Boolean)
        .map((l) => JSON.parse(l));
    if (contentType.includes('x-www-form-urlencoded'))
      return parseBody(Buffer.from(new URLSearchParams(text).get('data') ?? ''), '');
    const parsed: unknown = JSON.parse(text);
    return Array.isArray(parsed) ? parsed : [parsed];
  } catch {
    return undefined;
  }
}

/** Starts the simulator on 127.0.0.1 with a free port. */
export async function startMixpanelSim(options: MixpanelSimOptions = {}): Promise<MixpanelSim> {
  const opts: Required<MixpanelSimOptions> = {
    projectId: options.projectId ?? '3129870',
    projectToken: options.projectToken ?? 'sim0project0token0a1b2c3d4e5f6a7b8',
    serviceAccount: options.serviceAccount ?? {
      username: 'interchange.sim.mp-service-account',
      secret: 'sim-sa-secret',
    },
  };
  const events: SimEvent[] = [];
  const seen = new Set<string>();
  const profiles = new Map<string, Json>();
  const requests: SimRequest[] = [];
  const failures: Array<{ status: number; retryAfter?: string | undefined }> = [];

  function authOf(req: IncomingMessage, query: URLSearchParams): SimRequest['auth'] {
    const header = req.headers.authorization ?? '';
    if (!header.startsWith('Basic ')) return 'none';
    const decoded = Buffer.from(header.slice(6), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    const [user, secret] = colon < 0 ? [decoded, ''] : [decoded.slice(0, colon), decoded.slice(colon + 1)];
    const sa = opts.serviceAccount;
    if (user === sa.username && secret === sa.secret) return 'service_account';
    const projectOk = !query.has('project_id') || query.get('project_id') === opts.projectId;
    if (user === opts.projectToken && projectOk) return 'project_token';
    return 'invalid';
  }

  function handleImport(
    res: ServerResponse,
    query: URLSearchParams,
    auth: SimRequest['auth'],
    records: unknown[],
  ): number {
    if (auth === 'none') return fail(res, 401, 'Unauthorized');
    if (auth === 'invalid') return fail(res, 401, 'Invalid credentials');
    if (auth === 'service_account' && query.get('project_id') !== opts.projectId) {
      if (!query.has('project_id')) return fail(res, 400, 'project_id is required for service account auth');
      return fail(res, 403, 'service account has no access to this project');
    }
    const strict = query.get('strict') === '1';
    const failed: Failure[] = [];
    records.forEach((raw, index) => {
      const failure = validateEvent(raw, index);
      if (failure) {
        failed.push(failure);
        return;
      }
      const e = raw as SimEvent;
      const p = e.properties;
      // Mixpanel's de-duplication key: (event, time, distinct_id, $insert_id).
      const key = JSON.stringify([e.event, p.time, p.distinct_id, p.$insert_id]);
      if (seen.has(key)) return;
      seen.add(key);
      events.push(e);
    });
    const imported = records.length - failed.length;
    if (strict && failed.length > 0) {
      const error = 'some data points in the request failed validation';
      return reply(res, 400, {
        code: 400,
        error,
        failed_records: failed,
        num_records_imported: imported,
        status: 'Bad Request',
      });
    }
    return reply(res, 200, { code: 200, num_records_imported: imported, status: 'OK' });
  }

  function handleEngage(res: ServerResponse, records: unknown[]): number {
    // Mixpanel answers 200 to rejected updates too; verbose=1 puts the verdict in `status`.
    for (const raw of records) {
      if (!isObject(raw) || raw.$token !== opts.projectToken)
        return reply(res, 200, { error: 'Invalid token', status: 0 });
      const id = raw.$distinct_id;
      if (typeof id !== 'string' || id === '' || INVALID_IDS.has(id.toLowerCase()))
        return reply(res, 200, { error: "'$distinct_id' is invalid", status: 0 });
      if (!isObject(raw.$set) && !isObject(raw.$set_once))
        return reply(res, 200, { error: 'no supported operation', status: 0 });
    }
    for (const raw of records as Json[]) {
      const id = raw.$distinct_id as string;
      const existing = profiles.get(id) ?? {};
      profiles.set(id, {
        ...(raw.$set_once as Json | undefined),
        ...existing,
        ...(raw.$set as Json | undefined),
      });
    }
    return reply(res, 200, { error: null, status: 1 });
  }

  /** Answers one request; returns its status. */
  function route(req: IncomingMessage, res: ServerResponse, raw: Buffer, log: SimRequest): number {
    const query = new URLSearchParams(log.query);
    if (req.method !== 'POST' || (log.path !== '/import' && log.path !== '/engage'))
      return fail(res, 404, 'not found');
    const knob = failures.shift();
    if (knob) {
      const message =
        knob.status === 429
          ? 'Project exceeded rate limits. Please retry the request with exponential backoff.'
          : 'simulated failure';
      return fail(res, knob.status, message, knob.retryAfter ? { 'retry-after': knob.retryAfter } : {});
    }
    let body = raw;
    if (log.gzip) {
      if (log.path === '/engage')
        return reply(res, 400, { error: 'gzip is not supported on /engage', status: 0 });
      try {
        body = gunzipSync(raw, { maxOutputLength: MAX_REQUEST_BYTES + 1 });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ERR_BUFFER_TOO_LARGE')
          return fail(res, 400, 'unable to decompress body');
        body = Buffer.alloc(MAX_REQUEST_BYTES + 1);
      }
    }
    log.bytes = body.length;
    if (body.length > MAX_REQUEST_BYTES)
      return fail(res, 413, `request exceeds max limit of ${MAX_REQUEST_BYTES} bytes`);
    const records = parseBody(body, req.headers['content-type'] ?? '');
    if (!records) return fail(res, 400, 'unable to parse body');
    log.records = records.length;
    if (records.length > MAX_RECORDS)
      return fail(res, 413, `request exceeds max limit of ${MAX_RECORDS} records`);
    return log.path === '/import' ? handleImport(res, query, log.auth, records) : handleEngage(res, records);
  }

  function handle(req: IncomingMessage, res: ServerResponse, raw: Buffer): SimRequest {
    const url = new URL(req.url ?? '/', 'http://sim');
    const auth = authOf(req, url.searchParams);
    const gzip = req.headers['content-encoding'] === 'gzip';
    const query = Object.fromEntries(url.searchParams);
    const log: SimRequest = { path: url.pathname, query, auth, gzip, bytes: 0, records: 0, status: 0 };
    log.status = route(req, res, raw, log);
    return log;
  }

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => requests.push(handle(req, res, Buffer.concat(chunks))));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('Mixpanel sim has no TCP address');
  return {
    url: `http://127.0.0.1:${address.port}`,
    options: opts,
    events,
    profiles,
    requests,
    failNext(count, status, retryAfter) {
      for (let i = 0; i < count; i++) failures.push({ status, retryAfter });
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}
