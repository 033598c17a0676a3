// Bad input, property-based: fast-check throws random and mutated requests at /hooks/*,
// /oauth/token and every /v1 route that /openapi.json lists, over a real socket. Properties: only
// 2xx and 4xx come back; every 4xx is the JSON error shape with a stable code (RFC 6749's shape on
// the token endpoint); every status, and every error code, is one the operation declares in
// /openapi.json; the process stays up (a body trickled byte by byte is cut off with 408);
// and a rejected request changes nothing in the database, but for the one documented trace: a
// webhook that passed its signature check and still cannot be used is kept in inbound_requests
// with status `rejected` (for debugging). Last, with the worker running: subscription filters
// built to stall it and a 1 MB event, while /healthz is watched, and the limit on destinations
// per organization.
import { createHash, createHmac } from 'node:crypto';
import { type AddressInfo, connect } from 'node:net';
import { sql } from 'drizzle-orm';
import fc from 'fast-check';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hubspotEvent, hubspotWebhookRequest } from '../../sim/hubspot.ts';
import {
  SHOPIFY_WEBHOOK_TOPICS,
  SIM_SHOP_DOMAIN,
  shopifyPayload,
  signShopifyWebhook,
} from '../../sim/shopify.ts';
import {
  type SimStripeEvent,
  stripeCharge,
  stripeCustomer,
  stripeEvent,
  stripeInvoice,
  stripePaymentIntent,
  stripeRefund,
  stripeRefundEvents,
  stripeWebhookRequest,
} from '../../sim/stripe.ts';
import {
  wooCustomer,
  wooOrder,
  wooPingRequest,
  wooProduct,
  wooWebhookRequest,
} from '../../sim/woocommerce.ts';
import { ERROR_STATUS } from '../../src/errors.ts';
import { startTestApp, type TestApp } from '../helpers/app.ts';
import { startReceiver } from '../helpers/receiver.ts';
import {
  type ApiOperation,
  anyString,
  arbitraryOf,
  loadOpenApi,
  type OpenApiDoc,
  operationOf,
  operations,
} from './openapi.ts';
import { report } from './support.ts';

// Runs per property (each run is a batch of requests), sized for ~2 minutes on a 2-core machine.
/** Shrinking a failure re-sends whole batches: bounded, so a failing run still ends. */
const ASSERT = { interruptAfterTimeLimit: 150_000 };
const RUNS = { hooksSigned: 260, hooksRandom: 80, oauth: 100, v1: 1500 };
const BODY_LIMIT = 1024 * 1024;
const PORTAL = 62_515;
/** Destinations per organization (INTERCHANGE_MAX_DESTINATIONS), low so that the /v1 fuzzing may reach it too. */
const MAX_DESTINATIONS = 20;
const WOO_SITE = 'https://fuzz-shop.example.com';
const SECRETS = {
  shopify: 'shpss_fuzz_0123456789abcdef',
  stripe: 'whsec_fuzz_0123456789abcdef0123',
  woocommerce: 'wc-fuzz-secret-0123456789',
  hubspot: 'hubspot-fuzz-secret-0123456789',
} as const;
type Source = keyof typeof SECRETS;
/** Shopify topics without side effects on the hub's own rows (uninstall, redaction). */
const SHOPIFY_TOPICS = SHOPIFY_WEBHOOK_TOPICS.filter(
  (topic) => !['app/uninstalled', 'customers/redact', 'shop/redact'].includes(topic),
);
const SIGNATURE_HEADERS = [
  'x-shopify-hmac-sha256',
  'shopify-hmac-sha256',
  'stripe-signature',
  'x-wc-webhook-signature',
  'x-hubspot-signature-v3',
  'x-hubspot-request-timestamp',
];
const PROVIDER_HEADERS = [
  ...SIGNATURE_HEADERS,
  'content-type',
  'content-encoding',
  'x-shopify-topic',
  'x-shopify-shop-domain',
  'x-shopify-event-id',
  'x-shopify-webhook-id',
  'x-shopify-triggered-at',
  'shopify-topic',
  'shopify-shop-domain',
  'x-wc-webhook-topic',
  'x-wc-webhook-source',
  'x-wc-webhook-delivery-id',
  'x-wc-webhook-id',
  'x-hubspot-signature',
  'authorization',
  'x-request-id',
];
/** Headers undici sets itself or refuses to send. */
const CLIENT_HEADERS = new Set([
  'connection',
  'keep-alive',
  'upgrade',
  'transfer-encoding',
  'content-length',
  'expect',
  'host',
  'te',
  'trailer',
  'x-fuzz-id',
]);
const RFC6749_ERRORS = new Set([
  'invalid_request',
  'invalid_client',
  'invalid_grant',
  'unauthorized_client',
  'unsupported_grant_type',
  'invalid_scope',
  // 429, once the fuzzing address has used its budget of failed authentications.
  'temporarily_unavailable',
]);
/** Codes only thrown once a webhook's signature held: its request must be kept, as rejected. */
const AFTER_VERIFICATION = new Set(['payload_invalid', 'topic_unknown']);

type Family = 'hooks: signed, mutated' | 'hooks: random' | 'oauth/token' | 'v1';
const FAMILIES: Family[] = ['hooks: signed, mutated', 'hooks: random', 'oauth/token', 'v1'];
type Headers = Record<string, string | string[]>;
interface Raw {
  method: string;
  path: string;
  headers: Headers;
  body?: Buffer | undefined;
}
interface Answer {
  status: number;
  contentType: string;
  text: string;
  json: unknown;
}

let t: TestApp;
let base: string;
let publicUrl: string;
let doc: OpenApiDoc;
/** Every operation of /openapi.json, against which each answer is checked. */
let allOps: ApiOperation[] = [];
let v1ops: ApiOperation[] = [];
/** The organization of the filter bombs scenario, made before the fuzzing trips the auth throttle. */
let bombsOrg: { token: string };
const agent = new Agent({ connections: 16, keepAliveTimeout: 10_000 });

const hookIds = {} as Record<Source, string>;
/** Installation id → connector id, for every installation of the hooks organization. */
const connectorOfInstallation = new Map<string, string>();
const fuzz = {
  token: '',
  readOnlyToken: '',
  adminToken: '',
  clientId: '',
  clientSecret: '',
  /** Ids of objects /v1 requests aim at (never the fuzzing clients themselves). */
  ids: [] as string[],
  /** Those ids and strings the API knows: connector names, config keys, event types, scopes. */
  dictionary: [] as string[],
};

const figures = {
  sent: new Map<Family, number>(),
  statuses: new Map<Family, Map<number, number>>(),
  refusedByClient: 0,
  fiveXX: 0,
  dbComparisons: 0,
  dbSkippedAfterWrite: 0,
  hooksAccepted: 0,
  hooksDuplicate: 0,
  hooksIgnored: 0,
  keptRejected: 0,
  refusedBeforeVerification: 0,
  livenessChecks: 0,
  longestHealthzGapMs: 0,
  /** operationId → the statuses it answered (each checked against its declared responses). */
  declared: new Map<string, Set<number>>(),
};
const failures: string[] = [];

// ---------------------------------------------------------------------------------------------
// Sending and judging

function describeRaw(raw: Raw): string {
  const body = raw.body ?? Buffer.alloc(0);
  const shown =
    body.length > 300
      ? `${body.subarray(0, 300).toString('latin1')}… (${body.length} bytes)`
      : body.toString('latin1');
  const sha = createHash('sha256').update(body).digest('hex').slice(0, 16);
  const headers = JSON.stringify(raw.headers);
  return `${raw.method} ${raw.path}\n    headers ${headers.length > 600 ? `${headers.slice(0, 600)}…` : headers}\n    body ${JSON.stringify(shown)} sha256:${sha}…`;
}

/**
 * Node's HTTP parser refuses a header section over 16 KiB (--max-http-header-size) before the app
 * sees the request (431 `headers_too_large`, tested in test/http.test.ts): generated requests stay under it.
 */
function fitsHeaderLimit(raw: Raw): boolean {
  let size = raw.method.length + raw.path.length + 16;
  for (const [k, v] of Object.entries(raw.headers))
    for (const value of Array.isArray(v) ? v : [v]) size += k.length + Buffer.byteLength(value, 'latin1') + 4;
  return size < 14_000;
}

/** Makes fast-check print a counterexample as a request, not as a byte array. */
function shown(raw: Raw): Raw {
  return Object.defineProperty(raw, fc.toStringMethod, { value: () => describeRaw(raw), enumerable: false });
}

function setHeader(headers: Headers, name: string, value: string | string[] | undefined): Headers {
  const out: Headers = {};
  for (const [k, v] of Object.entries(headers)) if (k.toLowerCase() !== name.toLowerCase()) out[k] = v;
  if (value !== undefined) out[name] = value;
  return out;
}

function headerOf(headers: Headers, name: string): string | undefined {
  const entry = Object.entries(headers).find(([k]) => k.toLowerCase() === name.toLowerCase());
  const value = entry?.[1];
  return Array.isArray(value) ? value.join(', ') : value;
}

