// Resource ids: a type prefix and a UUIDv7 (time-ordered, so ids sort by creation and serve as
// pagination cursors), e.g. usr_01934f5c7d8e7a3b9c1d2e3f4a5b6c7d. Event ids are bare UUIDv7s.
import { randomFillSync } from 'node:crypto';

export const ID_PREFIX = {
  organization: 'org',
  apiClient: 'cli',
  user: 'usr',
  signingKey: 'sk',
  installation: 'ins',
  inboundRequest: 'req',
  delivery: 'dlv',
  deliveryAttempt: 'att',
} as const;

export type IdKind = keyof typeof ID_PREFIX;

export function newId(kind: IdKind): string {
  return `${ID_PREFIX[kind]}_${uuidHex()}`;
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));
// Random bytes are drawn 4 KiB at a time: one call into the crypto library per 256 ids, not one
// per id (a webhook takes several ids; per-id calls were 3 % of the inbound path's CPU).
const pool = Buffer.alloc(4096);
let poolAt = pool.length;
let lastMs = -1;
let counter = 0;

/**
 * A UUIDv7 (RFC 9562) as 32 hex digits: 48 bits of Unix milliseconds, then a 12-bit counter
 * (`rand_a`, RFC 9562 §6.2 method 1) started at a random value below 2048 each millisecond, so
 * ids made in one process keep increasing within a millisecond; then 62 random bits.
 */
function uuidHex(): string {
  if (poolAt + 10 > pool.length) {
    randomFillSync(pool);
    poolAt = 0;
  }
  const r = pool;
  const at = poolAt;
  poolAt += 10;
  let ms = Date.now();
  if (ms > lastMs) {
    lastMs = ms;
    counter = (((r[at] as number) & 0x07) << 8) | (r[at + 1] as number);
  } else if (++counter > 0xfff) {
    // 4,096 ids in one millisecond: borrow the next one, as the RFC allows.
    lastMs += 1;
    counter = 0;
  }
  ms = lastMs;
  let out = '';
  for (let shift = 40; shift >= 0; shift -= 8) out += HEX[Math.floor(ms / 2 ** shift) % 256];
  out += HEX[0x70 | (counter >> 8)];
  out += HEX[counter & 0xff];
  out += HEX[0x80 | ((r[at + 2] as number) & 0x3f)];
  for (let i = at + 3; i < at + 10; i++) out += HEX[r[i] as number];
  return out;
}

/** A bare UUIDv7 in its usual 8-4-4-4-12 form (event ids). */
export function uuidv7(): string {
  const h = uuidHex();
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** True when `id` has the shape of an id of this kind; anything else can be answered 404 without a query. */
export function isId(kind: IdKind, id: string): boolean {
  return new RegExp(`^${ID_PREFIX[kind]}_[0-9a-f]{32}$`).test(id);
}
