// A webhook receiver for delivery tests: a real HTTP server on 127.0.0.1 that records every
// request and answers with a programmable status (a function of the request and its number).
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Received {
  n: number;
  at: number;
  headers: IncomingHttpHeaders;
  body: string;
  json: { id: string; type: string; data: Record<string, unknown> } & Record<string, unknown>;
}

export type Answer = number | { status: number; headers?: Record<string, string>; body?: string } | 'hang';

export interface Receiver {
  url: string;
  received: Received[];
  /** How to answer the next requests (default 200). */
  answer: (req: Received) => Answer;
  /** Resolves when `predicate` holds for what was received (polling), or rejects after `ms`. */
  until(predicate: (received: Received[]) => boolean, ms?: number): Promise<void>;
  close(): Promise<void>;
}

export async function startReceiver(): Promise<Receiver> {
  const hung = new Set<() => void>();
  const receiver: Receiver = {
    url: '',
    received: [],
    answer: () => 200,
    async until(predicate, ms = 20_000) {
      const deadline = Date.now() + ms;
      while (!predicate(receiver.received)) {
        if (Date.now() > deadline) {
          throw new Error(
            `receiver: condition not met in ${ms} ms; got ${receiver.received.length} requests`,
          );
        }
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const end of hung) end();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      let json: Received['json'];
      try {
        json = JSON.parse(body);
      } catch {
        json = { id: '', type: '', data: {} };
      }
      const got: Received = {
        n: receiver.received.length + 1,
        at: Date.now(),
        headers: req.headers,
        body,
        json,
      };
      receiver.received.push(got);
      const answer = receiver.answer(got);
      if (answer === 'hang') {
        hung.add(() => res.destroy());
        return;
      }
      const a = typeof answer === 'number' ? { status: answer } : answer;
      res.writeHead(a.status, a.headers).end(a.body ?? '');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  return receiver;
}

/** The most arrivals within any `windowMs` (sliding window over the sorted times). */
export function maxInWindow(times: readonly number[], windowMs: number): number {
  const at = [...times].sort((a, b) => a - b);
  let most = 0;
  for (let i = 0, j = 0; i < at.length; i++) {
    while ((at[i] as number) - (at[j] as number) >= windowMs) j++;
    most = Math.max(most, i - j + 1);
  }
  return most;
}
