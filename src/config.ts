// Environment → validated, frozen Config. A bad value stops start-up with one line naming the
// variable (ConfigError); empty strings count as unset, as .env files and shells often leave them.
import { resolve } from 'node:path';
import ipaddr from 'ipaddr.js';
import { z } from 'zod';
import { DEFAULT_RETRY_SCHEDULE, parseDuration, parseSchedule } from './delivery/retry.ts';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const urlWithProtocols = (protocols: string[]) =>
  z.string().refine(
    (value) => {
      try {
        return protocols.includes(new URL(value).protocol);
      } catch {
        return false;
      }
    },
    `must be a URL starting with ${protocols.map((p) => `${p}//`).join(' or ')}`,
  );

const envSchema = z.object({
  PORT: integer(0, 65535, 3000),
  HOST: z.string().min(1).default('127.0.0.1'),
  INTERCHANGE_WORKER_PORT: z
    .union([z.literal('off'), integer(0, 65535, 9091)], {
      error: 'must be off or an integer from 0 to 65535',
    })
    .default(9091),
  PUBLIC_URL: urlWithProtocols(['http:', 'https:']).optional(),
  DATABASE_URL: urlWithProtocols(['postgres:', 'postgresql:']).optional(),
  REDIS_URL: urlWithProtocols(['redis:', 'rediss:']).optional(),
  KAFKA_BROKERS: z
    .string()
    .regex(/^[^\s,]+:\d+(,[^\s,]+:\d+)*$/, 'must be a comma-separated list of host:port')
    .optional(),
  KAFKA_TOPIC_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,200}$/, 'must be letters, digits, dots, underscores or hyphens')
    .optional(),
  INTERCHANGE_DATA_DIR: z.string().min(1).default('.interchange'),
  INTERCHANGE_SECRET_KEY: z.string().optional(),
  INTERCHANGE_METRICS_TOKEN: z
    .string()
    .min(16, 'must be at least 16 characters')
    .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces (it is sent in an HTTP header)')
    .optional(),
  INTERCHANGE_TOKEN_TTL: integer(60, 86_400, 3600),
  INTERCHANGE_DB_POOL_SIZE: integer(1, 200, 10),
  INTERCHANGE_EGRESS_ALLOW: z
    .string()
    .refine(
      (v) => v.split(',').every((cidr) => isCidr(cidr.trim())),
      'must be a comma-separated list of CIDR ranges, e.g. 127.0.0.1/32,10.0.0.0/8',
    )
    .optional(),
  INTERCHANGE_RETRY_SCHEDULE: z
    .string()
    .refine(
      (v) => parseSchedule(v) !== undefined,
      'must be a comma-separated list of durations, e.g. 5s,5m,30m,2h',
    )
    .default(DEFAULT_RETRY_SCHEDULE),
  INTERCHANGE_DISABLE_AFTER: duration('5d'),
  INTERCHANGE_DELIVERY_TIMEOUT: duration('15s'),
  INTERCHANGE_DELIVERY_LEASE: duration('60s'),
  INTERCHANGE_REQUEST_TIMEOUT: duration('30s'),
  INTERCHANGE_HEADERS_TIMEOUT: duration('10s'),
  INTERCHANGE_KEEP_ALIVE_TIMEOUT: duration('72s'),
  INTERCHANGE_MAX_CONNECTIONS: z.coerce.number().int().min(1).max(1_000_000).default(1000),
  INTERCHANGE_TRUST_PROXY: z
    .string()
    .refine(
      (v) => v.split(',').every((entry) => isAddressOrCidr(entry.trim())),
      'must be a comma-separated list of addresses or CIDR ranges of your proxies, e.g. 10.0.0.0/8',
    )
    .optional(),
  INTERCHANGE_AUTH_FAILURE_WINDOW: duration('1m'),
  INTERCHANGE_AUTH_FAILURES_PER_ADDRESS: z.coerce.number().int().min(1).max(1_000_000).default(30),
  INTERCHANGE_AUTH_FAILURES_PER_CLIENT: z.coerce.number().int().min(1).max(1_000_000).default(20),
  INTERCHANGE_INGEST_QUEUE_LIMIT: z.coerce.number().int().min(1).max(1_000_000).default(1000),
  INTERCHANGE_INGEST_QUEUE_BYTES: z
    .string()
    .refine((v) => parseSize(v) !== undefined, 'must be a size such as 512KB, 64MB or 1GB')
    .default('64MB'),
  INTERCHANGE_MAX_EVENT_LOOP_DELAY: duration('1s'),
  INTERCHANGE_MAX_DESTINATIONS: z.coerce.number().int().min(1).max(100_000).default(100),
  LOG_LEVEL: z.enum(LOG_LEVELS).default('info'),
});

