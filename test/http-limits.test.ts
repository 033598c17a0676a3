// The HTTP edge over a real socket: a request must arrive within its time limits (a body trickled
// byte by byte is cut off with 408, a connection that sends nothing is closed), and connections
// beyond the cap are closed as they arrive while the hub keeps serving the others.
import type { AddressInfo } from 'node:net';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from './helpers/app.ts';

interface RawConnection {
  socket: Socket;
  /** Resolves when the connection closes, with everything the server sent and who closed it. */
  closed: Promise<{ received: string; byServer: boolean }>;
  /** Closes it from the client's side. */
  close(): void;
}

async function listen(t: TestApp): Promise<number> {
  await t.app.server.listen({ port: 0, host: '127.0.0.1' });
  return (t.app.server.server.address() as AddressInfo).port;
}

/** A raw connection; the client gives up on it after `giveUpAfterMs` (the server should close first). */
function open(port: number, giveUpAfterMs = 10_000): RawConnection {
  const socket = connect(port, '127.0.0.1');
  let received = '';
  let closedByClient = false;
  socket.on('data', (chunk) => {
    received += chunk.toString('utf8');
  });
  socket.on('error', () => {});
  const close = () => {
    closedByClient = true;
    socket.destroy();
  };
  const giveUp = setTimeout(close, giveUpAfterMs);
  const closed = new Promise<{ received: string; byServer: boolean }>((resolve) => {
    socket.on('close', () => {
      clearTimeout(giveUp);
      resolve({ received, byServer: !closedByClient });
    });
  });
  return { socket, closed, close };
}

/** Sends one byte every `everyMs` until the connection closes. */
function trickle(connection: RawConnection, byte: string, everyMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setInterval(() => {
      if (connection.socket.destroyed) {
        clearInterval(timer);
        resolve();
      } else connection.socket.write(byte);
    }, everyMs);
  });
}

function bodyOf(response: string): unknown {
  return JSON.parse(response.slice(response.indexOf('\r\n\r\n') + 4));
}

async function openConnections(t: TestApp): Promise<number> {
  return new Promise((resolve, reject) =>
    t.app.server.server.getConnections((err, count) => (err ? reject(err) : resolve(count))),
  );
}

async function waitFor(condition: () => Promise<boolean>, withinMs: number): Promise<boolean> {
  const deadline = Date.now() + withinMs;
  while (Date.now() < deadline) {
    if (await condition()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

describe('time limits (request 1 s, headers 500 ms)', () => {
  let t: TestApp;
  let port: number;
  let hookUrl: string;

  beforeAll(async () => {
    t = await startTestApp({ INTERCHANGE_REQUEST_TIMEOUT: '1s', INTERCHANGE_HEADERS_TIMEOUT: '500ms' });
    port = await listen(t);
    const org = await t.organization('Slow bodies');
    const created = await t.call('POST', '/v1/installations', {
      token: org.token,
      body: { connector: 'stripe', secrets: { webhookSecret: 'whsec_slow_0123456789abcdef' } },
    });
    hookUrl = `/hooks/${created.json().id}`;
  });
  afterAll(() => t?.close());

  it('cuts off a webhook whose body is trickled, with 408 request_timeout, and keeps serving', async () => {
    const slow = open(port, 15_000);
    slow.socket.write(
      `POST ${hookUrl} HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n`,
    );
    // The client would go on for 15 s (100 KB at 10 bytes a second: hours); the server must end it first.
    const trickling = trickle(slow, '{', 100);
    const { received, byServer } = await slow.closed;
    await trickling;
    expect(byServer).toBe(true);
    expect(received).toMatch(/^HTTP\/1\.1 408 /);
    expect(bodyOf(received)).toEqual({
      error: { code: 'request_timeout', message: 'the request did not arrive in time' },
    });
    expect((await t.call('GET', '/healthz')).statusCode).toBe(200);
  });

  it('closes a connection that sends nothing, and one whose headers never end', async () => {
    const silent = open(port);
    const partial = open(port);
    partial.socket.write('GET /healthz HTTP/1.1\r\nHost: hub\r\nX-Slow: ');
    const trickling = trickle(partial, 'a', 100);
    const [quiet, unfinished] = await Promise.all([silent.closed, partial.closed]);
    await trickling;
    expect(quiet).toEqual({ received: '', byServer: true });
    expect(unfinished.byServer).toBe(true);
    expect(unfinished.received).toMatch(/^HTTP\/1\.1 408 /);
  });

  it('does not time a route that takes longer than the limits once its request has arrived', async () => {
    // The limits are on what the client sends: a slow answer (here a slow database) still comes.
    const ping = t.app.store.ping;
    t.app.store.ping = async () => {
      await new Promise((r) => setTimeout(r, 1500));
      await ping.call(t.app.store);
    };
    try {
      const client = open(port);
      client.socket.write('GET /readyz HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n');
      const { received } = await client.closed;
      expect(received).toMatch(/^HTTP\/1\.1 200 /);
    } finally {
      t.app.store.ping = ping;
    }
  });
});

describe('connection cap (3)', () => {
  let t: TestApp;
  let port: number;

  beforeAll(async () => {
    t = await startTestApp({ INTERCHANGE_MAX_CONNECTIONS: '3' });
    port = await listen(t);
  });
  afterAll(() => t?.close());

  it('closes connections beyond the cap as they arrive, and serves again once others close', async () => {
    const held = [open(port, 60_000), open(port, 60_000), open(port, 60_000)];
    expect(await waitFor(async () => (await openConnections(t)) === 3, 5000)).toBe(true);

    const extra = open(port);
    extra.socket.write('GET /healthz HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n');
    expect(await extra.closed).toEqual({ received: '', byServer: true });

    for (const connection of held) connection.close();
    expect(await waitFor(async () => (await openConnections(t)) === 0, 5000)).toBe(true);
    const normal = open(port);
    normal.socket.write('GET /healthz HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n');
    const { received } = await normal.closed;
    expect(received).toMatch(/^HTTP\/1\.1 200 /);
    expect(bodyOf(received)).toEqual({ status: 'ok' });
  });
});
