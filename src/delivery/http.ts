// The HttpClient connectors send with: every request goes through the egress guard, is bounded in
// time as a whole, never follows redirects and keeps only a small prefix of the response body.
// It drives undici's dispatcher with a handler of its own: the response's first bytes are kept as
// they arrive, and one timer aborts the exchange (undici's `request` wraps the same dispatch in a
// body stream, an async iterator and an AbortSignal with its listeners: a sixth of the hub's CPU
// per delivery to a fast endpoint).
import type { IncomingHttpHeaders } from 'node:http';
import type { Dispatcher } from 'undici';
import type { HttpClient, HttpResponse } from '../connectors/sdk.ts';
import { EgressBlockedError, type EgressGuard, EgressLookupError } from './egress.ts';

const DEFAULT_TIMEOUT_MS = 15_000;
const DEFAULT_MAX_RESPONSE_BYTES = 4096;

export type HttpClientErrorCode = 'timeout' | 'connection_refused' | 'connection_reset' | 'tls' | 'network';

/**
 * A request that got no complete response: time-out, refused, reset, TLS or other network
 * failure. Retryable. The message names only the host, never the path (it may hold a token).
 */
export class HttpClientError extends Error {
  override name = 'HttpClientError';
  constructor(
    readonly code: HttpClientErrorCode,
    message: string,
    cause?: unknown,
  ) {
    super(message, { cause });
  }
}

/**
 * The bytes kept of a response body, decoded: invalid bytes become U+FFFD; a character cut in two
 * by the limit is dropped, not replaced.
 */
function decodeKept(chunks: Buffer[], size: number, truncated: boolean): string {
  if (size === 0) return '';
  const bytes = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
  return new TextDecoder('utf-8').decode(bytes, { stream: truncated });
}

/** Where a URL's requests go, parsed once per URL (an endpoint's URL repeats at every delivery). */
const targets = new Map<string, { origin: string; path: string }>();
const TARGETS_KEPT = 10_000;
function targetOf(url: string): { origin: string; path: string } {
  let target = targets.get(url);
  if (!target) {
    const parsed = new URL(url);
    target = { origin: parsed.origin, path: `${parsed.pathname}${parsed.search}` };
    if (targets.size >= TARGETS_KEPT) targets.clear();
    targets.set(url, target);
  }
  return target;
}

/** Why this client cut an exchange short: its time was up, or it had read enough of the body. */
class Cut extends Error {
  constructor(readonly timedOut: boolean) {
    super(timedOut ? 'timed out' : 'enough of the response was read');
  }
}

type Answer = { status: number; headers: Record<string, string | string[] | undefined>; body: string };

/**
 * One exchange through `dispatcher`: resolves with the status, headers and at most `maxBytes` of
 * the body, decoded (the connection is closed when more came), or rejects with what went wrong.
 * `timeoutMs` bounds the whole of it, connection included.
 */
function exchange(
  dispatcher: Dispatcher,
  url: string,
  req: { method: string; headers: Record<string, string>; body: string | Buffer | null },
  timeoutMs: number,
  maxBytes: number,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const { origin, path } = targetOf(url);
    const handler = new Exchange(maxBytes, resolve, reject);
    handler.timer = setTimeout(onTimeout, timeoutMs, handler);
    try {
      dispatcher.dispatch(
        {
          origin,
          path,
          method: req.method as Dispatcher.HttpMethod,
          headers: req.headers,
          body: req.body,
          // The timer bounds the whole exchange; these make undici's own clocks no longer than it.
          headersTimeout: timeoutMs,
          bodyTimeout: timeoutMs,
        },
        handler,
      );
    } catch (err) {
      handler.finish(err);
    }
  });
}

function onTimeout(exchange: Exchange) {
  exchange.stop(new Cut(true));
  exchange.finish(exchange.cut);
}

/** An exchange's handler and state: one object per request, its methods shared (no closures). */
class Exchange implements Dispatcher.DispatchHandler {
  chunks: Buffer[] = [];
  size = 0;
  status = 0;
  headers: Record<string, string | string[] | undefined> = {};
  settled = false;
  controller: Dispatcher.DispatchController | undefined;
  cut: Cut | undefined;
  timer: NodeJS.Timeout | undefined;