/** A whole number in decimal digits within [min, max]; the error says the range, never "NaN". */
function integer(min: number, max: number, fallback: number) {
  return z
    .string()
    .refine((v) => {
      const n = Number(v);
      return /^-?\d+$/.test(v) && n >= min && n <= max;
    }, `must be an integer from ${min} to ${max}`)
    .transform(Number)
    .default(fallback);
}

function duration(fallback: string) {
  return z
    .string()
    .refine((v) => (parseDuration(v) ?? 0) > 0, 'must be a duration such as 250ms, 15s, 5m, 2h or 5d')
    .default(fallback);
}

const SIZE_UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };

/** "64MB" → 67108864 (binary units: 1 KB is 1024 bytes); undefined when not a size. */
export function parseSize(text: string): number | undefined {
  const match = /^(\d+)\s*(b|kb|mb|gb)?$/i.exec(text.trim());
  if (!match) return undefined;
  return Number(match[1]) * (SIZE_UNITS[(match[2] ?? 'b').toLowerCase()] as number);
}

function isAddressOrCidr(value: string): boolean {
  return ipaddr.isValid(value) || isCidr(value);
}

function isCidr(value: string): boolean {
  try {
    ipaddr.parseCIDR(value);
    return true;
  } catch {
    return false;
  }
}

export type Config = Readonly<{
  port: number;
  host: string;
  /** Port of the worker role's health and metrics listener (on HOST); undefined: none. */
  workerPort: number | undefined;
  publicUrl: string;
  /** The `iss` of access tokens: PUBLIC_URL when set, else a constant, so a restart on another port keeps tokens valid. */
  tokenIssuer: string;
  databaseUrl: string | undefined;
  redisUrl: string | undefined;
  kafkaBrokers: readonly string[];
  /** Put before every Kafka topic name, so several environments can share a cluster (default none). */
  kafkaTopicPrefix: string;
  dataDir: string;
  /** Raw INTERCHANGE_SECRET_KEY: one key, or several comma-separated (the first encrypts). */
  secretKey: string | undefined;
  /** Bearer token GET /metrics requires; unset: /metrics is open (keep it on the internal network). */
  metricsToken: string | undefined;
  tokenTtlSeconds: number;
  dbPoolSize: number;
  logLevel: (typeof LOG_LEVELS)[number];
  /** Delays between delivery attempts, ms (one entry per retry). */
  retrySchedule: readonly number[];
  /** A destination failing continuously this long (ms) is disabled. */
  disableAfterMs: number;
  /** Time limit of one delivery request, ms. */
  deliveryTimeoutMs: number;
  /** How long a worker holds a claimed delivery before another may take it over, ms. */
  deliveryLeaseMs: number;
  /** Destinations (webhook, Mixpanel... installations not uninstalled) one organization may have. */
  maxDestinations: number;
  /** CIDR ranges outbound HTTP may reach although the egress guard refuses them by default. */
  egressAllow: readonly string[];
  /** Time limit to receive a whole request, body included, ms. */
  requestTimeoutMs: number;
  /** Time limit to receive a request's headers (from the connection's opening, for its first request), ms. */
  headersTimeoutMs: number;
  /** How long a connection may stay open between requests, ms. */
  keepAliveTimeoutMs: number;
  /** Connections the api role holds open at once; more are closed as they arrive. */
  maxConnections: number;
  /** Addresses or CIDR ranges of reverse proxies whose X-Forwarded-For names the client. */
  trustProxy: readonly string[];
  /** The window failed authentications are counted in, ms. */
  authFailureWindowMs: number;
  /** Failed authentications from one address in a window before its next attempts get 429. */
  authFailuresPerAddress: number;
  /** Failed authentications of one client id in a window before its next token requests get 429. */
  authFailuresPerClient: number;
  /** Inbound requests waiting to be committed before more are refused with 503. */
  ingestQueueLimit: number;
  /** Bytes of webhook bodies waiting to be committed before more are refused with 503. */
  ingestQueueBytes: number;
  /** Mean event-loop delay over which webhooks are refused with 503, ms. */
  maxEventLoopDelayMs: number;
  /** Embedded mode: PGlite in the data dir, generated secret key, credentials written to disk. */
  embedded: boolean;
}>;

