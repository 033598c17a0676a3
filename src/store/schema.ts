// The database schema, one for PGlite and PostgreSQL. Migrations in ./migrations are generated
// from this file by `npm run db:generate` (drizzle-kit) and committed; never edit them by hand.
import { sql } from 'drizzle-orm';
import {
  bigint,
  boolean,
  check,
  customType,
  index,
  integer,
  json,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
} from 'drizzle-orm/pg-core';

const createdAt = () => timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow();
const updatedAt = () => timestamp('updated_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow();

export const organizations = pgTable('organizations', {
  id: text('id').primaryKey(),
  name: text('name').notNull(),
  createdAt: createdAt(),
  updatedAt: updatedAt(),
});

export const apiClients = pgTable(
  'api_clients',
  {
    id: text('id').primaryKey(),
    /** Null for admin clients, which belong to the installation of Interchange, not to a tenant. */
    organizationId: text('organization_id').references(() => organizations.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    /** SHA-256 of the generated secret (32 random bytes: no slow hash needed against guessing). */
    secretHash: text('secret_hash').notNull(),
    scopes: text('scopes').array().notNull(),
    tier: text('tier').notNull(),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    lastUsedAt: timestamp('last_used_at', { withTimezone: true, mode: 'date' }),
  },
  (t) => [index('api_clients_organization_idx').on(t.organizationId, t.id)],
);

/** JWT signing keys; `secret` is sealed by the secret box. */
export const signingKeys = pgTable('signing_keys', {
  id: text('id').primaryKey(),
  secret: text('secret').notNull(),
  createdAt: createdAt(),
});

export const users = pgTable(
  'users',
  {
    id: text('id').primaryKey(),
    organizationId: text('organization_id')
      .notNull()
      .references(() => organizations.id, { onDelete: 'cascade' }),
    email: text('email'),
    name: text('name'),
    traits: jsonb('traits').$type<Record<string, unknown>>().notNull().default(sql`'{}'::jsonb`),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    index('users_organization_idx').on(t.organizationId, t.id),
    index('users_email_idx').on(t.organizationId, t.email),
  ],
);

/**
 * A user's id in one account of an external platform: ids are per account (a WooCommerce store's
 * customer 12 is not another store's), so unique per organization, platform and account. The
 * account is the one the hub names for the connector's webhooks (see `account` in
 * src/connectors/sdk.ts), or '' when none was given: such an id stands for every account of the
 * platform that has no id of its own for it.
 */
export const userExternalIds = pgTable(
  'user_external_ids',
  {
    userId: text('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    organizationId: text('organization_id')
      .notNull()
      .references(() => organizations.id, { onDelete: 'cascade' }),
    platform: text('platform').notNull(),
    account: text('account').notNull().default(''),
    externalId: text('external_id').notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.userId, t.platform, t.account] }),
    // Finds a platform id's users in every account, or in one account and the '' one.
    uniqueIndex('user_external_ids_lookup_idx').on(t.organizationId, t.platform, t.externalId, t.account),
  ],
);

/** A connector configured for one organization: a Shopify shop, a Stripe account, a webhook endpoint. */
export const installations = pgTable(
  'installations',
  {
    id: text('id').primaryKey(),
    organizationId: text('organization_id')
      .notNull()
      .references(() => organizations.id, { onDelete: 'cascade' }),
    connectorId: text('connector_id').notNull(),
    name: text('name').notNull(),
    config: jsonb('config').$type<Record<string, unknown>>().notNull(),
    /** The connector's secrets as one JSON object sealed by the secret box; null when none is set. */
    secrets: text('secrets'),
    /** Names of the secrets that are set, so the API can show them without decrypting. */
    secretKeys: text('secret_keys').array().notNull().default(sql`'{}'::text[]`),
    /** For one-URL-for-all-accounts providers (POST /hooks/shopify): the account, e.g. the shop domain. */
    routeKey: text('route_key'),
    status: text('status').$type<'active' | 'disabled' | 'uninstalled'>().notNull().default('active'),
    /** Destinations only: what they receive and how (see src/delivery/subscription.ts). */
    destination: jsonb('destination').$type<DestinationSettings>(),
    /** Why a destination was disabled (`gone`: it answered 410; `failing`: it failed for too long). */
    disabledReason: text('disabled_reason'),
    disabledAt: timestamp('disabled_at', { withTimezone: true, mode: 'date' }),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    uninstalledAt: timestamp('uninstalled_at', { withTimezone: true, mode: 'date' }),
  },
  (t) => [
    index('installations_organization_idx').on(t.organizationId, t.id),
    // POST /hooks/<connector> finds the candidates by account; several organizations may install
    // the same account (each with its own app secret), the signature picks the one (src/ingest).
    index('installations_route_idx')
      .on(t.connectorId, t.routeKey)
      .where(sql`status = 'active' and route_key is not null`),
    // Within one organization, one active installation per connector and account (409 otherwise).
    uniqueIndex('installations_org_route_idx')
      .on(t.organizationId, t.connectorId, t.routeKey)
      .where(sql`status = 'active' and route_key is not null`),
  ],
);

