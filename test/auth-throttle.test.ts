// Failed authentications are throttled: wrong client secrets at /oauth/token per address and per
// client id, tokens this hub never issued on /v1 per address; past the budget, 429 with
// Retry-After. With REDIS_URL the counts live in Redis and every api process shares them.
import { randomInt } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Credentials, startTestApp, type TestApp } from './helpers/app.ts';
import { onPostgres } from './helpers/database.ts';

const onRedis = Boolean(process.env.REDIS_URL);
const PER_ADDRESS = 25;
const PER_CLIENT = 10;
/** A reverse proxy in front of the hub (TEST-NET-1). */
const PROXY = '192.0.2.1';
const LIMITS = {
  INTERCHANGE_TRUST_PROXY: PROXY,
  INTERCHANGE_AUTH_FAILURES_PER_ADDRESS: String(PER_ADDRESS),
  INTERCHANGE_AUTH_FAILURES_PER_CLIENT: String(PER_CLIENT),
  ...(onRedis ? { REDIS_URL: process.env.REDIS_URL as string } : {}),
};
let t: TestApp;

beforeAll(async () => {
  t = await startTestApp(LIMITS);
});
afterAll(() => t?.close());

/** A fresh address for each use (198.18.0.0/15, for tests): Redis keeps counts between runs. */
function address(): string {
  return `198.${18 + randomInt(2)}.${randomInt(256)}.${randomInt(1, 255)}`;
}

function tokenRequest(app: TestApp, from: string, clientId: string, clientSecret: string) {
  return app.app.server.inject({
    method: 'POST',
    url: '/oauth/token',
    remoteAddress: from,
    payload: { grant_type: 'client_credentials', client_id: clientId, client_secret: clientSecret },
  });
}

function v1Request(app: TestApp, from: string, token: string, forwardedFor?: string) {
  return app.app.server.inject({
    method: 'GET',
    url: '/v1/users?limit=1',
    remoteAddress: from,
    headers: {
      authorization: `Bearer ${token}`,
      ...(forwardedFor ? { 'x-forwarded-for': forwardedFor } : {}),
    },
  });
}

type Response = Awaited<ReturnType<typeof tokenRequest>>;

/** How many responses had each status. */
function statuses(responses: Response[]): Record<number, number> {
  const counts: Record<number, number> = {};
  for (const r of responses) counts[r.statusCode] = (counts[r.statusCode] ?? 0) + 1;
  return counts;
}

function expectThrottledToken(res: Response): void {
  expect(res.statusCode).toBe(429);
  expect(res.json()).toEqual({
    error: 'temporarily_unavailable',
    error_description: expect.stringMatching(/too many failed authentications/),
  });
  const retryAfter = Number(res.headers['retry-after']);
  expect(retryAfter).toBeGreaterThan(0);
  expect(retryAfter).toBeLessThanOrEqual(60);
}

async function sequentially<T>(n: number, send: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < n; i++) out.push(await send(i));
  return out;
}

describe('/oauth/token', () => {
  let victim: Credentials;
  let bystander: Credentials;

  beforeAll(async () => {
    victim = (await t.organization('Victim')).client;
    bystander = (await t.organization('Bystander')).client;
  });

  it('answers 300 wrong secrets from one address with 401 up to the budget, then 429 with Retry-After', async () => {
    const attacker = address();
    // A different client id each time: the address's budget is the one that runs out.
    const answers = await sequentially(300, (i) =>
      tokenRequest(t, attacker, `cli_guess${attacker}_${i}`, `wrong-${i}`),
    );
    expect(statuses(answers)).toEqual({ 401: PER_ADDRESS, 429: 300 - PER_ADDRESS });
    expect(answers[PER_ADDRESS - 1]?.json().error).toBe('invalid_client');
    for (const res of answers.slice(PER_ADDRESS)) expectThrottledToken(res);
    // Even the right secret, from that address, waits: a guess past the budget learns nothing.
    expectThrottledToken(await tokenRequest(t, attacker, victim.clientId, victim.clientSecret));
  });

  it('throttles one client id guessed from many addresses, and no one else', async () => {
    const target = (await t.organization('Target')).client;
    const answers = await sequentially(300, (i) => tokenRequest(t, address(), target.clientId, `wrong-${i}`));
    expect(statuses(answers)).toEqual({ 401: PER_CLIENT, 429: 300 - PER_CLIENT });
    for (const res of answers.slice(PER_CLIENT)) expectThrottledToken(res);
    expectThrottledToken(await tokenRequest(t, address(), target.clientId, target.clientSecret));

    // Another client, from another address, is untouched by those failures.
    const other = await tokenRequest(t, address(), bystander.clientId, bystander.clientSecret);
    expect(other.statusCode).toBe(200);
    expect(other.json().access_token).toEqual(expect.any(String));
  });

  it('does not count requests that carry no secret to check', async () => {
    const from = address();
    const answers = await sequentially(PER_ADDRESS + 5, () =>
      t.app.server.inject({
        method: 'POST',
        url: '/oauth/token',
        remoteAddress: from,
        payload: { grant_type: 'client_credentials', client_id: victim.clientId },
      }),
    );
    expect(statuses(answers)).toEqual({ 401: PER_ADDRESS + 5 });
    expect((await tokenRequest(t, from, victim.clientId, victim.clientSecret)).statusCode).toBe(200);
  });
});