function count(family: Family, status: number): void {
  const byStatus = figures.statuses.get(family) ?? new Map<number, number>();
  byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
  figures.statuses.set(family, byStatus);
  figures.sent.set(family, (figures.sent.get(family) ?? 0) + 1);
  if (status >= 500) figures.fiveXX++;
}

/** Sends over the socket; undefined when undici refuses to send it (e.g. a header it deems invalid). */
async function send(family: Family, raw: Raw): Promise<Answer | undefined> {
  let res: Awaited<ReturnType<typeof request>>;
  try {
    res = await request(`${base}${raw.path}`, {
      method: raw.method as 'GET',
      headers: raw.headers,
      body: raw.body,
      dispatcher: agent,
      headersTimeout: 60_000,
      bodyTimeout: 60_000,
    });
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'UND_ERR_INVALID_ARG' || code === 'UND_ERR_NOT_SUPPORTED') {
      figures.refusedByClient++;
      return undefined;
    }
    throw new Error(`no answer (${code ?? err}) to\n  ${describeRaw(raw)}`);
  }
  const text = await res.body.text();
  count(family, res.statusCode);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: res.statusCode, contentType: String(res.headers['content-type'] ?? ''), text, json };
}

/**
 * What the operation's entry in /openapi.json does not say of an answer: its status, or for an
 * error, the code (each error status's description lists its codes). Client generators rely on it.
 */