/** A destination's subscription and delivery options, as stored. */
export interface DestinationSettings {
  /** Event type patterns: `order.created`, `order.*`, `*`. */
  eventTypes: string[];
  /** A filter on the event (see src/delivery/filter.ts), or null for every event of those types. */
  filter: Record<string, unknown> | null;
  /** Deliver strictly in order per partition key, holding later events while an earlier one retries. */
  ordered: boolean;
  /** Requests per second, enforced across workers; null for no limit. */
  rateLimit: number | null;
}

const bytea = customType<{ data: Buffer; driverData: Buffer | Uint8Array }>({
  dataType: () => 'bytea',
  fromDriver: (value) => Buffer.from(value),
});

/** Every verified inbound request as received (headers minus credentials, the raw body), and what became of it. */
export const inboundRequests = pgTable(
  'inbound_requests',
  {
    id: text('id').primaryKey(),
    organizationId: text('organization_id')
      .notNull()
      .references(() => organizations.id, { onDelete: 'cascade' }),
    installationId: text('installation_id'),
    receivedAt: timestamp('received_at', { withTimezone: true, mode: 'date' }).notNull(),
    method: text('method').notNull(),
    path: text('path').notNull(),
    headers: jsonb('headers').$type<Record<string, string>>().notNull(),
    /** Null once redacted, or for duplicates (the first delivery's body is kept). */
    body: bytea('body'),
    bodySize: integer('body_size').notNull(),
    status: text('status').$type<'accepted' | 'duplicate' | 'rejected'>().notNull(),
    errorCode: text('error_code'),
    dedupeKey: text('dedupe_key'),
    eventCount: integer('event_count').notNull().default(0),
  },
  (t) => [
    index('inbound_requests_installation_idx').on(t.organizationId, t.installationId, t.id),
    // The refused requests alone (few among many): `GET /v1/installations/{id}/requests?status=rejected`
    // reads them without walking every request of the installation. Accepted and duplicate rows,
    // nearly all of them, get no entry: the ingest writes no more index entries than before.
    index('inbound_requests_rejected_idx')
      .on(t.organizationId, t.installationId, t.id)
      .where(sql`${t.status} = 'rejected'`),
  ],
);

/** De-duplication keys of accepted requests: (scope = installation id, or `api` for custom events). */
export const dedupeKeys = pgTable(
  'dedupe_keys',
  {
    organizationId: text('organization_id')
      .notNull()
      .references(() => organizations.id, { onDelete: 'cascade' }),
    scope: text('scope').notNull(),
    key: text('key').notNull(),
    requestId: text('request_id'),
    /**
     * The events the key's first delivery made, in the order it answered them: a duplicate is
     * answered from this row alone (looking them up by `events.raw_request_id`, which has no
     * index, read every event of the organization).
     */
    eventIds: text('event_ids').array().notNull().default([]),
    createdAt: createdAt(),
  },
  (t) => [primaryKey({ columns: [t.organizationId, t.scope, t.key] })],
);

/** Canonical events (CloudEvents envelope fields as columns). The log below orders them. */
export const events = pgTable(
  'events',
  {
    id: text('id').primaryKey(),
    organizationId: text('organization_id')
      .notNull()
      .references(() => organizations.id, { onDelete: 'cascade' }),
    installationId: text('installation_id'),
    source: text('source').notNull(),
    type: text('type').notNull(),
    subject: text('subject'),
    time: timestamp('time', { withTimezone: true, mode: 'date' }).notNull(),
    partitionKey: text('partition_key').notNull(),
    topic: text('topic').notNull(),
    userId: text('user_id'),
    /**
     * `json`, not `jsonb`: stored as the text the hub wrote (it is always JSON.stringify output),
     * checked but not converted on the way in nor rebuilt on the way out. Only a privacy redaction
     * looks inside it (`->>`, which `json` has too).
     */
    data: json('data').$type<unknown>().notNull(),
    rawRequestId: text('raw_request_id'),
    createdAt: createdAt(),
  },
  (t) => [
    index('events_organization_idx').on(t.organizationId, t.id),
    index('events_type_idx').on(t.organizationId, t.type, t.id),
    index('events_installation_idx').on(t.organizationId, t.installationId, t.id),
    // A time range (`GET /v1/events?since=…&until=…`) is listed in this order: read along it, a
    // page costs its own rows, however many events lie outside the range.
    index('events_time_idx').on(t.organizationId, t.time, t.id),
    // The events of one subject, newest last: an order's latest event (whose customer a refund
    // takes) and `?subject=` listings read only that subject's events. Events without a subject
    // (most custom ones) get no entry.
    index('events_subject_idx').on(t.organizationId, t.subject, t.id).where(sql`${t.subject} is not null`),
  ],
);

