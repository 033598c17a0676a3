// Mixpanel's ingestion calls (POST /import, POST /engage) and what each answer means for every
// record of the request. Provider bodies are parsed with zod and only allowlisted fields are kept.
import { gzipSync } from 'node:zlib';
import { z } from 'zod';
import { type DeliveryResult, type HttpClient, type HttpResponse, parseRetryAfter } from '../sdk.ts';
import { type Encoded, jsonArray } from './chunks.ts';

/** Where and how one kind of record is sent. */
export interface Target {
  http: HttpClient;
  /** Full URL, query included. */
  url: string;
  /** Authorization and the like; never logged or echoed. */
  headers: Record<string, string>;
  /** Gzip the body (/import accepts it; /engage does not). */
  gzip: boolean;
  /** Which endpoint's answers to expect. */
  kind: 'import' | 'engage';
}

/** One result per record of the request, in order; `halt` applies to every request not yet sent. */
export interface SendOutcome {
  results: DeliveryResult[];
  halt?: DeliveryResult | undefined;
}

/** First delay after a 429 (or 502–504) without Retry-After; the hub's retry schedule doubles it. */
export const DEFAULT_BACKOFF_MS = 2_000;
const MAX_RETRY_AFTER_MS = 3_600_000;
const TEXT_LIMIT = 200;

const failedRecord = z.object({
  index: z.number().int().nonnegative().optional(),
  insert_id: z.string().optional(),
  // Older documentation shows `$insert_id`; the current OpenAPI spec says `insert_id`.
  $insert_id: z.string().optional(),
  field: z.string().optional(),
  message: z.string().optional(),
});
const answer = z.object({
  code: z.number().optional(),
  status: z.union([z.string(), z.number()]).optional(),
  error: z.string().nullable().optional(),
  num_records_imported: z.number().optional(),
  failed_records: z.array(failedRecord).optional(),
});
type Answer = z.infer<typeof answer>;

function clip(text: string): string {
  return text.length > TEXT_LIMIT ? `${text.slice(0, TEXT_LIMIT)}…` : text;
}