function undeclared(raw: Raw, a: Answer, where: string): string[] {
  const op = operationOf(allOps, raw.method, raw.path);
  if (!op) return [];
  const name = op.operationId ?? op.key;
  const codes = op.responses.get(a.status);
  const seen = figures.declared.get(name) ?? new Set<number>();
  figures.declared.set(name, seen.add(a.status));
  if (!codes) return [`${name} answered ${a.status}, a status its responses do not declare:\n${where}`];
  if (a.status < 400) return [];
  const error = (a.json as { error?: unknown } | undefined)?.error;
  const code = typeof error === 'string' ? error : (error as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string' && !codes.includes(code))
    return [`${name} answered ${a.status} ${code}, a code its ${a.status} response does not list:\n${where}`];
  return [];
}

/**
 * What is wrong with an answer: its status class, its status and code as the operation declares
 * them, and, for a 4xx, its body's shape.
 */
function judge(raw: Raw, a: Answer): string[] {
  const oauth = raw.method === 'POST' && raw.path.split('?')[0] === '/oauth/token';
  const where = `  ${describeRaw(raw)}\n    → ${a.status} ${a.text.slice(0, 300)}`;
  if (!((a.status >= 200 && a.status < 300) || (a.status >= 400 && a.status < 500)))
    return [`status ${a.status} (only 2xx and 4xx may come back):\n${where}`];
  const problems = undeclared(raw, a, where);
  if (a.status < 400) return problems;
  if (!a.contentType.startsWith('application/json')) problems.push(`4xx not JSON:\n${where}`);
  const body = a.json as { error?: unknown; error_description?: unknown } | undefined;
  if (oauth) {
    if (
      typeof body?.error !== 'string' ||
      !RFC6749_ERRORS.has(body.error) ||
      typeof body.error_description !== 'string'
    ) {
      problems.push(`token endpoint 4xx without RFC 6749 §5.2's shape:\n${where}`);
    }
    return problems;
  }
  const error = body?.error as { code?: unknown; message?: unknown } | undefined;
  const code = typeof error?.code === 'string' ? error.code : undefined;
  if (!code || typeof error?.message !== 'string' || error.message === '') {
    problems.push(`4xx without { error: { code, message } }:\n${where}`);
  } else if (!(code in ERROR_STATUS)) {
    problems.push(`4xx with a code outside src/errors.ts (${code}):\n${where}`);
  } else if (ERROR_STATUS[code as keyof typeof ERROR_STATUS] !== a.status) {
    problems.push(`code ${code} with status ${a.status}, not its own:\n${where}`);
  }
  return problems;
}

async function alive(): Promise<string[]> {
  figures.livenessChecks++;
  const res = await request(`${base}/healthz`, { dispatcher: agent });
  const body = await res.body.text();
  return res.statusCode === 200 && body.includes('"ok"')
    ? []
    : [`/healthz answered ${res.statusCode} ${body}`];
}

let logOffset = 0;

/** Fails the property with every problem of the run, and the error lines the hub logged meanwhile. */
function fail(problems: string[]): void {
  const logs = t.logs();
  const logged = logs.slice(logOffset);
  logOffset = logs.length;
  if (problems.length === 0) return;
  failures.push(...problems);
  throw new Error(`${problems.join('\n')}\n  hub log:\n${logged.slice(-4000)}`);
}

// ---------------------------------------------------------------------------------------------
// The database: row count and content digest of every table

type Snapshot = Map<string, { rows: number; digest: string }>;
/** Every table (public ones unqualified), from the catalog: a table added later is covered too. */
let tableNames: string[] = [];

async function query<T>(text: string): Promise<T[]> {
  const result = await t.app.store.db.execute(sql.raw(text));
  return (result as unknown as { rows: T[] }).rows;
}

async function snapshot(): Promise<Snapshot> {
  // Every insert, update or delete makes tuple versions with new (xmin, ctid): a digest of them
  // sees any write, even one that leaves the values as they were, without reading the rows' data.
  const parts = tableNames.map(
    (name) =>
      `select '${name}' as t, count(*)::int as n,
              md5(coalesce(string_agg(x.xmin::text || '/' || x.ctid::text, ',' order by x.ctid), '')) as h
         from ${name.includes('.') ? name : `public.${name}`} x`,
  );
  const rows = await query<{ t: string; n: number; h: string }>(parts.join(' union all '));
  return new Map(rows.map((r) => [r.t, { rows: Number(r.n), digest: r.h }]));
}

/** Tables whose rows or contents differ, but for `except`. */
function changed(before: Snapshot, after: Snapshot, except: readonly string[] = []): string[] {
  return tableNames
    .filter((name) => !except.includes(name))
    .filter((name) => {
      const b = before.get(name);
      const a = after.get(name);
      return b?.rows !== a?.rows || b?.digest !== a?.digest;
    })
    .map((name) => `${name} (${before.get(name)?.rows} → ${after.get(name)?.rows} rows)`);
}

const delta = (before: Snapshot, after: Snapshot, name: string) =>
  (after.get(name)?.rows ?? 0) - (before.get(name)?.rows ?? 0);

// ---------------------------------------------------------------------------------------------
// Webhooks: signed originals from the simulators, mutations, and the accounting of their rows

interface Original {
  source: Source;
  raw: Raw;
}

const hmac64 = (secret: string, ...parts: Array<string | Buffer>) => {
  const h = createHmac('sha256', secret);
  for (const p of parts) h.update(p);
  return h.digest('base64');
};

/** Signs the request as its provider would, over its bytes as they are now, at `now`. */
function sign(source: Source, raw: Raw, now = Date.now()): Raw {
  const body = raw.body ?? Buffer.alloc(0);
  let headers = raw.headers;
  switch (source) {
    case 'shopify':
      headers = setHeader(headers, 'X-Shopify-Hmac-Sha256', hmac64(SECRETS.shopify, body));
      break;
    case 'woocommerce':
      headers = setHeader(headers, 'X-WC-Webhook-Signature', hmac64(SECRETS.woocommerce, body));
      break;
    case 'stripe': {
      const ts = Math.floor(now / 1000);
      const v1 = createHmac('sha256', SECRETS.stripe).update(`${ts}.`).update(body).digest('hex');
      headers = setHeader(headers, 'Stripe-Signature', `t=${ts},v1=${v1}`);
      break;
    }
    case 'hubspot': {
      const ts = String(now);
      headers = setHeader(headers, 'X-HubSpot-Request-Timestamp', ts);
      headers = setHeader(
        headers,
        'X-HubSpot-Signature-v3',
        hmac64(SECRETS.hubspot, `${raw.method}${publicUrl}${raw.path}`, body, ts),
      );
      break;
    }
  }
  return { ...raw, headers };
}

const shopifyOriginal: fc.Arbitrary<Original> = fc
  .record({ topic: fc.constantFrom(...SHOPIFY_TOPICS), eventId: fc.uuid(), routed: fc.boolean() })
  .map(({ topic, eventId, routed }) => {
    const signed = signShopifyWebhook({
      topic,
      shopDomain: SIM_SHOP_DOMAIN,
      body: shopifyPayload(topic, SIM_SHOP_DOMAIN),
      secret: SECRETS.shopify,
      eventId,
      webhookId: eventId,
      triggeredAt: '2024-05-03T14:23:00Z',
    });
    const path = `/hooks/${routed ? 'shopify' : hookIds.shopify}`;
    return {
      source: 'shopify' as const,
      raw: { method: 'POST', path, headers: signed.headers, body: Buffer.from(signed.body) },
    };
  });

const STRIPE_EVENTS: Record<string, () => SimStripeEvent> = {
  'customer.created': () => stripeEvent('customer.created', stripeCustomer({ email: 'mary@example.com' })),
  'invoice.paid': () => stripeEvent('invoice.paid', stripeInvoice({ status: 'paid' })),
  'payment_intent.succeeded': () =>
    stripeEvent('payment_intent.succeeded', stripePaymentIntent({ amount: 500, currency: 'eur' })),
  'charge.refunded': () => stripeRefundOf500().chargeRefunded,
  'refund.created': () => stripeRefundOf500().refundCreated,
};

function stripeRefundOf500() {
  return stripeRefundEvents(
    stripeCharge({ amount: 500, amount_refunded: 500 }),
    stripeRefund({ amount: 500 }),
  );
}

const stripeOriginal: fc.Arbitrary<Original> = fc
  .record({
    type: fc.constantFrom(...Object.keys(STRIPE_EVENTS)),
    id: fc.stringMatching(/^[A-Za-z0-9]{24}$/),
  })
  .map(({ type, id }) => {
    const made = STRIPE_EVENTS[type];
    if (!made) throw new Error(`no Stripe event ${type}`);
    const event = { ...made(), id: `evt_${id}` };
    const { body, headers } = stripeWebhookRequest(event, { secret: SECRETS.stripe });
    return {
      source: 'stripe' as const,
      raw: { method: 'POST', path: `/hooks/${hookIds.stripe}`, headers, body: Buffer.from(body) },
    };
  });

const wooOriginal: fc.Arbitrary<Original> = fc
  .record({
    topic: fc.constantFrom(
      'order.created',
      'order.updated',
      'customer.created',
      'customer.updated',
      'product.updated',
    ),
    id: fc.integer({ min: 1, max: 1_000_000 }),
    ping: fc.integer({ min: 0, max: 9 }),
  })
  .map(({ topic, id, ping }) => {
    const path = `/hooks/${hookIds.woocommerce}`;
    if (ping === 0) {
      // WooCommerce's unsigned creation ping: answered 200 without a trace.
      const p = wooPingRequest(id);
      return {
        source: 'woocommerce' as const,
        raw: { method: 'POST', path, headers: p.headers, body: Buffer.from(p.body) },
      };
    }
    const payload = topic.startsWith('order')
      ? wooOrder({ id })
      : topic.startsWith('customer')
        ? wooCustomer({ id })
        : wooProduct({ id });
    const { body, headers } = wooWebhookRequest({
      topic,
      payload,
      secret: SECRETS.woocommerce,
      source: `${WOO_SITE}/`,
      webhookId: 12,
    });
    return {
      source: 'woocommerce' as const,
      raw: { method: 'POST', path, headers, body: Buffer.from(body) },
    };
  });

const hubspotOriginal: fc.Arbitrary<Original> = fc
  .record({
    type: fc.constantFrom('contact.creation', 'contact.deletion', 'contact.propertyChange'),
    eventId: fc.integer({ min: 1, max: 2 ** 31 }),
    routed: fc.boolean(),
  })
  .map(({ type, eventId, routed }) => {
    const path = `/hooks/${routed ? 'hubspot' : hookIds.hubspot}`;
    const extra =
      type === 'contact.propertyChange' ? { propertyName: 'email', propertyValue: 'x@example.com' } : {};
    const events = [hubspotEvent(type, { eventId, portalId: PORTAL, objectId: eventId, ...extra })];
    const { body, headers } = hubspotWebhookRequest({
      url: `${publicUrl}${path}`,
      events,
      secret: SECRETS.hubspot,
    });
    return { source: 'hubspot' as const, raw: { method: 'POST', path, headers, body: Buffer.from(body) } };
  });

const originalArb = fc.oneof(shopifyOriginal, stripeOriginal, wooOriginal, hubspotOriginal);

/** A JSON nesting bomb of about `bytes` bytes: deep arrays, objects, or both. */
function bomb(shape: number, bytes: number): string {
  const shapes = [
    ['[', '0', ']'],
    ['{"a":', '1', '}'],
    ['[{"b":', 'null', '}]'],
  ] as const;
  const [open, inner, close] = shapes[shape % 3] ?? shapes[0];
  const depth = Math.max(1, Math.floor(bytes / (open.length + close.length)));
  return open.repeat(depth) + inner + close.repeat(depth);
}

/** Stands for a bomb inside a JSON value, replaced in its text (JSON.stringify would overflow). */
const BOMB = '\u0000bomb\u0000';

/** JSON text of a value, or `fallback` when it is too deep to serialize (a body that is a bomb already). */
function stringifyOr<T>(value: unknown, fallback: T): string | T {
  try {
    return JSON.stringify(value) ?? 'null';
  } catch {
    return fallback;
  }
}

function jsonWithBomb(value: unknown, bombText: string): string | undefined {
  return stringifyOr(value, undefined)?.replaceAll(JSON.stringify(BOMB), bombText);
}

/** Replaces the value at a path (chosen by fractions) of a JSON value; `undefined` deletes it. */
function setAt(value: unknown, path: number[], replacement: unknown): unknown {
  const [step, ...rest] = path;
  if (step === undefined || value === null || typeof value !== 'object') return replacement;
  if (Array.isArray(value)) {
    if (value.length === 0) return replacement;
    const i = Math.min(value.length - 1, Math.floor(step * value.length));
    const copy = [...value];
    const next = rest.length === 0 ? replacement : setAt(copy[i], rest, replacement);
    if (next === undefined) copy.splice(i, 1);
    else copy[i] = next;
    return copy;
  }
  const keys = Object.keys(value);
  if (keys.length === 0) return replacement;
  const key = keys[Math.min(keys.length - 1, Math.floor(step * keys.length))] as string;
  const copy: Record<string, unknown> = { ...(value as Record<string, unknown>) };
  const next = rest.length === 0 ? replacement : setAt(copy[key], rest, replacement);
  if (next === undefined) delete copy[key];
  else copy[key] = next;
  return copy;
}

/** Percent-encodes the UTF-8 bytes of a string (lone surrogates become U+FFFD, as on the wire). */
function pct(value: string): string {
  let out = '';
  for (const byte of Buffer.from(value, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9\-._~]/.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

const headerName = fc.oneof(
  fc.constantFrom(...PROVIDER_HEADERS),
  fc.stringMatching(/^[a-z0-9!#$%&'*+.^_`|~-]{1,30}$/).filter((n) => !CLIENT_HEADERS.has(n)),
);
/** Header values undici sends: tab, visible ASCII and bytes 0x80–0xff (latin1). */
const headerValue = fc.oneof(
  fc.string({ maxLength: 60 }),
  fc.string({
    unit: fc
      .integer({ min: 0x20, max: 0xff })
      .filter((c) => c !== 0x7f)
      .map((c) => String.fromCharCode(c)),
    maxLength: 60,
  }),
  fc.constantFrom(
    '',
    ' ',
    'orders/create',
    'customers/update',
    'order.created',
    SIM_SHOP_DOMAIN,
    'x'.repeat(8000),
  ),
);
const contentType = fc.oneof(
  fc.constantFrom(
    'application/json',
    'application/json; charset=utf-8',
    'application/json; charset=utf-16le',
    'APPLICATION/JSON',
    'text/plain',
    'text/html; charset=latin1',
    'application/x-www-form-urlencoded',
    'multipart/form-data; boundary=----x',
    'application/octet-stream',
    '*/*',
    'application/',
    ';;;',
    `application/json; ${'p=x; '.repeat(1000)}`,
    `application/${'x'.repeat(7000)}`,
  ),
  headerValue,
);
/** Byte sequences that are not UTF-8: stray continuation, overlong, surrogate, truncated, 0xff; and NUL. */
const invalidUtf8: fc.Arbitrary<number[]> = fc.constantFrom<number[]>(
  [0x80],
  [0xc0, 0xaf],
  [0xed, 0xa0, 0x80],
  [0xf4, 0x90, 0x80, 0x80],
  [0xe2, 0x82],
  [0xff, 0xfe],
  [0x00],
);

type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'append'; bytes: Uint8Array }
  | { kind: 'invalidUtf8'; at: number; bytes: number[] }
  | { kind: 'body'; bytes: Uint8Array }
  | { kind: 'json'; value: unknown }
  | { kind: 'field'; path: number[]; value: unknown }
  | { kind: 'leaf'; at: number; value: unknown }
  | { kind: 'bomb'; shape: number; bytes: number; path: number[] | null }
  | { kind: 'oversize' }
  | { kind: 'setHeader'; name: string; value: string }
  | { kind: 'dropHeader'; at: number }
  | { kind: 'duplicateHeader'; at: number }
  | { kind: 'contentType'; value: string }
  | { kind: 'swapSignature' }
  | { kind: 'staleSignature'; seconds: number }
  | { kind: 'query'; query: string }
  | { kind: 'method'; method: string }
  | { kind: 'target'; target: string };

const fraction = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true });
const jsonAnything = fc.jsonValue({ maxDepth: 4, stringUnit: 'binary' });
const targetArb = fc.oneof(
  fc.constantFrom('shopify', 'stripe', 'woocommerce', 'hubspot', 'webhook', 'mixpanel', 'ins_', '.', '..'),
  fc.stringMatching(/^ins_[0-9a-f]{32}$/),
  anyString(),
  fc.constant('x'.repeat(101)),
);

/** Values a provider's payload field should never hold. */
const oddValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom('\u0000', 'a\u0000b', '\ud800', 'x\udfff', '', ' ', '\u202e', 'é', '1e999', '-1'),
  fc.constantFrom(null, 0, -1, 1.5, 1e308, -0, 2 ** 64, true, [], {}, [null], { '': null }),
  anyString(),
  fc.constant('z'.repeat(70_000)),
);

const commonMutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fraction, bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fraction }),
  fc.record({ kind: fc.constant('append' as const), bytes: fc.uint8Array({ maxLength: 64 }) }),
  fc.record({ kind: fc.constant('invalidUtf8' as const), at: fraction, bytes: invalidUtf8 }),
  fc.record({ kind: fc.constant('body' as const), bytes: fc.uint8Array({ maxLength: 256 }) }),
  fc.record({ kind: fc.constant('json' as const), value: jsonAnything }),
  fc.record({
    kind: fc.constant('field' as const),
    path: fc.array(fraction, { minLength: 1, maxLength: 5 }),
    value: fc.oneof(
      jsonAnything,
      fc.constant(undefined),
      fc.constantFrom(null, '', 0, -1, 1e308, 1.5, '１２', [], {}, '\u0000', '9'.repeat(400)),
    ),
  }),
  fc.record({ kind: fc.constant('leaf' as const), at: fraction, value: oddValue }),
  fc.record({
    kind: fc.constant('bomb' as const),
    shape: fc.integer({ min: 0, max: 2 }),
    bytes: fc.constantFrom(200, 20_000, 200_000, 900_000),
    path: fc.option(fc.array(fraction, { minLength: 1, maxLength: 4 }), { nil: null }),
  }),
  fc.record({ kind: fc.constant('setHeader' as const), name: headerName, value: headerValue }),
  fc.record({ kind: fc.constant('dropHeader' as const), at: fraction }),
  fc.record({ kind: fc.constant('duplicateHeader' as const), at: fraction }),
  fc.record({ kind: fc.constant('contentType' as const), value: contentType }),
  fc.record({ kind: fc.constant('swapSignature' as const) }),
  fc.record({
    kind: fc.constant('staleSignature' as const),
    seconds: fc.constantFrom(301, 3600, -400, 1e9),
  }),
  fc.record({
    kind: fc.constant('query' as const),
    query: fc.oneof(
      anyString(30).map(pct),
      fc.constantFrom('a=1', '%', '%ZZ', 'x=%E0%A4%A', '&&=&', 'shop=x.myshopify.com'),
    ),
  }),
  fc.record({
    kind: fc.constant('method' as const),
    method: fc.constantFrom('GET', 'PUT', 'PATCH', 'DELETE'),
  }),
  fc.record({ kind: fc.constant('target' as const), target: targetArb }),
);