/** The event log: topics split into partitions, each an ordered sequence of offsets. */
export const logEntries = pgTable(
  'log_entries',
  {
    topic: text('topic').notNull(),
    partition: integer('partition').notNull(),
    offset: bigint('offset', { mode: 'number' }).notNull(),
    eventId: text('event_id').notNull(),
    replay: boolean('replay').notNull().default(false),
    appendedAt: createdAt(),
  },
  (t) => [primaryKey({ columns: [t.topic, t.partition, t.offset] })],
);

/**
 * The next offset of each partition. Appending takes this row's lock until commit, so offsets of
 * one partition become visible in order: a reader can never pass a row that commits late.
 */
export const logPartitions = pgTable(
  'log_partitions',
  {
    topic: text('topic').notNull(),
    partition: integer('partition').notNull(),
    nextOffset: bigint('next_offset', { mode: 'number' }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.topic, t.partition] })],
);

/** Consumer groups: the committed offset of each partition, and which member holds it until when. */
export const consumerOffsets = pgTable(
  'consumer_offsets',
  {
    groupId: text('group_id').notNull(),
    topic: text('topic').notNull(),
    partition: integer('partition').notNull(),
    /** The next offset to read. */
    committed: bigint('committed', { mode: 'number' }).notNull().default(0),
    owner: text('owner'),
    leaseUntil: timestamp('lease_until', { withTimezone: true, mode: 'date' }),
  },
  (t) => [primaryKey({ columns: [t.groupId, t.topic, t.partition] })],
);

export const consumerMembers = pgTable(
  'consumer_members',
  {
    groupId: text('group_id').notNull(),
    memberId: text('member_id').notNull(),
    heartbeatAt: timestamp('heartbeat_at', { withTimezone: true, mode: 'date' }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.groupId, t.memberId] })],
);

export type DeliveryStatus = 'pending' | 'delivering' | 'succeeded' | 'failed' | 'dead';

