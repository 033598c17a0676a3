import type { LookupAddress } from 'node:dns';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  blockedReason,
  createEgressGuard,
  EgressBlockedError,
  type EgressGuard,
  EgressLookupError,
  type LookupAll,
} from './egress.ts';

const BLOCKED: Array<[address: string, reason: RegExp]> = [
  ['0.0.0.0', /unspecified/],
  ['0.255.1.2', /unspecified/],
  ['10.0.0.1', /private/],
  ['10.255.255.255', /private/],
  ['172.16.0.1', /private/],
  ['172.31.255.255', /private/],
  ['192.168.0.1', /private/],
  ['127.0.0.1', /loopback address 127\.0\.0\.1/],
  ['127.255.255.254', /loopback/],
  ['169.254.169.254', /metadata/],
  ['169.254.1.1', /link-local/],
  ['100.64.0.1', /carrier-grade NAT/],
  ['100.127.255.255', /carrier-grade NAT/],
  ['224.0.0.1', /multicast/],
  ['239.255.255.250', /multicast/],
  ['192.0.2.1', /documentation/],
  ['198.51.100.7', /documentation/],
  ['203.0.113.9', /documentation/],
  ['198.18.0.1', /benchmarking/],
  ['198.19.255.255', /benchmarking/],
  ['240.0.0.1', /reserved/],
  ['255.255.255.255', /broadcast/],
  ['192.0.0.8', /IETF protocol/],
  ['::', /unspecified/],
  ['::1', /loopback/],
  ['fe80::1', /link-local/],
  ['febf:ffff::1', /link-local/],
  ['fec0::1', /site-local/],
  ['fc00::1', /unique-local/],
  ['fd12:3456::1', /unique-local/],
  ['ff02::1', /multicast/],
  ['2001:db8::1', /documentation/],
  ['2001:2::1', /benchmarking/],
  ['64:ff9b:1::1', /NAT64/],
  ['4000::1', /unassigned/],
  ['not-an-ip', /invalid/],
];

const EMBEDDED: Array<[address: string, reason: RegExp]> = [
  ['::ffff:127.0.0.1', /loopback address 127\.0\.0\.1 \(IPv4-mapped/],
  ['::ffff:7f00:1', /loopback.*IPv4-mapped/],
  ['::ffff:169.254.169.254', /metadata/],
  ['::ffff:10.1.2.3', /private/],
  ['::ffff:100.64.0.1', /carrier-grade NAT/],
  ['::7f00:1', /loopback.*IPv4-compatible/],
  // ipaddr.js reads the dotted ::a.b.c.d spelling as IPv4-mapped; either way the v4 is checked
  ['::127.0.0.1', /loopback address 127\.0\.0\.1/],
  ['::a00:1', /private.*IPv4-compatible/],
  ['::ffff:0:192.168.1.1', /private.*IPv4-translated/],
  ['64:ff9b::7f00:1', /loopback.*NAT64/],
  ['64:ff9b::a9fe:a9fe', /metadata.*NAT64/],
  ['2002:7f00:1::1', /loopback.*6to4/],
  ['2002:c0a8:101::1', /private.*6to4/],
  // Teredo, RFC 4380's example: server 65.54.227.120, client 192.0.2.45 (inverted in the last 32 bits)
  ['2001:0:4136:e378:8000:63bf:3fff:fdd2', /documentation address 192\.0\.2\.45.*Teredo/],
  ['2001:0:7f00:1::1', /loopback.*Teredo/],
];

const ALLOWED = [
  '8.8.8.8',
  '1.1.1.1',
  '11.0.0.1',
  '126.255.255.255',
  '128.0.0.1',
  '172.15.255.255',
  '172.32.0.1',
  '100.63.255.255',
  '100.128.0.1',
  '169.253.255.255',
  '169.255.0.1',
  '192.167.255.255',
  '192.169.0.1',
  '198.17.255.255',
  '198.20.0.1',
  '203.0.114.1',
  '223.255.255.255',
  '2606:4700::1',
  '2001:4860:4860::8888',
  '::ffff:8.8.8.8',
  '64:ff9b::808:808',
  '2002:808:808::1',
  '2001:0:4136:e378:8000:63bf:f7f7:f7f7',
];

describe('blockedReason', () => {
  it.each(BLOCKED)('refuses %s', (address, reason) => {
    expect(blockedReason(address, [])).toMatch(reason);
  });

  it.each(EMBEDDED)('refuses the embedded IPv4 of %s', (address, reason) => {
    expect(blockedReason(address, [])).toMatch(reason);
  });

  it.each(ALLOWED)('allows %s', (address) => {
    expect(blockedReason(address, [])).toBeUndefined();
  });

  it('opens exactly the allowlisted CIDR', () => {
    const allow = ['127.0.0.1/32', '10.1.0.0/16', '::1/128'];
    expect(blockedReason('127.0.0.1', allow)).toBeUndefined();
    expect(blockedReason('::ffff:127.0.0.1', allow)).toBeUndefined();
    expect(blockedReason('127.0.0.2', allow)).toMatch(/loopback/);
    expect(blockedReason('10.1.255.255', allow)).toBeUndefined();
    expect(blockedReason('10.2.0.1', allow)).toMatch(/private/);
    expect(blockedReason('::1', allow)).toBeUndefined();
    expect(blockedReason('::2', allow)).toMatch(/unspecified/);
    expect(blockedReason('fd00::1', allow)).toMatch(/unique-local/);
  });
});

const guards: EgressGuard[] = [];
const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(guards.splice(0).map((g) => g.close()));
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

function guard(allow: string[], lookup?: LookupAll): EgressGuard {
  const g = createEgressGuard(lookup ? { allow, lookup } : { allow });
  guards.push(g);
  return g;
}

/** A lookup answering from a table, recording what it was asked. */
function fakeLookup(table: Record<string, string[]>) {
  return vi.fn<LookupAll>(async (host) => {
    const addresses = table[host];
    if (!addresses) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    return addresses.map((address): LookupAddress => ({ address, family: address.includes(':') ? 6 : 4 }));
  });
}

async function listen(): Promise<{ port: number; connections: () => number }> {
  let connections = 0;
  const server = createServer((_req, res) => res.end('ok'));
  server.on('connection', () => connections++);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, connections: () => connections };
}

