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
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  HOST: z.string().min(1).default('127.0.0.1'),
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
  INTERCHANGE_TOKEN_TTL: z.coerce.number().int().min(60).max(86_400).default(3600),
  INTERCHANGE_DB_POOL_SIZE: z.coerce.number().int().min(1).max(200).default(10),
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
  INTERCHANGE_MAX_DESTINATIONS: z.coerce.number().int().min(1).max(100_000).default(100),
  LOG_LEVEL: z.enum(LOG_LEVELS).default('info'),
});

function duration(fallback: string) {
  return z
    .string()
    .refine((v) => (parseDuration(v) ?? 0) > 0, 'must be a duration such as 250ms, 15s, 5m, 2h or 5d')
    .default(fallback);
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
  if (e.DATABASE_URL && !e.INTERCHANGE_SECRET_KEY) {
    throw new ConfigError(
      'invalid configuration: INTERCHANGE_SECRET_KEY is required when DATABASE_URL is set ' +
        '(every process sharing the database must share the key; generate one with `interchange secrets generate-key`)',
    );
  }
  return Object.freeze({
    port: e.PORT,
    host: e.HOST,
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
    embedded: !e.DATABASE_URL,
  });
}

/** The variables loadConfig reads, for `--help` and docs. */
export const CONFIG_KEYS = Object.keys(envSchema.shape);
