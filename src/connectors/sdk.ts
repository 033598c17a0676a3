// The connector contract. A connector is a plain object made by `defineConnector`, which only
// checks and types what it is given (docs/guides/write-a-connector.md). Connectors know nothing of
// HTTP frameworks, the database or each other: they get bytes and settings, and return events.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { Envelope } from '../events/envelope.ts';
import {
  type EVENT_DATA,
  PROVIDER_FAMILIES,
  type ProviderFamily,
  providerEventType,
} from '../events/types.ts';
import { type JsonTextFacts, scanJsonText } from '../json-text.ts';
import { unstorable, unstorableJson } from '../storable.ts';

export const CATEGORIES = [
  'ecommerce',
  'payments',
  'crm',
  'analytics',
  'messaging',
  'webhooks',
  'custom',
] as const;
export type Category = (typeof CATEGORIES)[number];

/** The stable error kind every connector throws. `code` is one of the codes below. */
export class ConnectorError extends Error {
  override name = 'ConnectorError';
  constructor(
    readonly code: ConnectorErrorCode,
    message: string,
    readonly retryable = false,
  ) {
    super(message);
  }
}

export type ConnectorErrorCode =
  /** The request's signature is missing or wrong. */
  | 'signature_invalid'
  /** The signed timestamp is too old (replay protection). */
  | 'timestamp_stale'
  /** The installation lacks the secret needed to verify: a configuration error, never a pass. */
  | 'secret_missing'
  /** The body is not the JSON (or form) the provider sends. */
  | 'payload_malformed'
  /** The payload lacks fields the canonical event needs. */
  | 'payload_invalid'
  /** The request names no topic, or one that makes no event type (any other is a raw event). */
  | 'topic_unknown'
  /** A provider API call failed (connection checks, sync, delivery). */
  | 'provider_error';

/** An inbound HTTP request as a connector sees it. Header names are lower case. */
export interface InboundRequest {
  method: string;
  /** The full URI the provider called, as it called it: HubSpot signs it. */
  url: string;
  headers: Readonly<Record<string, string>>;
  /** The body exactly as received: signatures are computed over these bytes. */
  rawBody: Buffer;
  receivedAt: Date;
}

export interface InstallationContext<C, S> {
  installationId: string;
  config: C;
  /** Decrypted secrets; a key may be absent when the user has not set it. */
  secrets: Partial<S>;
  now: Date;
}

type KnownType = keyof typeof EVENT_DATA;

/** What `normalize` returns for one canonical event; the hub adds id, source, organization, time. */
export interface EventDraft {
  /** A canonical type, a custom one, or a raw provider event's (`rawEvent`). */
  type: KnownType | `custom.${string}` | `${ProviderFamily}.${string}`;
  /** What the event is about, e.g. `orders/820982911946154508`. */
  subject?: string | undefined;
  /** When it happened at the provider (ISO 8601); defaults to when it was received. */
  time?: string | undefined;
  data: unknown;
  /** The provider's id of the customer concerned, to attach the organization's user id. */
  customerExternalId?: string | null | undefined;
  /**
   * For an event whose provider names no customer but an earlier event that did (a Shopify
   * refund names its order): that event's subject, e.g. `orders/820982911946154508`. The hub
   * takes the customer of the latest event of the installation with this subject, however old,
   * as this event's customer, for its user id, and writes it into the data's `customer_id`.
   * Ignored when `customerExternalId` is set.
   */
  customerFrom?: string | undefined;
  /**
   * For a provider that batches events and may regroup them when it retries (HubSpot): this
   * event's own key, the same on every retry. When every event of a request has one, each is
   * de-duplicated on its own (a retry that mixes old and new events stores only the new ones) and
   * the request's `dedupeKey` only describes it.
   */
  dedupeKey?: string | undefined;
}

/** A provider topic this connector turns into canonical events, and which (for GET /v1/connectors). */
export interface TopicMapping {
  topic: string;
  types: readonly string[];
}

