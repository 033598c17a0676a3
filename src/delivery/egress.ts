// The egress guard: outbound HTTP from connectors may reach only public addresses (or ones in the
// self-hoster's CIDR allowlist), checked when a destination is saved and again on every connect.
import { promises as dns, type LookupAddress } from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';
import ipaddr from 'ipaddr.js';
import { Agent, buildConnector, type Dispatcher } from 'undici';

/** The URL or one of the addresses its host resolves to is not allowed. Not retryable. */
export class EgressBlockedError extends Error {
  override name = 'EgressBlockedError';
  readonly code = 'egress_blocked';
  constructor(
    /** Short and human: `loopback address 127.0.0.1`. */
    readonly reason: string,
    readonly address?: string | undefined,
    host?: string | undefined,
  ) {
    super(`egress blocked: ${host && host !== address ? `${host} resolves to ` : ''}${reason}`);
  }
}

/**
 * The host name did not resolve (or resolved to nothing). A network error, retryable at send
 * time; when a destination is created the caller decides whether an unresolvable host is bad input.
 */
export class EgressLookupError extends Error {
  override name = 'EgressLookupError';
  readonly code = 'egress_lookup_failed';
  constructor(
    readonly host: string,
    cause?: unknown,
  ) {
    const why = (cause as NodeJS.ErrnoException | undefined)?.code ?? 'no addresses';
    super(`could not resolve ${host}: ${why}`, { cause });
  }
}

/** `dns.promises.lookup` with `{ all: true }`; injectable for tests. */
export type LookupAll = (hostname: string, options: { all: true }) => Promise<LookupAddress[]>;

export interface EgressGuard {
  /**
   * Parses the URL (http/https only, no userinfo), resolves its host (every A and AAAA record) and
   * throws EgressBlockedError unless every address is allowed, EgressLookupError if it does not
   * resolve. Used when a destination is created and again at send time (DNS may change).
   */
  check(url: string): Promise<void>;
  /**
   * True when `check(url)` is known to pass without a DNS lookup: its host is an IP literal that
   * an earlier check allowed (the allowlist does not change). Saves the check per request to the
   * same endpoint; a host name is always checked again.
   */
  vetted(url: string): boolean;
  /**
   * An undici Agent whose sockets connect only to vetted addresses: IP literals are checked before
   * connecting, and host names go through a lookup that resolves every address, refuses if any is
   * blocked and hands the vetted addresses to the socket (no second lookup).
   */
  readonly dispatcher: Dispatcher;
  close(): Promise<void>;
}

type Cidr = [ipaddr.IPv4 | ipaddr.IPv6, number];

const V4_BLOCKED: ReadonlyArray<readonly [string, string]> = [
  ['0.0.0.0/8', 'unspecified'],
  ['10.0.0.0/8', 'private'],
  ['100.64.0.0/10', 'carrier-grade NAT'],
  ['127.0.0.0/8', 'loopback'],
  ['169.254.169.254/32', 'cloud metadata'],
  ['169.254.0.0/16', 'link-local'],
  ['172.16.0.0/12', 'private'],
  ['192.0.0.0/24', 'IETF protocol assignment'],
  ['192.0.2.0/24', 'documentation'],
  ['192.88.99.0/24', '6to4 relay anycast'],
  ['192.168.0.0/16', 'private'],
  ['198.18.0.0/15', 'benchmarking'],
  ['198.51.100.0/24', 'documentation'],
  ['203.0.113.0/24', 'documentation'],
  ['224.0.0.0/4', 'multicast'],
  ['255.255.255.255/32', 'broadcast'],
  ['240.0.0.0/4', 'reserved (class E)'],
];

const V6_BLOCKED: ReadonlyArray<readonly [string, string]> = [
  ['::/128', 'unspecified'],
  ['::1/128', 'loopback'],
  ['fe80::/10', 'link-local'],
  ['fec0::/10', 'site-local'],
  ['fc00::/7', 'unique-local'],
  ['ff00::/8', 'multicast'],
  ['2001:db8::/32', 'documentation'],
  ['3fff::/20', 'documentation'],
  ['100::/64', 'discard-only'],
  ['2001:2::/48', 'benchmarking'],
  ['64:ff9b:1::/48', 'local-use NAT64'],
];

const table = (rows: ReadonlyArray<readonly [string, string]>) =>
  rows.map(([cidr, label]) => [ipaddr.parseCIDR(cidr), label] as const);
const V4_TABLE = table(V4_BLOCKED);
const V6_TABLE = table(V6_BLOCKED);
const GLOBAL_UNICAST_V6 = ipaddr.parseCIDR('2000::/3');

function inCidr(addr: ipaddr.IPv4 | ipaddr.IPv6, [net, bits]: Cidr): boolean {
  if (addr.kind() !== net.kind()) return false;
  // kinds are equal, so the overload pair matches; ipaddr's types cannot express that
  return (addr as ipaddr.IPv4).match(net as ipaddr.IPv4, bits);
}

function parseAllow(allow: readonly string[]): Cidr[] {
  return allow.map((cidr) => ipaddr.parseCIDR(cidr.trim()));
}

const v4At = (bytes: number[], at: number, xor = 0) =>
  new ipaddr.IPv4(bytes.slice(at, at + 4).map((b) => b ^ xor));