describe('check', () => {
  it('refuses localhost while the allowlist is empty, allows it when listed', async () => {
    const err = await guard([])
      .check('http://localhost:8080/hook')
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EgressBlockedError);
    expect((err as EgressBlockedError).reason).toBe('localhost resolves to a non-public address');
    expect((err as EgressBlockedError).detail).toMatch(/^localhost resolves to loopback address/);
    expect((err as EgressBlockedError).code).toBe('egress_blocked');
    await expect(
      guard(['127.0.0.1/32', '::1/128']).check('http://localhost:8080/hook'),
    ).resolves.toBeUndefined();
  });

  it('refuses a host with one public and one private address, naming the address only to the log', async () => {
    const lookup = fakeLookup({ 'mixed.example': ['93.184.215.14', '10.0.0.5'] });
    const warned: unknown[] = [];
    const logger = { warn: (...args: unknown[]) => warned.push(args) };
    const err = await createEgressGuard({ allow: [], lookup, logger })
      .check('https://mixed.example/x')
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EgressBlockedError);
    // What the tenant reads does not say what the name resolves to.
    expect((err as Error).message).toBe('egress blocked: mixed.example resolves to a non-public address');
    expect((err as EgressBlockedError).reason).not.toContain('10.0.0.5');
    // The operator's log does.
    expect((err as EgressBlockedError).address).toBe('10.0.0.5');
    expect((err as EgressBlockedError).detail).toBe('mixed.example resolves to private address 10.0.0.5');
    expect(JSON.stringify(warned)).toContain('10.0.0.5');
    await expect(
      guard(
        [],
        fakeLookup({ 'ok.example': ['93.184.215.14', '2606:2800:21f:cb07:6820:80da:af6b:8b2c'] }),
      ).check('https://ok.example/x'),
    ).resolves.toBeUndefined();
  });

  it('checks literal IP hosts, in every WHATWG-normalized form, without DNS', async () => {
    const lookup = fakeLookup({ 'public.example': ['93.184.216.34'] });
    const g = guard([], lookup);
    for (const url of [
      'http://0x7f.1/',
      'http://2130706433/',
      'http://127.1:9000/',
      'http://[::ffff:127.0.0.1]/',
      'http://[::1]/',
      'http://169.254.169.254/latest/meta-data/',
      'https://[fd00::1]:8443/',
    ]) {
      await expect(g.check(url), url).rejects.toBeInstanceOf(EgressBlockedError);
    }
    await expect(g.check('http://8.8.8.8/')).resolves.toBeUndefined();
    // An address the URL holds is named: the tenant wrote it.
    await expect(g.check('http://10.1.2.3/')).rejects.toThrow('egress blocked: private address 10.1.2.3');
    expect(lookup).not.toHaveBeenCalled();
  });

  it('screens a URL at send time without DNS: its form and an IP literal host', () => {
    const lookup = fakeLookup({ 'public.example': ['10.0.0.1'] });
    const g = guard([], lookup);
    for (const url of ['http://8.8.8.8/', 'https://[2606:4700::1111]/', 'https://public.example/x']) {
      expect(() => g.screen(url), url).not.toThrow();
    }
    for (const url of [
      'http://[::1]/',
      'http://127.1/',
      'ftp://public.example/',
      'https://u:p@public.example/',
    ]) {
      expect(() => g.screen(url), url).toThrow(EgressBlockedError);
    }
    // Host names are left to the dispatcher, which resolves and vets them.
    expect(lookup).not.toHaveBeenCalled();
  });

  it('refuses non-http schemes, credentials and non-URLs', async () => {
    const g = guard([], fakeLookup({ 'public.example': ['93.184.215.14'] }));
    await expect(g.check('https://public.example/')).resolves.toBeUndefined();
    for (const url of [
      'ftp://public.example/',
      'file:///etc/passwd',
      'gopher://public.example/',
      'ws://public.example/',
    ]) {
      await expect(g.check(url), url).rejects.toThrow(/scheme/);
    }
    await expect(g.check('https://user:pass@public.example/')).rejects.toThrow(/credentials/);
    await expect(g.check('https://token@public.example/')).rejects.toThrow(/credentials/);
    await expect(g.check('not a url')).rejects.toBeInstanceOf(EgressBlockedError);
  });

  it('reports a DNS failure as EgressLookupError, not as blocked', async () => {
    const g = guard([], fakeLookup({ 'empty.example': [] }));
    const err = await g.check('https://nowhere.example/').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EgressLookupError);
    expect(err).not.toBeInstanceOf(EgressBlockedError);
    expect((err as Error).message).toBe('could not resolve nowhere.example: ENOTFOUND');
    await expect(g.check('https://empty.example/')).rejects.toBeInstanceOf(EgressLookupError);
  });
});