export interface InboundSpec<C, S, P = unknown> {
  /**
   * The provider topics turned into canonical events. Any other topic is kept as a raw provider
   * event (`rawEvent`): verified, stored and answered 2xx, as providers disable endpoints that
   * keep refusing.
   */
  topics: readonly TopicMapping[];
  /**
   * Requests the provider sends that must be answered 200 without verification and without
   * events (WooCommerce's unsigned creation ping). Must look only at the shape, trust nothing.
   */
  isHandshake?(req: InboundRequest): boolean;
  /** Throws ConnectorError (signature_invalid, timestamp_stale, secret_missing) unless authentic. */
  verify(req: InboundRequest, ctx: InstallationContext<C, S>): void | Promise<void>;
  /** Parses the verified body; default JSON. Throws ConnectorError('payload_malformed'). */
  parse?(req: InboundRequest): P;
  /**
   * A key that is the same for every retry of one provider event, unique otherwise. Called after
   * `normalize`, with its events: a provider that signs only the body keys them by what they say
   * (`contentKey`), as its event-id headers are not signed.
   */
  dedupeKey(
    req: InboundRequest,
    payload: P,
    ctx: InstallationContext<C, S>,
    drafts: readonly EventDraft[],
  ): string;
  /** The ordering key of the events (the source account: the shop domain for Shopify). */
  partitionKey(req: InboundRequest, payload: P, ctx: InstallationContext<C, S>): string;
  /**
   * The provider account the request's customer ids belong to (the shop domain, the Stripe
   * account), as users name it in their external ids (`shopify@acme.myshopify.com`): a customer
   * id means one customer only within it. Prefer what the provider names over the installation,
   * so the same account installed again keeps its users.
   */
  account(req: InboundRequest, payload: P, ctx: InstallationContext<C, S>): string;
  /** Canonical or raw (`rawEvent`) events for this request; throws topic_unknown or payload_invalid. */
  normalize(req: InboundRequest, payload: P, ctx: InstallationContext<C, S>): EventDraft[];
  /** For providers calling one URL for every account (POST /hooks/<connector>): the account this request is for. */
  routeKey?(req: InboundRequest): string | undefined;
}

/** One event to send; `deliveryId` is stable across retries (the receiver's idempotency key). */
export interface DeliveryItem {
  deliveryId: string;
  /** 1 for the first attempt. */
  attempt: number;
  event: Envelope;
  /**
   * When the hub has it at hand, the event's data as the JSON text stored: byte for byte
   * `JSON.stringify(event.data)`, so a connector that sends the data as JSON can send this text
   * and leave `event.data` unread (it is then never parsed).
   */
  dataJson?: string | undefined;
  /** The connector of the installation the event came from (`shopify`), or null for API events. */
  sourceConnector: string | null;
}

/**
 * What became of one item. `retry` goes back on the retry schedule (`retryAfterMs` asks for a
 * later first retry, e.g. from Retry-After; `throttle` also pauses every delivery to this
 * destination for that long: 429, 502, 504). `failed` is final: the delivery is dead, and with
 * `disable` the destination is disabled too (410 Gone).
 */
export type DeliveryResult =
  | { status: 'delivered'; statusCode?: number | undefined; response?: string | undefined }
  | {
      status: 'retry';
      error: string;
      statusCode?: number | undefined;
      response?: string | undefined;
      retryAfterMs?: number | undefined;
      throttle?: boolean | undefined;
    }
  | {
      status: 'failed';
      error: string;
      statusCode?: number | undefined;
      response?: string | undefined;
      disable?: boolean | undefined;
    };

export interface HttpRequest {
  method: string;
  headers: Record<string, string>;
  body?: string | Buffer | undefined;
  /** Whole request, headers and body included; default 15 s. */
  timeoutMs?: number | undefined;
  /** How much of the response body to keep; the rest is discarded unread. Default 4 KiB. */
  maxResponseBytes?: number | undefined;
}

export interface HttpResponse {
  status: number;
  /** Lower-case names. */
  headers: Record<string, string>;
  /** The first `maxResponseBytes` of the body, decoded as UTF-8 (invalid bytes replaced). */
  body: string;
}

