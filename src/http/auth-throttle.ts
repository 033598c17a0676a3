// Throttling of failed authentications: a wrong client secret at /oauth/token, a /v1 request with
// no token or one this hub never issued. After `perAddress` failures from one address, or
// `perClient` against one client id, within the window, further attempts get 429 with
// Retry-After until the window ends. The counts are @fastify/rate-limit's (its `createRateLimit`,
// which counts only when told to): in Redis with REDIS_URL, so every api process shares them,
// else in this process's memory.
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Redis } from 'ioredis';

declare module 'fastify' {
  interface FastifyInstance {
    authThrottle: AuthThrottle;
  }
}

export interface AuthThrottleOptions {
  redis?: Redis | undefined;
  windowMs: number;
  perAddress: number;
  perClient: number;
}

export interface AuthThrottle {
  /**
   * Seconds until the request's address, and the client id it names if any, may try again; 0 when
   * neither has used its failures of the window. Counts nothing.
   */
  waitFor(req: FastifyRequest, clientId?: string): Promise<number>;
  /** Counts a failed attempt; the seconds to wait when this failure went over a budget, else 0. */
  recordFailure(req: FastifyRequest, clientId?: string): Promise<number>;
}

type Limiter = ReturnType<FastifyInstance['createRateLimit']>;
type Outcome = Awaited<ReturnType<Limiter>>;

/** One counter per key, in a scope of its own (each registration has its own store). */
async function failureCounter(
  app: FastifyInstance,
  settings: { redis: Redis | undefined; windowMs: number; max: number; nameSpace: string },
  keyGenerator?: (req: FastifyRequest) => string,
): Promise<Limiter> {
  let limiter: Limiter | undefined;
  await app.register(async (scope) => {
    await scope.register(rateLimit, {
      global: false,
      max: settings.max,
      timeWindow: settings.windowMs,
      redis: settings.redis,
      nameSpace: settings.nameSpace,
      // A Redis outage must not lock everybody out: attempts pass uncounted.
      skipOnError: true,
      // Without one, the address, with IPv6 addresses grouped by /64 (one host's usual share).
      ...(keyGenerator ? { keyGenerator } : {}),
    });
    limiter = scope.createRateLimit();
  });
  if (!limiter) throw new Error('the failure counter was not registered');
  return limiter;
}

/** Seconds to wait when `outcome` shows the budget used up (`spent`: counted ones included). */
function secondsToWait(outcome: Outcome, spent: (o: Extract<Outcome, { isAllowed: false }>) => boolean) {
  return !outcome.isAllowed && spent(outcome) ? Math.max(1, outcome.ttlInSeconds) : 0;
}

export async function createAuthThrottle(
  app: FastifyInstance,
  options: AuthThrottleOptions,
): Promise<AuthThrottle> {
  const settings = { redis: options.redis, windowMs: options.windowMs };
  const byAddress = await failureCounter(app, {
    ...settings,
    max: options.perAddress,
    nameSpace: 'interchange:auth-failures:address:',
  });
  // The limiter takes only the request: the client id it is asked about travels beside it.
  const clientIdOf = new WeakMap<FastifyRequest, string>();
  const byClient = await failureCounter(
    app,
    { ...settings, max: options.perClient, nameSpace: 'interchange:auth-failures:client:' },
    (req) => clientIdOf.get(req) ?? '',
  );

  async function each(
    req: FastifyRequest,
    clientId: string | undefined,
    check: (limiter: Limiter) => Promise<number>,
  ): Promise<number> {
    let wait = await check(byAddress);
    if (clientId !== undefined) {
      clientIdOf.set(req, clientId);
      wait = Math.max(wait, await check(byClient));
    }
    return wait;
  }

  return {
    waitFor: (req, clientId) =>
      each(req, clientId, async (limiter) =>
        // The failures so far have used the whole budget.
        secondsToWait(await limiter(req, { increment: false }), (o) => o.remaining === 0),
      ),
    recordFailure: (req, clientId) =>
      each(req, clientId, async (limiter) => secondsToWait(await limiter(req), (o) => o.isExceeded)),
  };
}