describe('/v1 bearer tokens', () => {
  it('throttles invalid tokens per address, and never refuses a valid token', async () => {
    const org = await t.organization('Bearer');
    const attacker = address();
    const forged = `${org.token.slice(0, -4)}AAAA`;
    const answers = await sequentially(300, (i) =>
      v1Request(t, attacker, i % 3 === 0 ? 'not-a-jwt' : forged),
    );
    expect(statuses(answers)).toEqual({ 401: PER_ADDRESS, 429: 300 - PER_ADDRESS });
    const limited = answers[PER_ADDRESS];
    expect(limited?.json().error.code).toBe('rate_limited');
    const retryAfter = Number(limited?.headers['retry-after']);
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(60);
    // No header at all counts too.
    const bare = await t.app.server.inject({ method: 'GET', url: '/v1/users', remoteAddress: attacker });
    expect(bare.statusCode).toBe(429);

    // The same address with a valid token, and another address with a bad one, are answered as usual.
    expect((await v1Request(t, attacker, org.token)).statusCode).toBe(200);
    const elsewhere = await v1Request(t, address(), forged);
    expect(elsewhere.statusCode).toBe(401);
    expect(elsewhere.json().error.code).toBe('invalid_token');
  });
});

describe('behind a trusted proxy (INTERCHANGE_TRUST_PROXY)', () => {
  it("counts the forwarded client's address, and a spoofed header from elsewhere counts its sender", async () => {
    const [client, neighbour] = [address(), address()];
    const viaProxy = await sequentially(PER_ADDRESS + 1, () => v1Request(t, PROXY, 'not-a-jwt', client));
    expect(statuses(viaProxy)).toEqual({ 401: PER_ADDRESS, 429: 1 });
    // Another client behind the same proxy has its own budget.
    expect((await v1Request(t, PROXY, 'not-a-jwt', neighbour)).statusCode).toBe(401);

    // X-Forwarded-For from an address that is not a trusted proxy is ignored.
    const direct = address();
    const spoofed = await sequentially(PER_ADDRESS + 1, () => v1Request(t, direct, 'not-a-jwt', address()));
    expect(statuses(spoofed)).toEqual({ 401: PER_ADDRESS, 429: 1 });
  });
});

describe.runIf(onRedis && onPostgres)('shared counts (requires REDIS_URL and DATABASE_URL)', () => {
  it("counts one address's failures at two api processes against one budget", async () => {
    const second = await startTestApp(LIMITS, t);
    try {
      const org = await t.organization('Shared throttle');
      const from = address();
      const half = PER_ADDRESS / 5;
      const first = await sequentially(half * 3, () => v1Request(t, from, 'not-a-jwt'));
      const other = await sequentially(half * 2, () => v1Request(second, from, 'not-a-jwt'));
      expect(statuses([...first, ...other])).toEqual({ 401: PER_ADDRESS });
      expect((await v1Request(second, from, 'not-a-jwt')).statusCode).toBe(429);
      expect((await v1Request(t, from, 'not-a-jwt')).statusCode).toBe(429);
      expect(
        (await tokenRequest(second, from, org.client.clientId, org.client.clientSecret)).statusCode,
      ).toBe(429);
    } finally {
      await second.close();
    }
  });
});