/**
 * Outbound HTTP for connectors, through the egress guard: the host is resolved and every address
 * vetted before connecting; redirects are not followed. Throws `EgressBlockedError` for a refused
 * address and an ordinary Error for network failures and time-outs.
 */
export type HttpClient = (url: string, request: HttpRequest) => Promise<HttpResponse>;

export interface DeliverContext<C, S> extends InstallationContext<C, S> {
  http: HttpClient;
}

export interface DestinationSpec<C, S> {
  /** Most items per `deliver` call: 1 for webhooks, up to 2000 for Mixpanel. */
  batchSize: number;
  /** Whether this destination takes events of this type at all (default: every type). */
  accepts?(type: string): boolean;
  /** The URLs a config sends to, vetted by the egress guard when an installation is saved. */
  urls?(config: C): string[];
  /** Sends a batch; one result per item, in order. Throwing counts as `retry` for every item. */
  deliver(batch: DeliveryItem[], ctx: DeliverContext<C, S>): Promise<DeliveryResult[]>;
}

/** What a connection check gives: the installation's settings and the hub's outbound HTTP. */
export type CheckContext<C, S> = DeliverContext<C, S>;

/** The outcome of a connection check; `message` says what the provider answered, never a secret. */
export interface CheckResult {
  ok: boolean;
  message: string;
}

/** A setting that is valid but keeps some subscribed events from ever being delivered. */
export interface InstallationWarning {
  /** Stable, for programs: e.g. `profile_updates_need_project_token`. */
  code: string;
  message: string;
  /** The request field to change, e.g. `body.secrets.projectToken`. */
  path?: string | undefined;
}

/** What `warnings` looks at: an installation's settings as they will be saved. */
export interface WarningContext<C, S> {
  config: C;
  secrets: Partial<S>;
  /** Whether the destination's subscription takes events of this type (its filter aside). */
  subscribes(type: string): boolean;
}

export interface ConnectorDefinition<C extends z.ZodType = z.ZodType, S extends z.ZodType = z.ZodType> {
  /** kebab-case; the same string in the folder, the catalog, the database and the API. */
  id: string;
  name: string;
  category: Category;
  description?: string;
  /** Public settings; its JSON Schema draws the dashboard form. */
  config: C;
  /** Encrypted at rest, never returned by the API. */
  secrets: S;
  // biome-ignore lint/suspicious/noExplicitAny: the parsed payload type is private to each connector; the hub only passes it back.
  inbound?: InboundSpec<z.infer<C>, z.infer<S>, any>;
  /** The installation's routing key for `routeKey` (e.g. its shop domain). */
  routeKeyOf?(config: z.infer<C>): string | undefined;
  /** Destination side: how events are sent to this connector's installations. */
  destination?: DestinationSpec<z.infer<C>, z.infer<S>>;
  /**
   * Secrets an installation may not be created without, nor have removed: those of a source that
   * would refuse every webhook without them and whose secret is known before its URL (a Shopify or
   * HubSpot app's client secret). A source whose provider shows the secret only once given the URL
   * (a Stripe endpoint's whsec_) leaves it out: it refuses webhooks (secret_missing) until it is set.
   */
  requiredSecrets?: readonly string[];
  /**
   * Secrets the hub generates when an installation is created without them (a webhook endpoint's
   * signing secret). They are returned once, in the response that creates the installation.
   */
  generateSecrets?(): Partial<z.infer<S>>;
  /**
   * `POST /v1/installations/:id/rotate-secret`: new secrets from the current ones (the old key may
   * keep working for a while); `revealed` is returned once to the caller.
   */
  rotateSecrets?(
    current: Partial<z.infer<S>>,
    now: Date,
  ): { secrets: Partial<z.infer<S>>; revealed: Record<string, string> };
  /**
   * Connection check for `POST /v1/installations/:id/test`: a real call to the provider with the
   * installation's settings (through `ctx.http`), answered with what the provider said.
   */
  check?(ctx: CheckContext<z.infer<C>, z.infer<S>>): Promise<CheckResult>;
  /**
   * Warnings for the response that creates or updates an installation: settings that are valid
   * but leave some subscribed events undeliverable (they would fail, then die). Pure: no I/O.
   */
  warnings?(ctx: WarningContext<z.infer<C>, z.infer<S>>): InstallationWarning[];
}