/** The IPv4 addresses an IPv6 address carries, and the name of the form, if it is one of those. */
function embeddedV4(v6: ipaddr.IPv6): { form: string; v4: ipaddr.IPv4[] } | undefined {
  const b = v6.toByteArray();
  const p = v6.parts;
  const zero = (from: number, to: number) => p.slice(from, to).every((x) => x === 0);
  if (zero(0, 5) && p[5] === 0xffff) return { form: 'IPv4-mapped', v4: [v4At(b, 12)] };
  if (zero(0, 4) && p[4] === 0xffff && p[5] === 0) return { form: 'IPv4-translated', v4: [v4At(b, 12)] };
  if (zero(0, 6) && (p[6] !== 0 || (p[7] ?? 0) > 1)) return { form: 'IPv4-compatible', v4: [v4At(b, 12)] };
  if (p[0] === 0x64 && p[1] === 0xff9b && zero(2, 6)) return { form: 'NAT64', v4: [v4At(b, 12)] };
  if (p[0] === 0x2002) return { form: '6to4', v4: [v4At(b, 2)] };
  // Teredo: server address in bits 32-63, client address obfuscated (inverted) in the last 32
  if (p[0] === 0x2001 && p[1] === 0) return { form: 'Teredo', v4: [v4At(b, 4), v4At(b, 12, 0xff)] };
  return undefined;
}

function reasonFor(
  addr: ipaddr.IPv4 | ipaddr.IPv6,
  allow: readonly Cidr[],
  text: string,
): string | undefined {
  if (allow.some((cidr) => inCidr(addr, cidr))) return undefined;
  if (addr.kind() === 'ipv6') {
    const embedded = embeddedV4(addr as ipaddr.IPv6);
    if (embedded) {
      for (const v4 of embedded.v4) {
        const reason = reasonFor(v4, allow, v4.toString());
        if (reason) return `${reason} (${embedded.form} form ${text})`;
      }
      return undefined;
    }
  }
  const rows = addr.kind() === 'ipv4' ? V4_TABLE : V6_TABLE;
  const hit = rows.find(([cidr]) => inCidr(addr, cidr));
  if (hit) return `${hit[1]} address ${text}`;
  // Whatever else ipaddr.js knows as special (AS112, AMT, ORCHIDv2, ...) is no webhook receiver.
  const range = addr.range();
  if (range !== 'unicast') return `special-purpose (${range}) address ${text}`;
  if (addr.kind() === 'ipv6' && !inCidr(addr, GLOBAL_UNICAST_V6)) return `unassigned IPv6 address ${text}`;
  return undefined;
}

/** Pure: why this IP (v4 or v6 string) is refused, or undefined when it is allowed. */
export function blockedReason(address: string, allow: readonly string[]): string | undefined {
  const bare = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
  if (!ipaddr.isValid(bare)) return `invalid IP address ${address}`;
  return reasonFor(ipaddr.parse(bare), parseAllow(allow), bare);
}

export function createEgressGuard(options: { allow: readonly string[]; lookup?: LookupAll }): EgressGuard {
  const allow = parseAllow(options.allow);
  const lookupAll: LookupAll = options.lookup ?? ((host, opts) => dns.lookup(host, opts));

  const vetAddress = (address: string, host?: string) => {
    const reason = ipaddr.isValid(address)
      ? reasonFor(ipaddr.parse(address), allow, address)
      : `invalid IP address ${address}`;
    if (reason) throw new EgressBlockedError(reason, address, host);
  };

  /** Every address of the host, each vetted; throws unless all are allowed. */
  const resolve = async (host: string): Promise<LookupAddress[]> => {
    let addresses: LookupAddress[];
    try {
      addresses = await lookupAll(host, { all: true });
    } catch (err) {
      throw new EgressLookupError(host, err);
    }
    if (addresses.length === 0) throw new EgressLookupError(host);
    for (const { address } of addresses) vetAddress(address, host);
    return addresses;
  };

  const lookup: LookupFunction = (host, opts, callback) => {
    resolve(host).then(
      (all) => {
        const fit =
          opts.family === 4 || opts.family === 6 ? all.filter((a) => a.family === opts.family) : all;
        const first = fit[0];
        if (!first) return callback(new EgressLookupError(host), '', 0);
        if (opts.all) return callback(null, fit);
        callback(null, first.address, first.family);
      },
      (err: Error) => callback(err, '', 0),
    );
  };

  const base = buildConnector({ lookup });
  const dispatcher = new Agent({
    connect(opts, callback) {
      // Node's net.connect skips `lookup` for IP literals, so those are vetted here.
      const host = opts.hostname.replace(/^\[(.*)\]$/, '$1');
      if (isIP(host)) {
        try {
          vetAddress(host);
        } catch (err) {
          return callback(err as Error, null);
        }
      }
      base(opts, callback);
    },
  });

  // URLs with an IP-literal host that passed `check`: their verdict needs no DNS and cannot change.
  const literalAllowed = new Set<string>();
  const LITERALS_KEPT = 10_000;

  return {
    dispatcher,
    vetted: (url) => literalAllowed.has(url),
    async check(url) {
      let parsed: URL;
      try {
        parsed = new URL(url);
      } catch {
        throw new EgressBlockedError('not a valid URL');
      }
      if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')
        throw new EgressBlockedError(`scheme ${parsed.protocol} is not allowed (http or https only)`);
      if (parsed.username || parsed.password)
        throw new EgressBlockedError('credentials in the URL are not allowed');
      const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
      if (isIP(host)) {
        vetAddress(host);
        if (literalAllowed.size >= LITERALS_KEPT) literalAllowed.clear();
        literalAllowed.add(url);
        return;
      }
      await resolve(host);
    },
    close: () => dispatcher.close(),
  };
}