function parseAnswer(body: string): Answer | undefined {
  try {
    const parsed = answer.safeParse(JSON.parse(body));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** The allowlisted fields of an answer, as the delivery's stored `response`. */
function summary(res: HttpResponse, parsed: Answer | undefined): string | undefined {
  if (!parsed) return /^[01]$/.test(res.body.trim()) ? res.body.trim() : undefined;
  const kept = {
    code: parsed.code,
    status: parsed.status,
    error: parsed.error == null ? undefined : clip(parsed.error),
    num_records_imported: parsed.num_records_imported,
    failed_records: parsed.failed_records?.length,
  };
  return JSON.stringify(kept);
}

/** Retry-After in ms, bounded; the 2 s default when absent or unreadable. */
export function retryAfterMs(value: string | undefined): number {
  return Math.min(parseRetryAfter(value) ?? DEFAULT_BACKOFF_MS, MAX_RETRY_AFTER_MS);
}

function all(count: number, result: DeliveryResult): DeliveryResult[] {
  return Array.from({ length: count }, () => result);
}

/** Sends records in one request (splitting on 413) and maps the answer onto each record. */
export async function send(target: Target, records: readonly Encoded[]): Promise<SendOutcome> {
  const json = jsonArray(records);
  const headers: Record<string, string> = { ...target.headers, 'content-type': 'application/json' };
  let body: string | Buffer = json;
  if (target.gzip) {
    body = gzipSync(json);
    headers['content-encoding'] = 'gzip';
  }
  let res: HttpResponse;
  try {
    res = await target.http(target.url, {
      method: 'POST',
      headers,
      body,
      timeoutMs: 30_000,
      // A 400 lists up to one failed record per event: keep enough of it to read every index.
      maxResponseBytes: 1_048_576,
    });
  } catch (err) {
    const name = err instanceof Error ? err.name : '';
    const message = err instanceof Error ? clip(err.message) : 'request failed';
    if (name === 'EgressBlockedError') {
      const result: DeliveryResult = { status: 'failed', error: message };
      return { results: all(records.length, result), halt: result };
    }
    return { results: all(records.length, { status: 'retry', error: `Mixpanel unreachable: ${message}` }) };
  }
  return interpret(target, records, res);
}

async function interpret(
  target: Target,
  records: readonly Encoded[],
  res: HttpResponse,
): Promise<SendOutcome> {
  const parsed = parseAnswer(res.body);
  const response = summary(res, parsed);
  const statusCode = res.status;
  const said = parsed?.error ? `: ${clip(parsed.error)}` : '';
  const n = records.length;

  if (statusCode === 401 || statusCode === 403) {
    const result: DeliveryResult = {
      status: 'failed',
      error: `Mixpanel refused the credentials (${statusCode})${said}`,
      statusCode,
      response,
    };
    return { results: all(n, result), halt: result };
  }
  if (statusCode === 429 || statusCode === 502 || statusCode === 503 || statusCode === 504) {
    const result: DeliveryResult = {
      status: 'retry',
      error: statusCode === 429 ? 'Mixpanel rate limit (429)' : `Mixpanel unavailable (${statusCode})`,
      statusCode,
      response,
      retryAfterMs: retryAfterMs(res.headers['retry-after']),
      throttle: true,
    };
    return { results: all(n, result), halt: result };
  }
  if (statusCode >= 500 || statusCode === 408) {
    return {
      results: all(n, { status: 'retry', error: `Mixpanel error (${statusCode})`, statusCode, response }),
    };
  }
  if (statusCode === 413) {
    if (n === 1) {
      const error = 'Mixpanel refused the record as too large (413)';
      return { results: [{ status: 'failed', error, statusCode, response }] };
    }
    // Our size estimate and Mixpanel's limit disagree: halve until each part fits.
    const first = await send(target, records.slice(0, Math.ceil(n / 2)));
    if (first.halt)
      return { results: [...first.results, ...all(n - first.results.length, first.halt)], halt: first.halt };
    const second = await send(target, records.slice(Math.ceil(n / 2)));
    return { results: [...first.results, ...second.results], halt: second.halt };
  }
  if (statusCode >= 200 && statusCode < 300) {
    // /engage answers 200 even when it rejects the update; with verbose=1 it says so in `status`.
    const rejected =
      target.kind === 'engage' &&
      (parsed ? parsed.status === 0 || parsed.status === '0' : res.body.trim() === '0');
    if (rejected) {
      return {
        results: all(n, {
          status: 'failed',
          error: `Mixpanel rejected the profile update${said}`,
          statusCode,
          response,
        }),
      };
    }
    return { results: all(n, { status: 'delivered', statusCode, response }) };
  }
  if (statusCode === 400 && target.kind === 'import' && parsed?.failed_records?.length) {
    return { results: partial(records, parsed.failed_records, statusCode, response) };
  }
  // Any other 4xx: the request itself is wrong (a retry would fail the same way).
  return {
    results: all(n, {
      status: 'failed',
      error: `Mixpanel rejected the request (${statusCode})${said}`,
      statusCode,
      response,
    }),
  };
}

/** Strict-mode 400: the listed records failed for good, every other one was imported. */
function partial(
  records: readonly Encoded[],
  failed: z.infer<typeof failedRecord>[],
  statusCode: number,
  response: string | undefined,
): DeliveryResult[] {
  const results: DeliveryResult[] = all(records.length, { status: 'delivered', statusCode, response });
  const byInsertId = new Map<string, number>();
  records.forEach((r, i) => {
    if (r.insertId) byInsertId.set(r.insertId, i);
  });
  for (const f of failed) {
    const insert = f.insert_id ?? f.$insert_id;
    let index = f.index;
    if (index === undefined || index >= records.length) index = insert ? byInsertId.get(insert) : undefined;
    if (index === undefined) continue;
    const why = [f.field, f.message].filter(Boolean).join(': ') || 'invalid';
    results[index] = {
      status: 'failed',
      error: `Mixpanel rejected the event: ${clip(why)}`,
      statusCode,
      response,
    };
  }
  return results;
}