export type AnyConnector = ConnectorDefinition<z.ZodType, z.ZodType>;

const ID = /^[a-z][a-z0-9]*(-[a-z0-9]+)*$/;

/**
 * Declares a connector. Types the definition so a wrong one does not compile; `validateCatalog`
 * checks the rest at boot.
 *
 * @example
 * export default defineConnector({
 *   id: 'acme', name: 'Acme', category: 'ecommerce',
 *   config: z.object({ account: z.string() }),
 *   secrets: z.object({ signingSecret: z.string() }),
 *   inbound: { verify, dedupeKey, partitionKey, account, normalize },
 * });
 */
export function defineConnector<C extends z.ZodObject, S extends z.ZodObject, P>(
  definition: ConnectorDefinition<C, S> & { inbound?: InboundSpec<z.infer<C>, z.infer<S>, P> },
): ConnectorDefinition<C, S> {
  return definition;
}

export class ConnectorDefinitionError extends Error {
  override name = 'ConnectorDefinitionError';
}

/** Boot-time checks of what types cannot say: ids, uniqueness, schemas that are objects. */
export function validateCatalog(connectors: readonly AnyConnector[]): void {
  const seen = new Set<string>();
  for (const c of connectors) {
    const where = `connector ${JSON.stringify(c.id)}`;
    if (typeof c.id !== 'string' || !ID.test(c.id))
      throw new ConnectorDefinitionError(`${where}: id must be kebab-case`);
    if (seen.has(c.id)) throw new ConnectorDefinitionError(`${where}: id is used twice`);
    seen.add(c.id);
    if (!c.name) throw new ConnectorDefinitionError(`${where}: name is required`);
    if (!(c.config instanceof z.ZodObject))
      throw new ConnectorDefinitionError(`${where}: config must be a z.object`);
    if (!(c.secrets instanceof z.ZodObject))
      throw new ConnectorDefinitionError(`${where}: secrets must be a z.object`);
    const secretKeys = Object.keys((c.secrets as z.ZodObject).shape);
    for (const key of c.requiredSecrets ?? [])
      if (!secretKeys.includes(key))
        throw new ConnectorDefinitionError(`${where}: requiredSecrets names ${key}, not a secret`);
    const inbound = c.inbound;
    if (inbound && !(PROVIDER_FAMILIES as readonly string[]).includes(c.id))
      throw new ConnectorDefinitionError(
        `${where}: a source must be one of the provider families of raw events (events/types.ts PROVIDER_FAMILIES)`,
      );
    if (inbound) {
      for (const fn of ['verify', 'dedupeKey', 'partitionKey', 'account', 'normalize'] as const) {
        if (typeof inbound[fn] !== 'function')
          throw new ConnectorDefinitionError(`${where}: inbound.${fn} must be a function`);
      }
    }
    const destination = c.destination;
    if (destination) {
      if (typeof destination.deliver !== 'function')
        throw new ConnectorDefinitionError(`${where}: destination.deliver must be a function`);
      if (
        !Number.isInteger(destination.batchSize) ||
        destination.batchSize < 1 ||
        destination.batchSize > 10_000
      )
        throw new ConnectorDefinitionError(
          `${where}: destination.batchSize must be an integer from 1 to 10000`,
        );
    }
  }
}

/**
 * A de-duplication key made of what a request's events say, for providers whose event-id headers
 * are not signed (Shopify, WooCommerce): posting a signed body again with a new event id makes
 * the same key. With `once` (a resource's creation or final deletion, which happens once) the key
 * is the events' subjects alone, so a later body of the resource posted as its creation is a
 * duplicate too; otherwise the subjects and a SHA-256 of the events' data, so a change that the
 * provider's timestamp does not show is still a new event.
 *
 * @example
 * contentKey([{ type: 'order.created', subject: 'orders/1', data }], { once: true }) // 'orders/1'
 */