describe('dispatcher', () => {
  it('refuses to connect to a loopback literal even when check was skipped', async () => {
    const server = await listen();
    const g = guard([]);
    for (const url of [`http://127.0.0.1:${server.port}/`, `http://[::ffff:127.0.0.1]:${server.port}/`]) {
      await expect(request(url, { dispatcher: g.dispatcher }), url).rejects.toBeInstanceOf(
        EgressBlockedError,
      );
    }
    await expect(
      request(`http://localhost:${server.port}/`, { dispatcher: g.dispatcher }),
    ).rejects.toBeInstanceOf(EgressBlockedError);
    expect(server.connections()).toBe(0);
  });

  it('connects a host name to its vetted address, and refuses it if any address is blocked', async () => {
    const server = await listen();
    const lookup = fakeLookup({ 'hooks.example': ['127.0.0.1'], 'mixed.example': ['127.0.0.1', '10.0.0.1'] });
    const g = guard(['127.0.0.1/32'], lookup);
    const res = await request(`http://hooks.example:${server.port}/`, { dispatcher: g.dispatcher });
    expect(await res.body.text()).toBe('ok');
    expect(lookup).toHaveBeenCalledWith('hooks.example', { all: true });
    const err = await request(`http://mixed.example:${server.port}/`, { dispatcher: g.dispatcher }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(EgressBlockedError);
    expect((err as EgressBlockedError).address).toBe('10.0.0.1');
    expect(server.connections()).toBe(1);
  });

  it("keeps two host names' connections apart, though they resolve to one address", async () => {
    const sockets = { 'a.example': new Set<number>(), 'b.example': new Set<number>() };
    const server = createServer((req, res) => {
      const host = (req.headers.host ?? '').split(':')[0] as keyof typeof sockets;
      sockets[host].add(req.socket.remotePort as number);
      res.end('ok');
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    const g = guard(['127.0.0.1/32'], fakeLookup({ 'a.example': ['127.0.0.1'], 'b.example': ['127.0.0.1'] }));
    for (const host of ['a.example', 'b.example', 'a.example', 'b.example']) {
      await (await request(`http://${host}:${port}/`, { dispatcher: g.dispatcher })).body.text();
    }
    // One tenant's requests never travel on a connection opened for another's host name.
    expect([...sockets['a.example']].some((p) => sockets['b.example'].has(p))).toBe(false);
  });
});
