// The egress guard: outbound HTTP from connectors may reach only public addresses (or ones in the
// self-hoster's CIDR allowlist), checked when a destination is saved and again on every connect.
// A host name's addresses are kept for DNS_CACHE_TTL_MS, so a new connection to a known host costs
// no lookup (a reused one never did); they are vetted again at every connect all the same.
import { promises as dns, type LookupAddress } from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';
import ipaddr from 'ipaddr.js';
import type { Logger } from 'pino';
import { Agent, buildConnector, type Dispatcher } from 'undici';

/** How long the addresses a host name resolved to are used before it is resolved again. */
export const DNS_CACHE_TTL_MS = 10_000;
/** Host names whose addresses are kept at most (past that, the cache starts again). */
const DNS_CACHE_HOSTS = 10_000;

/**
 * The URL or one of the addresses its host resolves to is not allowed. Not retryable. Its message
 * is shown to the tenant (a delivery attempt's error, a 400): it never holds an address that a
 * host name resolved to, which would let a tenant map the internal network; `address` and
 * `detail` have it, for operators' logs.
 */
export class EgressBlockedError extends Error {
  override name = 'EgressBlockedError';
  readonly code = 'egress_blocked';
  constructor(
    /** Short and human: `loopback address 127.0.0.1` (an address the URL holds), `hooks.internal resolves to a non-public address`. */
    readonly reason: string,
    /** The address refused, if any. */
    readonly address?: string | undefined,
    /** For operators: why, with the address (`hooks.internal resolves to private address 10.1.2.3`). */
    readonly detail: string = reason,
  ) {
    super(`egress blocked: ${reason}`);
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
   * Parses the URL (http/https only, no userinfo), resolves its host afresh (every A and AAAA
   * record) and throws EgressBlockedError unless every address is allowed, EgressLookupError if it
   * does not resolve. Used when a destination is saved.
   */
  check(url: string): Promise<void>;
  /**
   * What can be told of the URL without DNS, at send time: http or https, no userinfo, and an IP
   * literal host allowed; throws EgressBlockedError otherwise. A host name is resolved and vetted
   * by `dispatcher` when it opens a connection. The verdict is kept per URL.
   */
  screen(url: string): void;
  /**
   * An undici Agent whose sockets connect only to vetted addresses: IP literals are checked before
   * connecting, and host names go through a lookup that refuses the name if any of its addresses
   * is blocked and hands the vetted addresses to the socket. The lookup's answers are kept for
   * DNS_CACHE_TTL_MS and vetted again at every use.
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

/**
 * `lookup`, its answers kept per host name for `ttlMs` (lookups of a name under way are shared).
 * Only answers are kept, never verdicts: the caller vets them at every use. Failures are not kept.
 */
function cachedLookup(lookup: LookupAll, ttlMs: number): LookupAll {
  const kept = new Map<string, { until: number; answer: Promise<LookupAddress[]> }>();
  return (host, options) => {
    const now = Date.now();
    const hit = kept.get(host);
    if (hit && hit.until > now) return hit.answer;
    if (kept.size >= DNS_CACHE_HOSTS) kept.clear();
    const answer = lookup(host, options);
    kept.set(host, { until: now + ttlMs, answer });
    answer.catch(() => {
      if (kept.get(host)?.answer === answer) kept.delete(host);
    });
    return answer;
  };
}

/** The host of an http or https URL without userinfo (IPv6 literals without brackets). */
function hostOfUrl(url: string): string {
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
  return parsed.hostname.replace(/^\[(.*)\]$/, '$1');
}

export function createEgressGuard(options: {
  allow: readonly string[];
  lookup?: LookupAll;
  /** Where refusals of host names are logged with the address (the tenant's error omits it). */
  logger?: Pick<Logger, 'warn'> | undefined;
  /** How long a host name's addresses are kept (DNS_CACHE_TTL_MS unless given). */
  dnsCacheTtlMs?: number;
}): EgressGuard {
  const allow = parseAllow(options.allow);
  const lookupAll: LookupAll = options.lookup ?? ((host, opts) => dns.lookup(host, opts));

  const reasonOf = (address: string) =>
    ipaddr.isValid(address)
      ? reasonFor(ipaddr.parse(address), allow, address)
      : `invalid IP address ${address}`;

  /**
   * Throws unless `address` is allowed. `resolvedFrom`: the host name it was resolved from; the
   * error then names the host, not the address (logged for operators instead).
   */
  const vetAddress = (address: string, resolvedFrom?: string) => {
    const reason = reasonOf(address);
    if (!reason) return;
    if (resolvedFrom === undefined) throw new EgressBlockedError(reason, address);
    const detail = `${resolvedFrom} resolves to ${reason}`;
    options.logger?.warn({ host: resolvedFrom, address, reason }, `egress blocked: ${detail}`);
    throw new EgressBlockedError(`${resolvedFrom} resolves to a non-public address`, address, detail);
  };

  const lookupKept = cachedLookup(lookupAll, options.dnsCacheTtlMs ?? DNS_CACHE_TTL_MS);

  /**
   * Every address of the host, each vetted; throws unless all are allowed. `fresh`: asks DNS now
   * (a destination being saved) rather than taking an answer kept from a lookup of the last
   * DNS_CACHE_TTL_MS (a connection being opened).
   */
  const resolve = async (host: string, fresh = false): Promise<LookupAddress[]> => {
    let addresses: LookupAddress[];
    try {
      addresses = await (fresh ? lookupAll : lookupKept)(host, { all: true });
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

  // Connections are pooled per origin, the host name as the URL has it (not per address: a pool
  // per address would share connections between the host names of different tenants).
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

  // URLs that passed `screen`: their verdict needs no DNS and cannot change (nor can the allowlist).
  const screened = new Set<string>();
  const SCREENED_KEPT = 10_000;

  return {
    dispatcher,
    screen(url) {
      if (screened.has(url)) return;
      const host = hostOfUrl(url);
      if (isIP(host)) vetAddress(host);
      if (screened.size >= SCREENED_KEPT) screened.clear();
      screened.add(url);
    },
    async check(url) {
      const host = hostOfUrl(url);
      if (isIP(host)) vetAddress(host);
      else await resolve(host, true);
    },
    close: () => dispatcher.close(),
  };
}