export function contentKey(drafts: readonly EventDraft[], options: { once?: boolean } = {}): string {
  const subjects = drafts.map((d) => d.subject ?? '').join(',');
  if (options.once) return subjects;
  const digest = createHash('sha256')
    .update(JSON.stringify(drafts.map((d) => d.data)))
    .digest('hex');
  return `${subjects}:sha256:${digest}`;
}

/** Lower-cased header lookup helper for connectors; accepts several names (e.g. with and without X-). */
export function header(req: InboundRequest, ...names: string[]): string | undefined {
  for (const name of names) {
    const value = req.headers[name.toLowerCase()];
    if (value !== undefined && value !== '') return value;
  }
  return undefined;
}

/** Retry-After as seconds or an HTTP date → milliseconds from `now`; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | undefined, now: Date = new Date()): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now.getTime());
}

/** The JSON text of a raw provider event's data is at most this long; a larger payload stays in the request's body. */
export const RAW_EVENT_MAX_BYTES = 256 * 1024;

/**
 * A raw provider event: a webhook of a topic this connector has no canonical type for, kept as the
 * provider sent it (`payload`, parsed with `parseExactJson` so ids stay exact) under the type
 * `providerEventType` names. A payload over RAW_EVENT_MAX_BYTES of JSON is replaced by its size.
 *
 * @example
 * rawEvent('shopify', 'inventory_levels/update', payload) // type shopify.inventory_levels.update
 */
export function rawEvent(
  family: ProviderFamily,
  topic: string,
  payload: unknown,
  fields: Pick<EventDraft, 'subject' | 'time' | 'dedupeKey'> = {},
): EventDraft {
  const type = providerEventType(family, topic);
  if (!type)
    throw new ConnectorError(
      'topic_unknown',
      `the topic ${JSON.stringify(topic.slice(0, 100))} names no event type`,
    );
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload))
    throw new ConnectorError('payload_invalid', `${topic}: the payload is not a JSON object`);
  const bytes = Buffer.byteLength(JSON.stringify(payload));
  const data = bytes <= RAW_EVENT_MAX_BYTES ? payload : { payload_omitted: true, payload_bytes: bytes };
  return { type: type as EventDraft['type'], ...fields, data };
}

/**
 * The body as JSON with integers a double cannot hold (ids past 2^53) as decimal strings, or
 * ConnectorError('payload_malformed'). Parsed once, after quoting, which keeps bad JSON bad.
 */
export function parseExactJson(raw: Buffer): unknown {
  const facts = scanJsonText(raw.toString('utf8'), true);
  let value: unknown;
  try {
    if (facts.text === undefined) throw new Error('a number as an object key');
    value = JSON.parse(facts.text);
  } catch {
    throw new ConnectorError('payload_malformed', 'body is not valid JSON');
  }
  return storablePayload(value, facts);
}

/** Default body parser: JSON, or ConnectorError('payload_malformed'). */
export function parseJson(req: InboundRequest): unknown {
  const text = req.rawBody.toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ConnectorError('payload_malformed', 'body is not valid JSON');
  }
  return storablePayload(value, scanJsonText(text));
}

/**
 * The parsed payload, or ConnectorError('payload_malformed') when the database could not store it.
 * With the facts of the JSON text it was parsed from (`scanJsonText`), the value is walked only
 * when they say it may have to be.
 */
export function storablePayload<T>(value: T, facts?: JsonTextFacts): T {
  const bad = facts === undefined ? unstorable(value) : unstorableJson(facts, value);
  if (bad) throw new ConnectorError('payload_malformed', `body: ${bad.path || 'payload'} ${bad.message}`);
  return value;
}

/** Parses a provider payload with zod, or ConnectorError('payload_invalid') naming the first bad field. */
export function parsePayload<T extends z.ZodType>(schema: T, payload: unknown, what: string): z.infer<T> {
  const result = schema.safeParse(payload);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new ConnectorError(
      'payload_invalid',
      `${what}: ${issue?.path.join('.') || 'payload'}: ${issue?.message ?? 'invalid'}`,
    );
  }
  return result.data;
}