  constructor(
    readonly maxBytes: number,
    readonly resolve: (answer: Answer) => void,
    readonly reject: (err: unknown) => void,
  ) {}

  finish(err: unknown, truncated = false) {
    if (this.settled) return;
    this.settled = true;
    clearTimeout(this.timer);
    if (err) this.reject(err);
    else
      this.resolve({
        status: this.status,
        headers: this.headers,
        body: decodeKept(this.chunks, this.size, truncated),
      });
  }

  /** Stops the exchange (`finish` first when what was read is the answer). */
  stop(reason: Cut) {
    this.cut = reason;
    this.controller?.abort(reason);
  }

  onRequestStart(c: Dispatcher.DispatchController) {
    this.controller = c;
    if (this.cut) c.abort(this.cut);
  }

  onResponseStart(
    _c: Dispatcher.DispatchController,
    statusCode: number,
    responseHeaders: IncomingHttpHeaders,
  ) {
    if (statusCode < 200) return; // informational: the answer comes after
    this.status = statusCode;
    this.headers = responseHeaders as Record<string, string | string[] | undefined>;
    if (this.maxBytes <= 0) {
      this.finish(undefined);
      this.stop(new Cut(false));
    }
  }

  onResponseData(_c: Dispatcher.DispatchController, chunk: Buffer) {
    if (this.settled) return;
    const room = this.maxBytes - this.size;
    if (chunk.length >= room) {
      this.chunks.push(chunk.subarray(0, room));
      this.size += room;
      // Enough: the rest is never read, and the connection is closed.
      this.finish(undefined, true);
      this.stop(new Cut(false));
      return;
    }
    this.chunks.push(chunk);
    this.size += chunk.length;
  }

  onResponseEnd() {
    this.finish(undefined);
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error) {
    this.finish(err);
  }
}

function flattenHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    out[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}

function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return 'the destination';
  }
}

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT']);
const RESET_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED']);

/** A short message without the URL's path, query or the request body. */
function describe(err: unknown, host: string, timeoutMs: number, timedOut: boolean): Error {
  if (err instanceof EgressBlockedError || err instanceof EgressLookupError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code ?? '';
  if (timedOut || TIMEOUT_CODES.has(code))
    return new HttpClientError('timeout', `request to ${host} timed out after ${timeoutMs} ms`, err);
  if (code === 'ECONNREFUSED')
    return new HttpClientError('connection_refused', `connection to ${host} refused`, err);
  if (RESET_CODES.has(code))
    return new HttpClientError('connection_reset', `connection to ${host} was reset or closed early`, err);
  if (code.startsWith('ERR_TLS') || code.startsWith('ERR_SSL') || /CERT|SELF_SIGNED/.test(code))
    return new HttpClientError('tls', `TLS handshake with ${host} failed: ${code}`, err);
  const why = code || (err instanceof Error ? err.name : 'unknown error');
  return new HttpClientError('network', `request to ${host} failed: ${why}`, err);
}

/**
 * Outbound HTTP for connectors (see `HttpClient` in connectors/sdk.ts). `guard.screen` refuses bad
 * schemes and IP literals early with a clear reason; the guard's dispatcher resolves and vets host
 * names, and vets every address again at connect.
 */
export function createHttpClient(guard: EgressGuard, options: { userAgent?: string } = {}): HttpClient {
  const userAgent = options.userAgent ?? 'Interchange';
  return async (url, req): Promise<HttpResponse> => {
    const timeoutMs = req.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const maxBytes = req.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    const headers = { ...req.headers };
    if (
      !('user-agent' in headers) &&
      !Object.keys(headers).some((name) => name.toLowerCase() === 'user-agent')
    )
      headers['user-agent'] = userAgent;

    try {
      // The host name is resolved and vetted by the guard's dispatcher, within the time limit.
      guard.screen(url);
      const res = await exchange(
        guard.dispatcher,
        url,
        { method: req.method, headers, body: req.body ?? null },
        timeoutMs,
        maxBytes,
      );
      return { status: res.status, headers: flattenHeaders(res.headers), body: res.body };
    } catch (err) {
      throw describe(err, hostOf(url), timeoutMs, err instanceof Cut && err.timedOut);
    }
  };
}
