// Composition root: builds the store, secret box, services and HTTP server from a Config.
import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import pino from 'pino';
import type { Config } from './config.ts';
import { type KeyWatch, keyUnavailableReporter, startKeyWatch } from './crypto/key-watch.ts';
import { loadSecretBox } from './crypto/keyring.ts';
import type { SecretBox } from './crypto/secret-box.ts';
import { buildServer } from './http/server.ts';
import { buildWorkerServer } from './http/worker-server.ts';
import { fdDestination, type LogDestination, loggerOptions } from './observability/logger.ts';
import { createMetrics, type Metrics } from './observability/metrics.ts';
import { connectRedis } from './redis.ts';
import { createServices, openEventLog, type Services } from './services.ts';
import { openStore, type Store, type StoreOptions } from './store/db.ts';
import { migrate } from './store/migrate.ts';
import { type AdminCredentials, bootstrap } from './tenancy/bootstrap.ts';
import { startWorker, type Worker } from './worker.ts';

export const VERSION: string = JSON.parse(
  readFileSync(new URL('../package.json', import.meta.url), 'utf8'),
).version;

export function storeOptions(config: Config): StoreOptions {
  return config.databaseUrl
    ? { kind: 'postgres', url: config.databaseUrl, poolSize: config.dbPoolSize }
    : { kind: 'pglite', dataDir: config.dataDir };
}

/** Opens the store and brings its schema up to date. */
export async function openMigratedStore(config: Config, options = storeOptions(config)): Promise<Store> {
  const store = await openStore(options);
  try {
    await migrate(store);
  } catch (err) {
    await store.close();
    throw err;
  }
  return store;
}

export interface AppOptions {
  /** Overrides where the data lives (tests use an in-memory PGlite or a fresh database). */
  store?: StoreOptions;
  logDestination?: LogDestination;
}

export interface App {
  config: Config;
  store: Store;
  box: SecretBox;
  services: Services;
  server: Awaited<ReturnType<typeof buildServer>>;
  /** Set on the start that created the first admin client: shown once, never again. */
  adminCredentials: AdminCredentials | undefined;
  metrics: Metrics;
  /** Starts the worker role (event consumers, delivery) in this process; `close` stops it. */
  startWorker(): Worker;
  /**
   * Opens the worker role's health and metrics listener (/healthz, /readyz, /metrics) on `port`
   * and `host`, and answers its URL; `close` closes it.
   */
  listenWorkerMonitoring(port: number, host: string): Promise<string>;
  close(): Promise<void>;
}

export async function createApp(config: Config, options: AppOptions = {}): Promise<App> {
  const logger = pino(loggerOptions(config.logLevel), options.logDestination ?? fdDestination(1));
  const box = loadSecretBox(config, { onKeyUnavailable: keyUnavailableReporter(logger) });
  const store = await openMigratedStore(config, options.store);
  let keys: KeyWatch | undefined;
  let redis: Redis | undefined;
  let worker: Worker | undefined;
  let monitoring: FastifyInstance | undefined;
  try {
    // Before anything is sealed: the box seals with the key the database says every process uses.
    keys = await startKeyWatch({ db: store.db, box, logger });
    const adminCredentials = await bootstrap(store, box);
    const services = createServices(config, store, box, logger, {
      log: await openEventLog(config, store, logger),
    });
    await services.tokens.load();
    if (config.redisUrl) redis = await connectRedis(config.redisUrl, logger);
    const metrics = createMetrics();
    const server = await buildServer({
      config,
      store,
      services,
      metrics,
      redis,
      logger,
      version: VERSION,
    });
    return {
      config,
      store,
      box,
      services,
      server,
      adminCredentials,
      metrics,
      startWorker() {
        worker ??= startWorker({ config, store, services, metrics, logger });
        return worker;
      },
      async listenWorkerMonitoring(port, host) {
        monitoring ??= await buildWorkerServer({
          store,
          metrics,
          logger,
          metricsToken: config.metricsToken,
        });
        return monitoring.listen({ port, host });
      },
      async close() {
        await monitoring?.close();
        await server.close();
        await worker?.stop();
        await services.committer.drain();
        await services.log.close();
        redis?.disconnect();
        await services.egress.close();
        await keys?.stop();
        await store.close();
      },
    };
  } catch (err) {
    redis?.disconnect();
    await keys?.stop();
    await store.close();
    throw err;
  }
}