/** A body over the limit costs a megabyte a request: now and then. */
const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  { arbitrary: commonMutationArb, weight: 40 },
  { arbitrary: fc.record({ kind: fc.constant('oversize' as const) }), weight: 1 },
);

function mutate(raw: Raw, m: Mutation, other: Raw): Raw {
  const body = raw.body ?? Buffer.alloc(0);
  const at = (f: number) => Math.floor(f * body.length);
  switch (m.kind) {
    case 'flip': {
      if (body.length === 0) return raw;
      const copy = Buffer.from(body);
      copy[at(m.at)] = (copy[at(m.at)] as number) ^ (1 << m.bit);
      return { ...raw, body: copy };
    }
    case 'truncate':
      return { ...raw, body: body.subarray(0, at(m.at)) };
    case 'append':
      return { ...raw, body: Buffer.concat([body, m.bytes]) };
    case 'invalidUtf8': {
      // Inside a JSON string where there is one, so the rest of the body still parses.
      const quote = body.toString('latin1').indexOf('"', at(m.at));
      const i = quote >= 0 ? quote + 1 : at(m.at);
      return {
        ...raw,
        body: Buffer.concat([body.subarray(0, i), Buffer.from(m.bytes), body.subarray(i)]),
      };
    }
    case 'body':
      return { ...raw, body: Buffer.from(m.bytes) };
    case 'json':
      return { ...raw, body: Buffer.from(JSON.stringify(m.value) ?? 'null') };
    case 'field':
    case 'bomb': {
      const bombText = m.kind === 'bomb' ? bomb(m.shape, m.bytes) : '';
      if (m.kind === 'bomb' && m.path === null) return { ...raw, body: Buffer.from(bombText) };
      let parsed: unknown;
      try {
        parsed = JSON.parse(body.toString('utf8'));
      } catch {
        return raw;
      }
      const path = m.kind === 'bomb' ? (m.path ?? []) : m.path;
      const text = jsonWithBomb(setAt(parsed, path, m.kind === 'bomb' ? BOMB : m.value), bombText);
      return text === undefined ? raw : { ...raw, body: Buffer.from(text) };
    }
    case 'leaf': {
      // A leaf (string, number, boolean, null) of the payload, chosen among all of them.
      let parsed: unknown;
      try {
        parsed = JSON.parse(body.toString('utf8'));
      } catch {
        return raw;
      }
      const leaves: string[][] = [];
      const stack: Array<[unknown, string[]]> = [[parsed, []]];
      for (let item = stack.pop(); item; item = stack.pop()) {
        const [v, path] = item;
        if (v === null || typeof v !== 'object') leaves.push(path);
        else if (path.length < 32)
          for (const [k, child] of Object.entries(v)) stack.push([child, [...path, k]]);
      }
      const path = leaves[Math.floor(m.at * leaves.length)];
      if (!path || path.length === 0) return raw;
      let parent = parsed as Record<string, unknown>;
      for (const key of path.slice(0, -1)) parent = parent[key] as Record<string, unknown>;
      parent[path.at(-1) as string] = m.value;
      return { ...raw, body: Buffer.from(stringifyOr(parsed, body.toString('utf8'))) };
    }
    case 'oversize':
      return { ...raw, body: Buffer.concat([body, Buffer.alloc(BODY_LIMIT + 1, 0x20)]) };
    case 'setHeader':
      return { ...raw, headers: setHeader(raw.headers, m.name, m.value) };
    case 'dropHeader': {
      const names = Object.keys(raw.headers);
      const name = names[Math.floor(m.at * names.length)];
      return name ? { ...raw, headers: setHeader(raw.headers, name, undefined) } : raw;
    }
    case 'duplicateHeader': {
      const names = Object.keys(raw.headers);
      const name = names[Math.floor(m.at * names.length)];
      const value = name ? headerOf(raw.headers, name) : undefined;
      return name && value !== undefined
        ? { ...raw, headers: setHeader(raw.headers, name, [value, value]) }
        : raw;
    }
    case 'contentType':
      return { ...raw, headers: setHeader(raw.headers, 'content-type', m.value) };
    case 'swapSignature': {
      let headers = raw.headers;
      for (const name of SIGNATURE_HEADERS) headers = setHeader(headers, name, undefined);
      for (const name of SIGNATURE_HEADERS) {
        const value = headerOf(other.headers, name);
        if (value !== undefined) headers = setHeader(headers, name, value);
      }
      return { ...raw, headers };
    }
    case 'staleSignature':
      return raw; // applied when the request is signed: a signature made `seconds` ago
    case 'query':
      return { ...raw, path: `${raw.path.split('?')[0]}?${m.query}` };
    case 'method':
      return { ...raw, method: m.method };
    case 'target': {
      const query = raw.path.split('?')[1];
      return { ...raw, path: `/hooks/${pct(m.target)}${query === undefined ? '' : `?${query}`}` };
    }
  }
}

const signedMutatedArb: fc.Arbitrary<Raw> = fc
  .record({
    original: originalArb,
    other: originalArb,
    mutations: fc.array(mutationArb, { minLength: 1, maxLength: 3 }),
    // Signed again after the mutations: authentic, so it reaches parsing and normalization.
    resign: fc.boolean(),
  })
  .map(({ original, other, mutations, resign }) => {
    let raw = original.raw;
    for (const m of mutations) raw = mutate(raw, m, other.raw);
    const stale = mutations.find((m) => m.kind === 'staleSignature');
    if (resign || stale) raw = sign(original.source, raw, Date.now() - (stale?.seconds ?? 0) * 1000);
    return shown(raw);
  })
  .filter(fitsHeaderLimit);

/** Authentic payloads with odd fields: signed after the change, so they reach normalization and storage. */
const signedOddPayloadArb: fc.Arbitrary<Raw> = fc
  .record({
    original: originalArb,
    leaves: fc.array(fc.record({ at: fraction, value: oddValue }), { minLength: 1, maxLength: 3 }),
  })
  .map(({ original, leaves }) => {
    let raw = original.raw;
    for (const leaf of leaves) raw = mutate(raw, { kind: 'leaf', ...leaf }, raw);
    return shown(sign(original.source, raw));
  });

