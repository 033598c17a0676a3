// The HttpClient connectors send with: every request goes through the egress guard, is bounded in
// time as a whole, never follows redirects and keeps only a small prefix of the response body.
import { request } from 'undici';
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

/** Rejects with the signal's reason once it aborts; for steps that take no signal (DNS). */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** Reads at most `max` bytes, then destroys the stream (which closes the connection). */
async function readCapped(
  body: AsyncIterable<Buffer> & { destroy(): unknown },
  max: number,
): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  let truncated = false;
  if (max <= 0) {
    body.destroy();
    return '';
  }
  for await (const chunk of body) {
    const room = max - size;
    if (chunk.length >= room) {
      chunks.push(chunk.subarray(0, room));
      truncated = true;
      break; // ends the iteration, which destroys the body: the rest is never read
    }
    chunks.push(chunk);
    size += chunk.length;
  }
  // Invalid bytes become U+FFFD; a character cut in two by the limit is dropped, not replaced.
  return new TextDecoder('utf-8').decode(Buffer.concat(chunks), { stream: truncated });
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
 * Outbound HTTP for connectors (see `HttpClient` in connectors/sdk.ts). `guard.check` refuses bad
 * schemes and addresses early with a clear reason; the guard's dispatcher enforces it at connect.
 */
export function createHttpClient(guard: EgressGuard, options: { userAgent?: string } = {}): HttpClient {
  const userAgent = options.userAgent ?? 'Interchange';
  return async (url, req): Promise<HttpResponse> => {
    const timeoutMs = req.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const maxBytes = req.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    const headers = { ...req.headers };
    if (!Object.keys(headers).some((name) => name.toLowerCase() === 'user-agent'))
      headers['user-agent'] = userAgent;

    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new Error('timed out')), timeoutMs);
    try {
      if (!guard.vetted(url)) await untilAborted(guard.check(url), controller.signal);
      const res = await request(url, {
        method: req.method,
        headers,
        body: req.body ?? null,
        dispatcher: guard.dispatcher,
        signal: controller.signal,
        // The signal bounds the whole exchange; these make undici's own clocks no longer than it.
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      const body = await readCapped(res.body, maxBytes);
      return { status: res.statusCode, headers: flattenHeaders(res.headers), body };
    } catch (err) {
      throw describe(err, hostOf(url), timeoutMs, controller.signal.aborted);
    } finally {
      clearTimeout(timer);
    }
  };
}