/** Keys whose values a ConfigError never repeats (secrets; URLs carry passwords). */
const UNECHOED = /^(INTERCHANGE_SECRET_KEY|INTERCHANGE_METRICS_TOKEN|.*_URL)$/;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const present = Object.fromEntries(
    Object.keys(envSchema.shape).flatMap((key) => {
      const value = env[key]?.trim();
      return value ? [[key, value]] : [];
    }),
  );
  const parsed = envSchema.safeParse(present);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const key = String(issue?.path[0] ?? 'environment');
    const got = key in present ? ` (got ${JSON.stringify(present[key])})` : '';
    const shown = UNECHOED.test(key) ? '' : got;
    throw new ConfigError(`invalid configuration: ${key} ${issue?.message ?? 'is invalid'}${shown}`);
  }
  const e = parsed.data;
  if (
    (parseDuration(e.INTERCHANGE_DELIVERY_LEASE) as number) <=
    (parseDuration(e.INTERCHANGE_DELIVERY_TIMEOUT) as number)
  ) {
    throw new ConfigError(
      'invalid configuration: INTERCHANGE_DELIVERY_LEASE must be longer than INTERCHANGE_DELIVERY_TIMEOUT',
    );
  }
  if (
    (parseDuration(e.INTERCHANGE_HEADERS_TIMEOUT) as number) >
    (parseDuration(e.INTERCHANGE_REQUEST_TIMEOUT) as number)
  ) {
    throw new ConfigError(
      'invalid configuration: INTERCHANGE_HEADERS_TIMEOUT must not be longer than INTERCHANGE_REQUEST_TIMEOUT',
    );
  }
  if (e.DATABASE_URL && !e.INTERCHANGE_SECRET_KEY) {
    throw new ConfigError(
      'invalid configuration: INTERCHANGE_SECRET_KEY is required when DATABASE_URL is set ' +
        '(every process sharing the database must share the key; generate one with `interchange secrets generate-key`)',
    );
  }
  return Object.freeze({
    port: e.PORT,
    host: e.HOST,
    workerPort: e.INTERCHANGE_WORKER_PORT === 'off' ? undefined : e.INTERCHANGE_WORKER_PORT,
    publicUrl: (e.PUBLIC_URL ?? `http://localhost:${e.PORT}`).replace(/\/+$/, ''),
    tokenIssuer: e.PUBLIC_URL ? e.PUBLIC_URL.replace(/\/+$/, '') : 'interchange',
    databaseUrl: e.DATABASE_URL,
    redisUrl: e.REDIS_URL,
    kafkaBrokers: Object.freeze(e.KAFKA_BROKERS ? e.KAFKA_BROKERS.split(',') : []),
    kafkaTopicPrefix: e.KAFKA_TOPIC_PREFIX ?? '',
    dataDir: resolve(e.INTERCHANGE_DATA_DIR),
    secretKey: e.INTERCHANGE_SECRET_KEY,
    metricsToken: e.INTERCHANGE_METRICS_TOKEN,
    tokenTtlSeconds: e.INTERCHANGE_TOKEN_TTL,
    dbPoolSize: e.INTERCHANGE_DB_POOL_SIZE,
    logLevel: e.LOG_LEVEL,
    retrySchedule: Object.freeze(parseSchedule(e.INTERCHANGE_RETRY_SCHEDULE) as number[]),
    disableAfterMs: parseDuration(e.INTERCHANGE_DISABLE_AFTER) as number,
    deliveryTimeoutMs: parseDuration(e.INTERCHANGE_DELIVERY_TIMEOUT) as number,
    deliveryLeaseMs: parseDuration(e.INTERCHANGE_DELIVERY_LEASE) as number,
    maxDestinations: e.INTERCHANGE_MAX_DESTINATIONS,
    egressAllow: Object.freeze(
      e.INTERCHANGE_EGRESS_ALLOW ? e.INTERCHANGE_EGRESS_ALLOW.split(',').map((c) => c.trim()) : [],
    ),
    requestTimeoutMs: parseDuration(e.INTERCHANGE_REQUEST_TIMEOUT) as number,
    headersTimeoutMs: parseDuration(e.INTERCHANGE_HEADERS_TIMEOUT) as number,
    keepAliveTimeoutMs: parseDuration(e.INTERCHANGE_KEEP_ALIVE_TIMEOUT) as number,
    maxConnections: e.INTERCHANGE_MAX_CONNECTIONS,
    trustProxy: Object.freeze(
      e.INTERCHANGE_TRUST_PROXY ? e.INTERCHANGE_TRUST_PROXY.split(',').map((c) => c.trim()) : [],
    ),
    authFailureWindowMs: parseDuration(e.INTERCHANGE_AUTH_FAILURE_WINDOW) as number,
    authFailuresPerAddress: e.INTERCHANGE_AUTH_FAILURES_PER_ADDRESS,
    authFailuresPerClient: e.INTERCHANGE_AUTH_FAILURES_PER_CLIENT,
    ingestQueueLimit: e.INTERCHANGE_INGEST_QUEUE_LIMIT,
    ingestQueueBytes: parseSize(e.INTERCHANGE_INGEST_QUEUE_BYTES) as number,
    maxEventLoopDelayMs: parseDuration(e.INTERCHANGE_MAX_EVENT_LOOP_DELAY) as number,
    embedded: !e.DATABASE_URL,
  });
}

/** The variables loadConfig reads, for `--help` and docs. */
export const CONFIG_KEYS = Object.keys(envSchema.shape);