const randomHookArb = (): fc.Arbitrary<Raw> =>
  fc
    .record({
      target: fc.oneof(targetArb, fc.constantFrom(...connectorOfInstallation.keys())),
      query: fc.option(anyString(20).map(pct), { nil: undefined }),
      headers: fc.dictionary(headerName, headerValue, { maxKeys: 6 }),
      body: fc.oneof(
        fc.uint8Array({ maxLength: 512 }).map((b) => Buffer.from(b)),
        jsonAnything.map((v) => Buffer.from(JSON.stringify(v))),
        fc.constant(undefined),
      ),
      method: fc.oneof(
        { arbitrary: fc.constant('POST'), weight: 9 },
        { arbitrary: fc.constantFrom('GET', 'PUT'), weight: 1 },
      ),
    })
    .map(({ target, query, headers, body, method }) =>
      shown({
        method,
        path: `/hooks/${pct(target)}${query === undefined ? '' : `?${query}`}`,
        headers,
        body,
      }),
    )
    .filter(fitsHeaderLimit);

interface HookRow {
  fid: string;
  status: string;
  error_code: string | null;
  installation_id: string | null;
  connector_id: string | null;
  sha: string | null;
}

/** The connector of the installation a request to this path reaches, when it reaches one. */
function reached(path: string): string | undefined {
  const segment = path.split('?')[0]?.split('/')[2] ?? '';
  let target: string;
  try {
    target = decodeURIComponent(segment);
  } catch {
    return undefined;
  }
  return (
    connectorOfInstallation.get(target) ?? (['shopify', 'hubspot'].includes(target) ? target : undefined)
  );
}

let batchSeq = 0;

/**
 * Sends a batch at once (so requests share group commits) and checks every answer, the process,
 * and what the batch left in the database, request by request (each carries an x-fuzz-id header,
 * which a kept request keeps among its headers).
 */
async function hookBatch(family: Family, batch: Raw[]): Promise<void> {
  const id = `b${++batchSeq}`;
  const tagged = batch.map((raw, i) => ({
    ...raw,
    headers: setHeader(raw.headers, 'x-fuzz-id', `${id}-${i}`),
  }));
  const before = await snapshot();
  const answers = await Promise.all(tagged.map((raw) => send(family, raw)));
  const problems = tagged.flatMap((raw, i) => {
    const a = answers[i];
    return a ? judge(raw, a) : [];
  });
  const after = await snapshot();
  const rows = await query<HookRow>(
    `select r.headers->>'x-fuzz-id' as fid, r.status, r.error_code, r.installation_id, i.connector_id,
            encode(sha256(r.body), 'hex') as sha
       from inbound_requests r left join installations i on i.id = r.installation_id
      where r.headers->>'x-fuzz-id' like '${id}-%'`,
  );
  const byFid = new Map(rows.map((r) => [r.fid, r]));
  let accepted = 0;
  let events = 0;
  tagged.forEach((raw, i) => {
    const a = answers[i];
    const fid = `${id}-${i}`;
    const row = byFid.get(fid);
    byFid.delete(fid);
    if (!a) {
      if (row) problems.push(`a request the client refused to send left a row:\n  ${describeRaw(raw)}`);
      return;
    }
    const where = `\n  ${describeRaw(raw)}\n    → ${a.status} ${a.text.slice(0, 200)}\n    row ${JSON.stringify(row ?? null)}`;
    const sha = createHash('sha256')
      .update(raw.body ?? Buffer.alloc(0))
      .digest('hex');
    if (a.status < 300) {
      const result = a.json as { status?: string; event_ids?: string[] };
      if (result.status === 'ignored') {
        figures.hooksIgnored++;
        if (row) problems.push(`an ignored handshake left a row:${where}`);
      } else if (!row || row.status !== result.status) {
        problems.push(`a ${result.status} webhook has no ${result.status} row of its own:${where}`);
      } else if (result.status === 'accepted') {
        figures.hooksAccepted++;
        accepted++;
        events += result.event_ids?.length ?? 0;
        if (row.sha !== sha) problems.push(`the accepted row does not hold the body as received:${where}`);
      } else figures.hooksDuplicate++;
      return;
    }
    if (a.status >= 500) return;
    const code = (a.json as { error?: { code?: string } } | undefined)?.error?.code ?? '';
    if (row) {
      // The documented trace: signed by the provider, unusable, kept as rejected with its code.
      figures.keptRejected++;
      const kept = AFTER_VERIFICATION.has(code) || code === 'payload_malformed';
      if (row.status !== 'rejected' || row.error_code !== code || !kept)
        problems.push(`a rejected request left a row other than the documented rejected one:${where}`);
      if (row.sha !== sha) problems.push(`the rejected row does not hold the body as received:${where}`);
    } else {
      figures.refusedBeforeVerification++;
      // Stripe's SDK parses the body while verifying it: a body that is not JSON is refused before
      // the request counts as verified. Every other connector parses after verification only.
      const stripeParse = code === 'payload_malformed' && reached(raw.path) === 'stripe';
      if (AFTER_VERIFICATION.has(code) || (code === 'payload_malformed' && !stripeParse))
        problems.push(`a verified but unusable webhook (${code}) was not kept as rejected:${where}`);
    }
  });
  for (const row of byFid.values())
    problems.push(`a row no request of the batch explains: ${JSON.stringify(row)}`);
  // Every other table is untouched; accepted webhooks add exactly their events, log entries and keys.
  const logTables = ['events', 'dedupe_keys', 'log_entries', 'log_partitions'];
  const untouched = changed(before, after, ['inbound_requests', ...(accepted > 0 ? logTables : [])]);
  if (untouched.length > 0) problems.push(`batch ${id} changed ${untouched.join(', ')}`);
  if (delta(before, after, 'inbound_requests') !== rows.length)
    problems.push(`inbound_requests grew by ${delta(before, after, 'inbound_requests')}, not ${rows.length}`);
  if (accepted > 0) {
    const expected: Record<string, number> = { events, dedupe_keys: accepted, log_entries: events };
    for (const [name, n] of Object.entries(expected)) {
      if (delta(before, after, name) !== n)
        problems.push(`${name} grew by ${delta(before, after, name)}, not ${n}`);
    }
  }
  figures.dbComparisons++;
  problems.push(...(await alive()));
  fail(problems);
}

// ---------------------------------------------------------------------------------------------
// /oauth/token

