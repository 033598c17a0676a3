// Redis, for the rate-limit counters several api processes share. Redis may be away at any moment
// without taking the API with it: start-up waits for it only briefly, the client reconnects in the
// background, and meanwhile requests pass unlimited (@fastify/rate-limit's skipOnError). An outage
// is logged when it begins, then at most once per interval while it lasts, and when it ends.
import { Redis } from 'ioredis';
import type { Logger } from 'pino';

/** How long start-up waits for a first connection before it goes on without Redis. */
const START_WAIT_MS = 2000;
/** While Redis stays unreachable, at most one warning per this interval. */
export const REDIS_REPORT_INTERVAL_MS = 60_000;
/** Reconnection delays grow by this step up to the maximum. */
const RETRY_STEP_MS = 200;
const RETRY_MAX_MS = 2000;

/** The URL without its user name and password, to name the server in logs. */
export function redisLabel(url: string): string {
  const u = new URL(url);
  return `${u.protocol}//${u.host}${u.pathname === '/' ? '' : u.pathname}`;
}

interface OutageReport {
  down: boolean;
  lastWarnedAt: number;
}

/**
 * A client of REDIS_URL, connected if Redis answers within START_WAIT_MS; otherwise a warning is
 * logged and the client keeps trying in the background.
 */
export async function connectRedis(
  url: string,
  logger: Logger,
  reportIntervalMs = REDIS_REPORT_INTERVAL_MS,
): Promise<Redis> {
  const redis = new Redis(url, {
    lazyConnect: true,
    // A command while disconnected fails at once (the request then passes), rather than waiting.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 5000,
    retryStrategy: (attempt) => Math.min(attempt * RETRY_STEP_MS, RETRY_MAX_MS),
  });
  const server = redisLabel(url);
  const report: OutageReport = { down: false, lastWarnedAt: Number.NEGATIVE_INFINITY };
  redis.on('error', (err: NodeJS.ErrnoException) => {
    report.down = true;
    const now = Date.now();
    if (now - report.lastWarnedAt < reportIntervalMs) return;
    report.lastWarnedAt = now;
    logger.warn(
      { redis: server, error: err.code ?? err.message },
      'Redis (REDIS_URL) is unreachable: rate limits are not enforced until it is back; reconnecting',
    );
  });
  redis.on('ready', () => {
    if (!report.down) return;
    report.down = false;
    logger.info({ redis: server }, 'Redis (REDIS_URL) is reachable again: rate limits are enforced');
  });

  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    redis.connect().catch(() => {
      // The 'error' event has said why; the client goes on reconnecting.
    }),
    new Promise((resolve) => {
      timer = setTimeout(resolve, START_WAIT_MS);
    }),
  ]);
  clearTimeout(timer);
  return redis;
}
