// A local HTTP endpoint for simulator tests: provider simulators send real requests to it, and it
// hands each one to a handler as the hub would see it (InboundRequest: lower-case headers, the
// raw body bytes, the full URI as called), answering with the status the handler returns.
import { createServer, type IncomingMessage } from 'node:http';
import type { InboundRequest } from '../src/connectors/sdk.ts';

export type CaptureHandler = (req: InboundRequest) => number | Promise<number>;

export interface CaptureServer {
  /** Base URL, e.g. http://127.0.0.1:54321 (no trailing slash). */
  url: string;
  /** Every request received, in order. */
  requests: InboundRequest[];
  close(): Promise<void>;
}

/** Lower-cased, single-valued headers, as `InboundRequest` carries them. */
export function inboundHeaders(
  headers: IncomingMessage['headers'] | Record<string, string>,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined) out[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}

/** An InboundRequest built in process, for tests that do not need a socket. */
export function inboundRequest(parts: {
  method?: string;
  url: string;
  headers: Record<string, string>;
  body: string | Buffer;
  receivedAt?: Date;
}): InboundRequest {
  return {
    method: parts.method ?? 'POST',
    url: parts.url,
    headers: inboundHeaders(parts.headers),
    rawBody: Buffer.isBuffer(parts.body) ? parts.body : Buffer.from(parts.body, 'utf8'),
    receivedAt: parts.receivedAt ?? new Date(),
  };
}

/** Starts a capture server on 127.0.0.1 with a free port. */
export async function startCaptureServer(handler: CaptureHandler = () => 200): Promise<CaptureServer> {
  const requests: InboundRequest[] = [];
  let base = '';
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const inbound: InboundRequest = {
        method: req.method ?? 'POST',
        url: `${base}${req.url ?? '/'}`,
        headers: inboundHeaders(req.headers),
        rawBody: Buffer.concat(chunks),
        receivedAt: new Date(),
      };
      requests.push(inbound);
      Promise.resolve()
        .then(() => handler(inbound))
        .then(
          (status) => res.writeHead(status).end(),
          () => res.writeHead(500).end(),
        );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('capture server has no TCP address');
  base = `http://127.0.0.1:${address.port}`;
  return {
    url: base,
    requests,
    close: () =>
      new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve()))),
  };
}