function oauthArb(): fc.Arbitrary<Raw> {
  const field = {
    grant_type: fc.oneof(
      fc.constant('client_credentials'),
      fc.constantFrom('password', 'authorization_code', ''),
      anyString(),
    ),
    client_id: fc.oneof(fc.constant(fuzz.clientId), fc.stringMatching(/^cli_[0-9a-f]{32}$/), anyString()),
    client_secret: fc.oneof(fc.constant(fuzz.clientSecret), anyString()),
    scope: fc.oneof(
      fc.constantFrom('users:read', 'admin', 'users:read users:write', '', ' ', 'nope'),
      anyString(),
    ),
  };
  const post = (headers: Headers, body: string | Buffer | undefined): Raw => ({
    method: 'POST',
    path: '/oauth/token',
    headers,
    body: body === undefined ? undefined : Buffer.from(body),
  });
  const form = fc
    .tuple(
      fc
        .record(field, { requiredKeys: [] })
        .map((f) => Object.entries(f).filter((e): e is [string, string] => e[1] !== undefined)),
      fc.array(fc.tuple(anyString(10), anyString(20)), { maxLength: 2 }),
      fc.constantFrom(
        'application/x-www-form-urlencoded',
        'application/x-www-form-urlencoded; charset=utf-8',
        'APPLICATION/X-WWW-FORM-URLENCODED',
      ),
      fc.boolean(),
    )
    .map(([fields, extra, type, twice]) => {
      const pairs: Array<[string, string]> = [...fields, ...extra];
      if (twice && pairs[0]) pairs.push(pairs[0]);
      return post({ 'content-type': type }, pairs.map(([k, v]) => `${pct(k)}=${pct(v)}`).join('&'));
    });
  const json = fc
    .oneof(
      fc.record(Object.fromEntries(Object.entries(field).map(([k, v]) => [k, fc.oneof(v, jsonAnything)])), {
        requiredKeys: [],
      }),
      jsonAnything,
    )
    .map((value) => post({ 'content-type': 'application/json' }, JSON.stringify(value)));
  const basic = fc
    .record({
      authorization: fc.oneof(
        fc
          .tuple(field.client_id, field.client_secret)
          .map(([id, secret]) => `Basic ${Buffer.from(`${pct(id)}:${pct(secret)}`).toString('base64')}`),
        fc
          .tuple(field.client_id, field.client_secret)
          .map(([id, secret]) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`),
        fc.uint8Array({ maxLength: 40 }).map((b) => `Basic ${Buffer.from(b).toString('base64')}`),
        fc.constantFrom(
          'Basic',
          'Basic ',
          'Basic %%%',
          'basic Og==',
          'Basic OjpA',
          'Basic JUZG',
          'Bearer x',
          'Basic ====',
        ),
        headerValue,
      ),
      body: fc.oneof(
        fc.constant('grant_type=client_credentials'),
        fc.constant(`grant_type=client_credentials&client_id=${fuzz.clientId}`),
        anyString().map((s) => `grant_type=${pct(s)}`),
      ),
    })
    .map(({ authorization, body }) =>
      post({ authorization, 'content-type': 'application/x-www-form-urlencoded' }, body),
    );
  const garbage = fc
    .record({
      type: fc.option(contentType, { nil: undefined }),
      body: fc.oneof(
        fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
        fc.constant(Buffer.alloc(16 * 1024 + 1, 0x61)),
        fc.constant(Buffer.from(bomb(0, 15_000))),
        fc.constant(undefined),
      ),
      method: fc.constantFrom('POST', 'POST', 'GET', 'PUT'),
      query: fc.option(anyString(30).map(pct), { nil: undefined }),
    })
    .map(
      ({ type, body, method, query: q }): Raw => ({
        method,
        path: `/oauth/token${q === undefined ? '' : `?${q}`}`,
        headers: type === undefined ? {} : { 'content-type': type },
        body,
      }),
    );
  // The client authenticates, and the request is refused all the same.
  const refused = fc
    .record({
      scope: fc.constantFrom('admin', 'nope', '', ' ', 'users:read admin', 'users:read\u0000'),
      via: fc.constantFrom('form', 'json', 'both'),
    })
    .map(({ scope, via }) => {
      const fields = {
        grant_type: 'client_credentials',
        client_id: fuzz.clientId,
        client_secret: fuzz.clientSecret,
        scope,
      };
      if (via === 'json') return post({ 'content-type': 'application/json' }, JSON.stringify(fields));
      const form = Object.entries(fields)
        .map(([k, v]) => `${k}=${pct(v)}`)
        .join('&');
      const basic = `Basic ${Buffer.from(`${fuzz.clientId}:${fuzz.clientSecret}`).toString('base64')}`;
      return post(
        {
          'content-type': 'application/x-www-form-urlencoded',
          ...(via === 'both' ? { authorization: basic } : {}),
        },
        form,
      );
    });
  return fc.oneof(form, json, basic, garbage, refused).map(shown).filter(fitsHeaderLimit);
}

// ---------------------------------------------------------------------------------------------
// /v1: every operation of /openapi.json

function v1Arb(): fc.Arbitrary<Raw> {
  const dictionary = fuzz.dictionary;
  const tokenArb = fc.oneof(
    { arbitrary: fc.constant(`Bearer ${fuzz.token}`), weight: 12 },
    { arbitrary: fc.constant(`Bearer ${fuzz.adminToken}`), weight: 3 },
    { arbitrary: fc.constant(`Bearer ${fuzz.readOnlyToken}`), weight: 2 },
    {
      arbitrary: fc.constantFrom(undefined, 'Bearer', 'Bearer x.y.z', `bearer ${fuzz.token}x`, 'Basic Og=='),
      weight: 2,
    },
  );
  const text = (v: unknown) => (typeof v === 'string' ? v : (JSON.stringify(v) ?? ''));
  const jsonBody = (v: unknown) => ({
    type: 'application/json',
    body: Buffer.from(JSON.stringify(v) ?? 'null'),
  });
  const perOperation = (op: ApiOperation): fc.Arbitrary<Raw> => {
    const params = fc.record(
      Object.fromEntries(
        op.pathParams.map((p) => [
          p.name,
          fc.oneof(
            { arbitrary: fc.constantFrom(...dictionary), weight: 4 },
            { arbitrary: arbitraryOf(doc, p.schema, dictionary).map(text), weight: 3 },
            { arbitrary: anyString(), weight: 2 },
            { arbitrary: fc.constantFrom('.', '..', ' ', 'x'.repeat(300), '%', '%00'), weight: 1 },
          ),
        ]),
      ),
    );
    const known = fc.record(
      Object.fromEntries(
        op.queryParams.map((p) => [p.name, arbitraryOf(doc, p.schema, dictionary).map(text)]),
      ),
      { requiredKeys: [] },
    );
    const query = fc.oneof(
      { arbitrary: fc.constant(''), weight: 2 },
      {
        arbitrary: fc
          .tuple(known, fc.array(fc.tuple(anyString(10), anyString(20)), { maxLength: 2 }), fc.boolean())
          .map(([k, extra, twice]) => {
            const given = Object.entries(k).filter((e): e is [string, string] => e[1] !== undefined);
            const pairs: Array<[string, string]> = [...given, ...extra];
            if (twice && pairs[0]) pairs.push(pairs[0]);
            return pairs.map(([n, v]) => `${pct(n)}=${pct(v)}`).join('&');
          }),
        weight: 6,
      },
      {
        arbitrary: fc.constantFrom(
          '%',
          '%ZZ',
          'a=%E0%A4%A',
          '&&&=',
          'limit=1e400',
          'a[b]=1',
          '__proto__[x]=1',
          'constructor[prototype][x]=1',
          'limit=-0',
        ),
        weight: 1,
      },
    );
    const valid = op.body ? arbitraryOf(doc, op.body, dictionary) : fc.constant(undefined);
    const body = fc.oneof(
      { arbitrary: valid.map((v) => (v === undefined ? undefined : jsonBody(v))), weight: op.body ? 8 : 12 },
      { arbitrary: jsonAnything.map(jsonBody), weight: 1 },
      {
        // A nesting bomb inside a valid-ish body.
        arbitrary: fc
          .tuple(
            valid,
            fc.array(fraction, { minLength: 1, maxLength: 3 }),
            fc.integer({ min: 0, max: 2 }),
            fc.constantFrom(2_000, 50_000, 900_000),
          )
          .map(([v, path, shape, bytes]) => ({
            type: 'application/json',
            body: Buffer.from(jsonWithBomb(setAt(v ?? {}, path, BOMB), bomb(shape, bytes)) ?? '{}'),
          })),
        weight: 1,
      },
      {
        arbitrary: fc.record({
          type: contentType,
          body: fc.oneof(
            fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
            fc.constantFrom(
              Buffer.from('{'),
              Buffer.from(''),
              Buffer.from('{"a":1}{'),
              Buffer.from('\ufeff{}'),
              Buffer.from('{"__proto__":{"x":1}}'),
              Buffer.from('{"constructor":{"prototype":{"x":1}}}'),
              Buffer.alloc(BODY_LIMIT + 1, 0x20),
            ),
          ),
        }),
        weight: 1,
      },
    );
    return fc
      .record({
        token: tokenArb,
        params,
        query,
        body,
        method: fc.oneof(
          { arbitrary: fc.constant(op.method), weight: 19 },
          { arbitrary: fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'), weight: 1 },
        ),
      })
      .map(({ token, params: p, query: q, body: b, method }) => {
        const path = op.path.replace(/\{([^}]+)\}/g, (_m, name: string) => pct(p[name] ?? ''));
        const headers: Headers = {};
        if (token !== undefined) headers.authorization = token;
        if (b) headers['content-type'] = b.type;
        return { method, path: q ? `${path}?${q}` : path, headers, body: b?.body };
      });
  };
  /** A valid request: the right token, real ids, parameters and a body as the schema has them. */
  const validOperation = (op: ApiOperation): fc.Arbitrary<Raw> => {
    const token = op.path.startsWith('/v1/organizations') ? fuzz.adminToken : fuzz.token;
    const params = fc.record(
      Object.fromEntries(
        op.pathParams.map((p) => [
          p.name,
          fc.oneof(
            { arbitrary: fc.constantFrom(...fuzz.ids), weight: 3 },
            { arbitrary: arbitraryOf(doc, p.schema, dictionary, true).map(text), weight: 1 },
          ),
        ]),
      ),
    );
    const query = fc
      .record(
        Object.fromEntries(
          op.queryParams.map((p) => [p.name, arbitraryOf(doc, p.schema, dictionary, true).map(text)]),
        ),
        { requiredKeys: [] },
      )
      .map((q) =>
        Object.entries(q)
          .filter((e): e is [string, string] => e[1] !== undefined)
          .map(([n, v]) => `${pct(n)}=${pct(v)}`)
          .join('&'),
      );
    const body = op.body ? arbitraryOf(doc, op.body, dictionary, true) : fc.constant(undefined);
    return fc.record({ params, query, body }).map(({ params: p, query: q, body: b }) => {
      const path = op.path.replace(/\{([^}]+)\}/g, (_m, name: string) => pct(p[name] ?? ''));
      const headers: Headers = { authorization: `Bearer ${token}` };
      if (b !== undefined) headers['content-type'] = 'application/json';
      return {
        method: op.method,
        path: q ? `${path}?${q}` : path,
        headers,
        body: b === undefined ? undefined : Buffer.from(JSON.stringify(b)),
      };
    });
  };
  return fc
    .oneof(
      ...v1ops.map((op) => fc.oneof(validOperation(op), perOperation(op))),
      anyString().map((s) => ({
        method: 'GET',
        path: `/v1/${pct(s)}`,
        headers: { authorization: `Bearer ${fuzz.token}` },
      })),
    )
    .map(shown)
    .filter(fitsHeaderLimit);
}

// ---------------------------------------------------------------------------------------------

async function created(res: Awaited<ReturnType<TestApp['call']>>): Promise<Record<string, unknown>> {
  if (res.statusCode !== 201) throw new Error(`${res.statusCode} ${res.body}`);
  return res.json() as Record<string, unknown>;
}

beforeAll(async () => {
  const started = Date.now();
  t = await startTestApp({
    INTERCHANGE_EGRESS_ALLOW: '127.0.0.1/32',
    LOG_LEVEL: 'error',
    // Slow bodies: cut off sooner than the default 30 s (a 1 MB body arrives here in milliseconds).
    INTERCHANGE_REQUEST_TIMEOUT: '10s',
    INTERCHANGE_MAX_DESTINATIONS: String(MAX_DESTINATIONS),
  });
  await t.app.server.listen({ port: 0, host: '127.0.0.1' });
  base = `http://127.0.0.1:${(t.app.server.server.address() as AddressInfo).port}`;
  publicUrl = t.app.config.publicUrl;
  doc = await loadOpenApi(base);
  allOps = operations(doc);
  v1ops = allOps.filter((op) => op.path.startsWith('/v1/'));
  tableNames = (
    await query<{ name: string }>(
      `select case when schemaname = 'public' then quote_ident(tablename)
                   else quote_ident(schemaname) || '.' || quote_ident(tablename) end as name
         from pg_tables where schemaname not in ('pg_catalog', 'information_schema') order by 1`,
    )
  )
    .map((r) => r.name)
    // Every process rewrites its row there every 5 s, whatever requests do (src/crypto/key-watch.ts).
    .filter((name) => name !== 'secret_key_holders');

  // The webhook sources, with their secrets, in one organization.
  const hooks = await t.organization('Hooks', { tier: 'enterprise' });
  const install = async (org: { token: string }, body: Record<string, unknown>) =>
    (await created(await t.call('POST', '/v1/installations', { token: org.token, body }))).id as string;
  hookIds.shopify = await install(hooks, {
    connector: 'shopify',
    config: { shopDomain: SIM_SHOP_DOMAIN },
    secrets: { clientSecret: SECRETS.shopify },
  });
  hookIds.stripe = await install(hooks, { connector: 'stripe', secrets: { webhookSecret: SECRETS.stripe } });
  hookIds.woocommerce = await install(hooks, {
    connector: 'woocommerce',
    config: { siteUrl: WOO_SITE },
    secrets: { webhookSecret: SECRETS.woocommerce },
  });
  hookIds.hubspot = await install(hooks, {
    connector: 'hubspot',
    config: { portalId: String(PORTAL) },
    secrets: { clientSecret: SECRETS.hubspot },
  });
  for (const source of Object.keys(hookIds) as Source[]) connectorOfInstallation.set(hookIds[source], source);
  // Fail closed: a source without its secret (a Stripe endpoint may be made before its whsec_;
  // Shopify and HubSpot ones may not), and a destination, which takes no webhooks.
  const unsigned = await install(hooks, { connector: 'stripe' });
  connectorOfInstallation.set(unsigned, 'stripe');
  const destination = await install(hooks, {
    connector: 'webhook',
    config: { url: 'http://127.0.0.1:9/hook' },
  });
  connectorOfInstallation.set(destination, 'webhook');

  bombsOrg = await t.organization('Bombs', { tier: 'enterprise' });
  // The /v1 fuzzing organization, with one object of each kind to aim at.
  const org = await t.organization('Fuzz', { tier: 'enterprise' });
  fuzz.token = org.token;
  fuzz.clientId = org.client.clientId;
  fuzz.clientSecret = org.client.clientSecret;
  fuzz.adminToken = await t.token(t.admin);
  const readOnly = await created(
    await t.call('POST', '/v1/api-clients', {
      token: org.token,
      body: { name: 'read only', scopes: ['users:read', 'events:read'] },
    }),
  );
  fuzz.readOnlyToken = await t.token({
    clientId: readOnly.id as string,
    clientSecret: readOnly.client_secret as string,
  });
  const spare = await created(
    await t.call('POST', '/v1/api-clients', { token: org.token, body: { name: 'spare' } }),
  );
  const spareOrg = await created(
    await t.call('POST', '/v1/organizations', { token: fuzz.adminToken, body: { name: 'Spare' } }),
  );
  const user = await created(
    await t.call('POST', '/v1/users', {
      token: org.token,
      body: { email: 'ada@example.com', name: 'Ada', external_ids: { shopify: '7302', stripe: 'cus_9s6X' } },
    }),
  );
  const shop = await install(org, {
    connector: 'shopify',
    config: { shopDomain: 'fuzz.myshopify.com' },
    secrets: { clientSecret: 'shpss_x' },
  });
  const endpoint = await install(org, {
    connector: 'webhook',
    config: { url: 'http://127.0.0.1:9/endpoint' },
  });
  const mixpanel = await install(org, {
    connector: 'mixpanel',
    config: { region: 'eu', host: 'http://127.0.0.1:9', auth: 'project_token' },
    secrets: { projectToken: 'tok' },
  });
  const event = await created(
    await t.call('POST', '/v1/events', {
      token: org.token,
      body: { type: 'custom.fuzz.started', data: { n: 1 }, user_id: user.id, id: 'fuzz-1' },
    }),
  );
  const catalog = (await t.call('GET', '/v1/connectors', { token: org.token })).json().data as Array<{
    id: string;
    config_schema: { properties?: Record<string, unknown> };
    secret_keys: string[];
  }>;
  fuzz.ids = [
    user.id,
    shop,
    endpoint,
    mixpanel,
    event.id,
    spare.id,
    spareOrg.id,
    hookIds.shopify,
    hooks.id,
  ].map(String);
  fuzz.dictionary = [
    ...fuzz.ids,
    'dlv_0192f3a4b5c67d8e9f0a1b2c3d4e5f60',
    '01931f2e-8c3b-7d2a-9f1e-4b5c6d7e8f90',
    ...catalog.flatMap((c) => [c.id, ...Object.keys(c.config_schema.properties ?? {}), ...c.secret_keys]),
    '7302',
    'cus_9s6X',
    'ada@example.com',
    'order.created',
    'order.*',
    'custom.cart.abandoned',
    '*',
    'users:read',
    'admin',
    'enterprise',
    'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
    'http://127.0.0.1:9/x',
    'https://example.invalid/hook',
    'a.myshopify.com',
    '2024-05-01T10:15:30Z',
    '$gte',
    '$where',
    'eu',
  ];
  process.stdout.write(`[reliability] bad input: set up in ${Date.now() - started} ms\n`);
});

afterAll(async () => {
  const statuses = (family: Family) =>
    [...(figures.statuses.get(family) ?? new Map<number, number>()).entries()]
      .sort(([a], [b]) => a - b)
      .map(([s, n]) => `${s}:${n}`)
      .join(' ');
  report('bad input (property-based, fast-check)', {
    ...Object.fromEntries(FAMILIES.map((f) => [`sent, ${f}`, figures.sent.get(f) ?? 0])),
    ...Object.fromEntries(FAMILIES.map((f) => [`statuses, ${f}`, statuses(f) || '-'])),
    '/v1 operations from /openapi.json': v1ops.length,
    'operations whose answers were checked against their declared responses': `${figures.declared.size} of ${allOps.length}`,
    'operations not checked (not fuzzed here)':
      allOps
        .map((op) => op.operationId ?? op.key)
        .filter((name) => !figures.declared.has(name))
        .join(', ') || '-',
    'refused by the HTTP client': figures.refusedByClient,
    '5xx answers': figures.fiveXX,
    'webhooks accepted/duplicate/ignored': `${figures.hooksAccepted}/${figures.hooksDuplicate}/${figures.hooksIgnored}`,
    'webhooks kept as rejected (signed)': figures.keptRejected,
    'webhooks refused before verification': figures.refusedBeforeVerification,
    'database comparisons (every table)': `${figures.dbComparisons} over ${tableNames.length} tables`,
    '/v1 writes that succeeded (not compared)': figures.dbSkippedAfterWrite,
    'liveness checks (/healthz)': figures.livenessChecks,
    'filter bombs: longest /healthz gap, ms': Math.round(figures.longestHealthzGapMs),
    'property failures': failures.length,
  });
  await agent.close();
  await t?.close();
});

describe('bad input never gets a 5xx, and a rejected request changes nothing', () => {
  it('signed provider webhooks, mutated: bytes, headers, signatures, content types, encodings, bombs', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.oneof({ arbitrary: signedMutatedArb, weight: 3 }, signedOddPayloadArb), {
          minLength: 1,
          maxLength: 8,
        }),
        (batch) => hookBatch('hooks: signed, mutated', batch),
      ),
      { ...ASSERT, numRuns: RUNS.hooksSigned },
    );
    // The mutations reached every outcome of the ingest path, or the run proves little.
    expect(figures.hooksAccepted + figures.hooksDuplicate).toBeGreaterThan(0);
    expect(figures.keptRejected).toBeGreaterThan(0);
    expect(figures.refusedBeforeVerification).toBeGreaterThan(0);
  });

  it('random targets, headers and bodies at /hooks/*', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(randomHookArb(), { minLength: 1, maxLength: 8 }), (batch) =>
        hookBatch('hooks: random', batch),
      ),
      { ...ASSERT, numRuns: RUNS.hooksRandom },
    );
  });

  it('/oauth/token: form, JSON, HTTP Basic and garbage', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(oauthArb(), { minLength: 1, maxLength: 8 }), async (batch) => {
        const before = await snapshot();
        const answers = await Promise.all(batch.map((raw) => send('oauth/token', raw)));
        const problems = batch.flatMap((raw, i) => {
          const a = answers[i];
          return a ? judge(raw, a) : [];
        });
        // An issued token stamps its client's last_used_at; nothing else may change, ever.
        const issued = answers.some((a) => a?.status === 200);
        const diff = changed(before, await snapshot(), issued ? ['api_clients'] : []);
        if (diff.length > 0) problems.push(`token requests changed ${diff.join(', ')}`);
        figures.dbComparisons++;
        problems.push(...(await alive()));
        fail(problems);
      }),
      { ...ASSERT, numRuns: RUNS.oauth },
    );
  });

  it('every /v1 operation of /openapi.json: valid-ish and random parameters, queries and bodies', async () => {
    expect(v1ops.length).toBeGreaterThan(20);
    let last = await snapshot();
    await fc.assert(
      fc.asyncProperty(fc.array(v1Arb(), { minLength: 1, maxLength: 6 }), async (batch) => {
        const problems: string[] = [];
        // One at a time, so each rejected request is compared alone against every table.
        for (const raw of batch) {
          const a = await send('v1', raw);
          const now = await snapshot();
          if (a) problems.push(...judge(raw, a));
          if (a && a.status >= 200 && a.status < 300 && raw.method !== 'GET') {
            figures.dbSkippedAfterWrite++;
          } else {
            const diff = changed(last, now);
            figures.dbComparisons++;
            if (diff.length > 0)
              problems.push(
                `a rejected or read-only request changed ${diff.join(', ')}:\n  ${describeRaw(raw)}\n    → ${a?.status} ${a?.text.slice(0, 200)}`,
              );
          }
          last = now;
        }
        problems.push(...(await alive()));
        fail(problems);
      }),
      { ...ASSERT, numRuns: RUNS.v1 },
    );
  });

  it('absurd rate limits on a destination: answered 4xx, nothing changed', async () => {
    // A rate limit outside 0.01–10,000 requests a second (1e-300 booked slots past any date) once
    // failed the claim of every tenant's rate-limited deliveries: it must never be stored.
    const id = (
      await created(
        await t.call('POST', '/v1/installations', {
          token: fuzz.token,
          body: { connector: 'webhook', config: { url: 'http://127.0.0.1:9/paced' } },
        }),
      )
    ).id as string;
    const absurd = fc.oneof(
      fc
        .double()
        .filter((r) => Number.isFinite(r) && !(r >= 0.01 && r <= 10_000))
        .map((r) => JSON.stringify(r)),
      // As JSON text: 1e400 parses to Infinity, and a string or an array is no number.
      fc.constantFrom(
        '1e-300',
        '5e-324',
        '-0',
        '0',
        '-1',
        '0.009999',
        '10000.000001',
        '1e6',
        '1e308',
        '1e400',
      ),
      fc.constantFrom('-1e400', '"5"', '"1e-300"', 'true', '[]', '{}'),
    );
    const body = (rate: string, create: boolean) =>
      Buffer.from(
        `{${create ? '"connector":"webhook","config":{"url":"http://127.0.0.1:9/paced"},' : ''}` +
          `"subscription":{"event_types":["*"],"ordered":true,"rate_limit":${rate}}}`,
      );
    let last = await snapshot();
    let refused = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(absurd, fc.boolean()), { minLength: 1, maxLength: 4 }),
        async (batch) => {
          const problems: string[] = [];
          for (const [rate, create] of batch) {
            const raw: Raw = {
              method: create ? 'POST' : 'PATCH',
              path: create ? '/v1/installations' : `/v1/installations/${id}`,
              headers: { authorization: `Bearer ${fuzz.token}`, 'content-type': 'application/json' },
              body: body(rate, create),
            };
            const a = await send('v1', raw);
            if (!a) continue;
            problems.push(...judge(raw, a));
            if (a.status < 400) problems.push(`rate_limit ${rate} was accepted:\n  ${describeRaw(raw)}`);
            if (a.status === 400) refused++;
            const now = await snapshot();
            const diff = changed(last, now);
            figures.dbComparisons++;
            if (diff.length > 0) problems.push(`rate_limit ${rate} changed ${diff.join(', ')}`);
            last = now;
          }
          problems.push(...(await alive()));
          fail(problems);
        },
      ),
      { ...ASSERT, numRuns: 40 },
    );
    expect(refused).toBeGreaterThan(0);
  });

  it('cuts off a webhook body trickled byte by byte with 408 request_timeout, and stays up', async () => {
    const socket = connect(Number(new URL(base).port), '127.0.0.1');
    let answer = '';
    socket.on('data', (chunk) => {
      answer += chunk.toString('latin1');
    });
    socket.on('error', () => {});
    socket.write(
      `POST /hooks/${hookIds.stripe} HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n`,
    );
    // One byte every 100 ms (100 KB would take hours); the client gives up after 30 s.
    const trickle = setInterval(() => socket.write('{'), 100);
    const giveUp = setTimeout(() => socket.destroy(), 30_000);
    const closedByServer = await new Promise<boolean>((resolve) =>
      socket.on('close', () => resolve(answer.length > 0)),
    );
    clearInterval(trickle);
    clearTimeout(giveUp);
    expect(closedByServer).toBe(true);
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)).error.code).toBe('request_timeout');
    expect(await alive()).toEqual([]);
  });

  it('filter bombs routed with a 1 MB event, and the destination limit: answers and stays responsive', async () => {
    // The worker from here on: its deliveries change tables, so this runs after the properties.
    t.app.startWorker();
    const [bombed, plain] = [await startReceiver(), await startReceiver()];
    const org = bombsOrg;
    const api = (method: string, path: string, body: unknown): Raw => ({
      method,
      path,
      headers: { authorization: `Bearer ${org.token}`, 'content-type': 'application/json' },
      body: Buffer.from(JSON.stringify(body)),
    });
    const problems: string[] = [];
    const call = async (raw: Raw, expected: number) => {
      const a = await send('v1', raw);
      if (!a) return undefined;
      problems.push(...judge(raw, a));
      if (a.status !== expected)
        problems.push(`${raw.method} ${raw.path} → ${a.status} ${a.text.slice(0, 200)}`);
      return a;
    };
    const bombs = [
      { a: { $in: Array(2000).fill(0) } },
      { $or: Array.from({ length: 199 }, () => ({ a: 0 })) },
      { $or: Array.from({ length: 127 }, () => ({ a: { $gt: 5 } })) },
      { $or: [...'bcdefghijkl'.split('').map((c) => ({ [`a.${c}`]: 1 })), { z: { $exists: false } }] },
    ];
    const webhook = (url: string, filter?: unknown) =>
      api('POST', '/v1/installations', {
        connector: 'webhook',
        config: { url },
        subscription: { event_types: ['custom.bomb'], filter },
      });
    for (const filter of bombs) await call(webhook(bombed.url, filter), 201);
    await call(webhook(plain.url), 201);
    for (let n = bombs.length + 1; n < MAX_DESTINATIONS; n++)
      await call(webhook(`http://127.0.0.1:9/${n}`), 201);
    const over = await call(webhook(plain.url), 409);
    if (over && (over.json as { error?: { code?: string } })?.error?.code !== 'destination_limit_reached')
      problems.push(`one destination too many answered ${over.text.slice(0, 200)}`);

    // About 1 MB of data (the body limit is 1 MiB); /healthz is called until the event is delivered.
    let delivered = false;
    const watching = (async () => {
      let last = performance.now();
      while (!delivered) {
        problems.push(...(await alive()));
        figures.longestHealthzGapMs = Math.max(figures.longestHealthzGapMs, performance.now() - last);
        last = performance.now();
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    await call(api('POST', '/v1/events', { type: 'custom.bomb', data: { a: Array(520_000).fill(1) } }), 201);
    await plain
      .until((r) => r.length > 0, 60_000)
      .finally(() => {
        delivered = true;
      });
    await watching;
    // The bombs match nothing (or run out of their work budget): only the plain destination takes it.
    await new Promise((r) => setTimeout(r, 500));
    await Promise.all([bombed.close(), plain.close()]);
    if (bombed.received.length > 0)
      problems.push(`a bomb filter matched: ${bombed.received.length} deliveries`);
    // Generous: taking in 1 MB of JSON holds the event loop about a second here (parsing and
    // checking it); the filters take milliseconds (a stalling one held it for minutes).
    if (figures.longestHealthzGapMs > 5000)
      problems.push(`/healthz went ${Math.round(figures.longestHealthzGapMs)} ms without an answer`);
    fail(problems);
  });

  it('is still up and ready', async () => {
    expect(await alive()).toEqual([]);
    const ready = await request(`${base}/readyz`, { dispatcher: agent });
    expect(ready.statusCode).toBe(200);
    await ready.body.text();
    expect(failures.length, 'problems found by the properties above').toBe(0);
    expect(figures.fiveXX).toBe(0);
  });
});
