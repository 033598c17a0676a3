// Rate limits per API client and hour, by tier: 429 with Retry-After and the IETF RateLimit
// headers; with REDIS_URL several api processes share one budget.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TIER_LIMITS } from '../src/tenancy/scopes.ts';
import { startTestApp, type TestApp } from './helpers/app.ts';
import { onPostgres } from './helpers/database.ts';

const onRedis = Boolean(process.env.REDIS_URL);
let t: TestApp;

beforeAll(async () => {
  t = await startTestApp(onRedis ? { REDIS_URL: process.env.REDIS_URL as string } : {});
});
afterAll(() => t?.close());

async function spend(app: TestApp, token: string, n: number) {
  const statuses = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    const res = await app.call('GET', '/v1/users?limit=1', { token });
    statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
  }
  return statuses;
}

describe('rate limits by tier', () => {
  it('gives a free client 1,000 requests an hour, then 429 with Retry-After and RateLimit headers', async () => {
    const org = await t.organization('Free', { tier: 'free' });
    const first = await t.call('GET', '/v1/users', { token: org.token });
    expect(first.headers['ratelimit-limit']).toBe(String(TIER_LIMITS.free));
    expect(first.headers['ratelimit-remaining']).toBe(String(TIER_LIMITS.free - 1));
    expect(Number(first.headers['ratelimit-reset'])).toBeGreaterThan(0);

    const statuses = await spend(t, org.token, TIER_LIMITS.free - 1);
    expect(statuses.get(200)).toBe(TIER_LIMITS.free - 1);

    const limited = await t.call('GET', '/v1/users', { token: org.token });
    expect(limited.statusCode).toBe(429);
    expect(limited.json().error.code).toBe('rate_limited');
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(limited.headers['retry-after'])).toBeLessThanOrEqual(3600);
    expect(limited.headers['ratelimit-remaining']).toBe('0');

    // The budget is the client's own: another client of the same organization is unaffected.
    const second = await t.call('POST', '/v1/api-clients', {
      token: await t.token(t.admin),
      body: { name: 'other', organization_id: org.id },
    });
    const otherToken = await t.token({
      clientId: second.json().id,
      clientSecret: second.json().client_secret,
    });
    expect((await t.call('GET', '/v1/users', { token: otherToken })).statusCode).toBe(200);
  });

  it('sets the limit from the tier', async () => {
    for (const tier of ['basic', 'professional', 'enterprise'] as const) {
      const org = await t.organization(`Tier ${tier}`, { tier });
      const res = await t.call('GET', '/v1/users', { token: org.token });
      expect(res.headers['ratelimit-limit']).toBe(String(TIER_LIMITS[tier]));
    }
  });

  it('does not count the token endpoint or health checks against the budget', async () => {
    const org = await t.organization('Uncounted', { tier: 'free' });
    await t.token(org.client);
    await t.call('GET', '/healthz');
    const res = await t.call('GET', '/v1/users', { token: org.token });
    expect(res.headers['ratelimit-remaining']).toBe(String(TIER_LIMITS.free - 1));
  });
});

describe.runIf(onRedis && onPostgres)('shared budget (requires REDIS_URL and DATABASE_URL)', () => {
  it("counts one client's requests to two api processes against one budget", async () => {
    // A second app on the same database and Redis, as a second api process would be.
    const second = await startTestApp({ REDIS_URL: process.env.REDIS_URL as string }, t);
    try {
      const org = await t.organization('Shared', { tier: 'free' });
      const half = TIER_LIMITS.free / 2;
      expect((await spend(t, org.token, half)).get(200)).toBe(half);
      expect((await spend(second, org.token, half)).get(200)).toBe(half);
      const limited = await second.call('GET', '/v1/users', { token: org.token });
      expect(limited.statusCode).toBe(429);
      const alsoLimited = await t.call('GET', '/v1/users', { token: org.token });
      expect(alsoLimited.statusCode).toBe(429);
    } finally {
      await second.close();
    }
  });
});
