import type { LookupAddress } from 'node:dns';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createEgressGuard, EgressBlockedError, type EgressGuard, type LookupAll } from './egress.ts';
import { createHttpClient, HttpClientError } from './http.ts';

const guards: EgressGuard[] = [];
const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(guards.splice(0).map((g) => g.close()));
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

function client(
  allow = ['127.0.0.1/32'],
  lookup?: Parameters<typeof createEgressGuard>[0]['lookup'],
  dnsCacheTtlMs?: number,
) {
  const guard = createEgressGuard({
    allow,
    ...(lookup ? { lookup } : {}),
    ...(dnsCacheTtlMs ? { dnsCacheTtlMs } : {}),
  });
  guards.push(guard);
  return createHttpClient(guard, { userAgent: 'Interchange-Test/1' });
}

async function serve(handler: (req: IncomingMessage, res: ServerResponse) => void) {
  let requests = 0;
  const server = createServer((req, res) => {
    requests++;
    handler(req, res);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, requests: () => requests };
}

const readBody = async (req: IncomingMessage) => {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
};

describe('createHttpClient', () => {
  it('sends the request and returns status, lower-cased headers and body', async () => {
    const server = await serve(async (req, res) => {
      const body = await readBody(req);
      res.setHeader('X-Multi', ['a', 'b']);
      res.setHeader('Content-Type', 'application/json');
      res.writeHead(201);
      res.end(
        JSON.stringify({
          method: req.method,
          ua: req.headers['user-agent'],
          sig: req.headers['webhook-id'],
          body,
        }),
      );
    });
    const res = await client()(`${server.url}/hooks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'Webhook-Id': 'msg_1' },
      body: '{"a":1}',
    });
    expect(res.status).toBe(201);
    expect(res.headers['content-type']).toBe('application/json');
    expect(res.headers['x-multi']).toBe('a, b');
    expect(JSON.parse(res.body)).toEqual({
      method: 'POST',
      ua: 'Interchange-Test/1',
      sig: 'msg_1',
      body: '{"a":1}',
    });
  });

  it('returns a 302 as it is and does not follow it', async () => {
    const target = await serve((_req, res) => res.end('followed'));
    const server = await serve((_req, res) => {
      res.writeHead(302, { Location: `${target.url}/elsewhere` });
      res.end('moved');
    });
    const res = await client()(`${server.url}/`, { method: 'POST', headers: {}, body: 'x' });
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe(`${target.url}/elsewhere`);
    expect(res.body).toBe('moved');
    expect(target.requests()).toBe(0);
  });

  it('keeps only maxResponseBytes of a 50 MB body and closes the connection', async () => {
    const total = 50 * 1024 * 1024;
    const chunk = Buffer.alloc(64 * 1024, 'a');
    let written = 0;
    let serverSawClose!: Promise<boolean>;
    const server = await serve((_req, res) => {
      serverSawClose = new Promise((resolve) => {
        res.on('close', () => resolve(written < total));
      });
      res.writeHead(200, { 'content-length': String(total) });
      const pump = () => {
        while (written < total && !res.destroyed) {
          written += chunk.length;
          if (!res.write(chunk)) return res.once('drain', pump);
        }
        if (written >= total) res.end();
      };
      pump();
    });
    const res = await client()(`${server.url}/`, { method: 'GET', headers: {}, maxResponseBytes: 1000 });
    expect(res.status).toBe(200);
    expect(res.body).toBe('a'.repeat(1000));
    // The server was cut off before it could write everything: the client stopped reading.
    expect(await serverSawClose).toBe(true);
  });

  it('cuts a body that drips forever at timeoutMs', async () => {
    const server = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      const timer = setInterval(() => res.write('.'), 20);
      res.on('close', () => clearInterval(timer));
    });
    const err = await client()(`${server.url}/`, { method: 'GET', headers: {}, timeoutMs: 300 }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(HttpClientError);
    expect((err as HttpClientError).code).toBe('timeout');
    expect((err as Error).message).toBe(`request to ${server.url.slice(7)} timed out after 300 ms`);
  });

  it('times out when headers never come, and when DNS never answers', async () => {
    const server = await serve(() => {});
    await expect(client()(`${server.url}/`, { method: 'GET', headers: {}, timeoutMs: 200 })).rejects.toThrow(
      /timed out after 200 ms/,
    );
    const hung = client([], () => new Promise(() => {}));
    await expect(
      hung('https://hangs.example/', { method: 'GET', headers: {}, timeoutMs: 200 }),
    ).rejects.toThrow('request to hangs.example timed out after 200 ms');
  });

  it('decodes invalid UTF-8 with replacement characters', async () => {
    const server = await serve((req, res) => {
      if (req.url === '/bad') res.end(Buffer.from([0x68, 0x69, 0xff, 0xfe, 0x21]));
      else res.end('ééé');
    });
    const http = client();
    expect((await http(`${server.url}/bad`, { method: 'GET', headers: {} })).body).toBe('hi\uFFFD\uFFFD!');
    // A character cut in two by the limit is dropped, not turned into a replacement character.
    expect((await http(`${server.url}/cut`, { method: 'GET', headers: {}, maxResponseBytes: 3 })).body).toBe(
      'é',
    );
  });

  it('rejects with an Error when the server resets the connection', async () => {
    const server = await serve((req, res) => {
      if (req.url === '/mid-body') {
        res.writeHead(200, { 'content-length': '100' });
        res.write('partial');
        setTimeout(() => req.socket.destroy(), 20);
      } else req.socket.destroy();
    });
    const http = client();
    for (const path of ['/now', '/mid-body']) {
      const err = await http(`${server.url}${path}?token=secret`, {
        method: 'POST',
        headers: {},
        body: 'hush',
      }).catch((e: unknown) => e);
      expect(err, path).toBeInstanceOf(HttpClientError);
      expect((err as HttpClientError).code, path).toBe('connection_reset');
      expect((err as Error).message).not.toMatch(/secret|hush|mid-body/);
    }
  });

  it('refuses loopback while the allowlist is empty, without sending', async () => {
    const server = await serve((_req, res) => res.end('ok'));
    const err = await client([])(`${server.url}/`, { method: 'POST', headers: {}, body: 'x' }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(EgressBlockedError);
    expect((err as EgressBlockedError).reason).toBe('loopback address 127.0.0.1');
    expect(server.requests()).toBe(0);
  });
});

describe('createHttpClient, to host names', () => {
  /** A lookup answering from a table, counting what it was asked. */
  const countingLookup = (table: Record<string, string>) =>
    vi.fn<LookupAll>(async (host) => {
      const address = table[host];
      if (!address) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
      return [{ address, family: 4 } satisfies LookupAddress];
    });
  const asked = (lookup: ReturnType<typeof countingLookup>, host: string) =>
    lookup.mock.calls.filter(([name]) => name === host).length;
  /** A receiver on 127.0.0.1 that closes every connection after its answer (`close`), or keeps it. */
  const receiver = async (close: boolean) => {
    const hosts: string[] = [];
    let connections = 0;
    const server = await serve((req, res) => {
      hosts.push(req.headers.host ?? '');
      if (close) res.setHeader('connection', 'close');
      res.end('ok');
    });
    servers.at(-1)?.on('connection', () => connections++);
    return { port: new URL(server.url).port, hosts, connections: () => connections };
  };

  it('resolves a host name once for repeated deliveries, on reused and on new connections', async () => {
    const lookup = countingLookup({ 'kept.example': '127.0.0.1', 'closing.example': '127.0.0.1' });
    const http = client(['127.0.0.1/32'], lookup);
    const kept = await receiver(false);
    const closing = await receiver(true);
    for (let n = 0; n < 5; n++) {
      for (const [host, port] of [
        ['kept.example', kept.port],
        ['closing.example', closing.port],
      ]) {
        const res = await http(`http://${host}:${port}/hook`, { method: 'POST', headers: {}, body: 'x' });
        expect(res.status).toBe(200);
      }
    }
    expect(kept.connections()).toBe(1);
    expect(closing.connections()).toBe(5);
    // Within the time an answer is kept, a host name is resolved once, whatever the connections.
    expect(asked(lookup, 'kept.example')).toBe(1);
    expect(asked(lookup, 'closing.example')).toBe(1);
    // The receiver sees the host name it is known by.
    expect(closing.hosts).toEqual(Array(5).fill(`closing.example:${closing.port}`));
  });

  it('resolves it again once that time is over', async () => {
    const lookup = countingLookup({ 'closing.example': '127.0.0.1' });
    const http = client(['127.0.0.1/32'], lookup, 50);
    const closing = await receiver(true);
    await http(`http://closing.example:${closing.port}/`, { method: 'GET', headers: {} });
    await new Promise((r) => setTimeout(r, 120));
    await http(`http://closing.example:${closing.port}/`, { method: 'GET', headers: {} });
    expect(asked(lookup, 'closing.example')).toBe(2);
  });

  it('vets a kept answer at every use: a blocked address is refused every time, not named', async () => {
    const allowed = await receiver(true);
    // Loopback is allowed for the test's receiver; the internal name's private address is not.
    const lookup = countingLookup({ 'hooks.example': '127.0.0.1', 'internal.example': '10.1.2.3' });
    const http = client(['127.0.0.1/32'], lookup);
    for (let n = 0; n < 2; n++) {
      const err = await http(`http://internal.example:${allowed.port}/`, {
        method: 'GET',
        headers: {},
      }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(EgressBlockedError);
      expect((err as Error).message).toBe(
        'egress blocked: internal.example resolves to a non-public address',
      );
    }
    expect(asked(lookup, 'internal.example')).toBe(1);
    // An allowlisted address is connected to.
    for (let n = 0; n < 2; n++) {
      const res = await http(`http://hooks.example:${allowed.port}/`, { method: 'GET', headers: {} });
      expect(res.status).toBe(200);
    }
    expect(allowed.connections()).toBe(2);
  });
});