/** One event for one destination: the unit of delivery, retried until it succeeds or is dead. */
export const deliveries = pgTable(
  'deliveries',
  {
    id: text('id').primaryKey(),
    /** Creation order; ordered destinations deliver a key's deliveries by it. */
    seq: bigint('seq', { mode: 'number' }).generatedAlwaysAsIdentity(),
    /**
     * No foreign key: the destination's (`installation_id`) removes the deliveries with the
     * destination, and so with its organization; a second key's check cost each row written a
     * lookup of the organization's row (with write-once delivery, ~4 µs of the settle statement's
     * ~50 per delivery).
     */
    organizationId: text('organization_id').notNull(),
    /**
     * The event delivered. No foreign key: the router creates deliveries only for events it read
     * from the log, and events are removed only with their organization, which removes its
     * deliveries too. The key's check locked the event's row (FOR KEY SHARE) for every delivery
     * created: a WAL record and a dirtied page of the events table each, ~27 µs in the backlog
     * benchmark, more than a tenth of the database's time per delivery.
     */
    eventId: text('event_id').notNull(),
    installationId: text('installation_id')
      .notNull()
      .references(() => installations.id, { onDelete: 'cascade' }),
    /** The event's partition key when the destination is ordered, else null. */
    orderKey: text('order_key'),
    status: text('status').$type<DeliveryStatus>().notNull().default('pending'),
    /** Attempts ever made (numbering). */
    attempts: integer('attempts').notNull().default(0),
    /** Attempts since the delivery was last queued (position in the retry schedule). */
    roundAttempts: integer('round_attempts').notNull().default(0),
    nextAttemptAt: timestamp('next_attempt_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
    leaseOwner: text('lease_owner'),
    leaseUntil: timestamp('lease_until', { withTimezone: true, mode: 'date' }),
    lastStatusCode: integer('last_status_code'),
    lastError: text('last_error'),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    deliveredAt: timestamp('delivered_at', { withTimezone: true, mode: 'date' }),
  },
  (t) => [
    // Also serves every lookup by event (the API's filter, the events' cascade): each index more
    // is written three times per delivery (insert, claim, settle).
    uniqueIndex('deliveries_event_destination_idx').on(t.eventId, t.installationId),
    index('deliveries_due_idx').on(t.nextAttemptAt).where(sql`status in ('pending', 'failed')`),
    // One destination's waiting deliveries in order (`deliveries_due_for`, for the claims that go
    // destination by destination); written only for deliveries that wait, not for those handed
    // straight to a sender. The predicate names the other statuses on purpose: then the index
    // above cannot serve that function's query (`status not in (...)` does not imply its
    // predicate), and the plan cannot wander off along it through other destinations' backlogs.
    index('deliveries_destination_due_idx')
      .on(t.installationId, t.nextAttemptAt)
      .where(sql`status not in ('succeeded', 'dead', 'delivering')`),
    index('deliveries_leased_idx').on(t.leaseUntil).where(sql`status = 'delivering'`),
    index('deliveries_order_idx')
      .on(t.installationId, t.orderKey, t.seq)
      .where(sql`order_key is not null and status in ('pending', 'delivering', 'failed')`),
    index('deliveries_organization_idx').on(t.organizationId, t.id),
    index('deliveries_destination_idx').on(t.organizationId, t.installationId, t.id),
    index('deliveries_stats_idx').on(t.installationId, t.status),
  ],
);

/** Every attempt of a delivery, as it went. */
export const deliveryAttempts = pgTable(
  'delivery_attempts',
  {
    id: text('id').primaryKey(),
    /**
     * No foreign key: a trigger on `deliveries` removes a delivery's attempts with it (migration
     * 0008). The key's check locked the delivery's row (FOR KEY SHARE) for every attempt recorded,
     * in the statement that had just inserted it (~4 µs of the settle statement's ~50 per delivery).
     */
    deliveryId: text('delivery_id').notNull(),
    organizationId: text('organization_id').notNull(),
    attempt: integer('attempt').notNull(),
    startedAt: timestamp('started_at', { withTimezone: true, mode: 'date' }).notNull(),
    durationMs: integer('duration_ms').notNull(),
    outcome: text('outcome').$type<'succeeded' | 'retry' | 'failed'>().notNull(),
    statusCode: integer('status_code'),
    error: text('error'),
    /** The first 4 KiB of the response body. */
    response: text('response'),
    /** The worker process that made the attempt (host:pid:nonce), for operators. */
    worker: text('worker'),
  },
  (t) => [index('delivery_attempts_delivery_idx').on(t.deliveryId, t.attempt)],
);

/** A destination's live sending state, shared by every worker. */
export const destinationState = pgTable('destination_state', {
  installationId: text('installation_id')
    .primaryKey()
    .references(() => installations.id, { onDelete: 'cascade' }),
  /** Rate limit (GCRA): the theoretical arrival time of the next request. */
  tat: timestamp('tat', { withTimezone: true, mode: 'date' }),
  /** No request before this (429, 502, 504 and their Retry-After). */
  throttledUntil: timestamp('throttled_until', { withTimezone: true, mode: 'date' }),
  /** Start of the current run of failures; null after a success. */
  failingSince: timestamp('failing_since', { withTimezone: true, mode: 'date' }),
});

/**
 * The key every process seals new secrets with (one row): the same for all of them, whatever order
 * their INTERCHANGE_SECRET_KEY lists keys in, so a process that has only the old key can read what
 * another seals. Set when the first process starts; moved by `secrets rotate` alone.
 */
export const secretKeyState = pgTable(
  'secret_key_state',
  {
    id: boolean('id').primaryKey().default(true),
    activeKeyId: text('active_key_id').notNull(),
    changedAt: timestamp('changed_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  },
  (t) => [check('secret_key_state_one_row', sql`${t.id}`)],
);

/**
 * The running processes and the keys they hold, each refreshing its row every few seconds:
 * `secrets rotate` refuses while one of them lacks the new key, and waits until all seal with it.
 */
export const secretKeyHolders = pgTable('secret_key_holders', {
  processId: text('process_id').primaryKey(),
  host: text('host').notNull(),
  pid: integer('pid').notNull(),
  /** The ids of the keys it holds, its INTERCHANGE_SECRET_KEY's order. */
  keyIds: text('key_ids').array().notNull(),
  /** The key it seals with now; null when it lacks the database's active key. */
  sealingKeyId: text('sealing_key_id'),
  startedAt: timestamp('started_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  heartbeatAt: timestamp('heartbeat_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
});

/** Every column sealed by the secret box, with the AAD each value is bound to; `secrets rotate` walks this list. */
export const ENCRYPTED_COLUMNS = [
  { table: 'signing_keys', column: 'secret', idColumn: 'id' },
  { table: 'installations', column: 'secrets', idColumn: 'id' },
] as const;

export const schema = {
  organizations,
  apiClients,
  signingKeys,
  users,
  userExternalIds,
  installations,
  inboundRequests,
  dedupeKeys,
  events,
  logEntries,
  logPartitions,
  consumerOffsets,
  consumerMembers,
  deliveries,
  deliveryAttempts,
  destinationState,
  secretKeyState,
  secretKeyHolders,
};
