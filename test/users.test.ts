// /v1/users: CRUD, external ids, pagination, tenant isolation and bad input.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from './helpers/app.ts';

let t: TestApp;
let acme: Awaited<ReturnType<TestApp['organization']>>;
let globex: Awaited<ReturnType<TestApp['organization']>>;

beforeAll(async () => {
  t = await startTestApp();
  acme = await t.organization('Acme');
  globex = await t.organization('Globex');
});
afterAll(() => t?.close());

async function createUser(token: string, body: unknown) {
  const res = await t.call('POST', '/v1/users', { token, body });
  expect(res.statusCode, res.body).toBe(201);
  return res.json();
}

describe('users', () => {
  it('creates, reads, updates and deletes a user with external ids', async () => {
    const user = await createUser(acme.token, {
      email: 'ada@example.com',
      name: 'Ada',
      traits: { plan: 'pro', vip: true },
      external_ids: { shopify: '7302', stripe: 'cus_9s6X' },
    });
    expect(user).toMatchObject({
      email: 'ada@example.com',
      name: 'Ada',
      traits: { plan: 'pro', vip: true },
      external_ids: { shopify: '7302', stripe: 'cus_9s6X' },
    });
    expect(user.id).toMatch(/^usr_[0-9a-f]{32}$/);

    const got = await t.call('GET', `/v1/users/${user.id}`, { token: acme.token });
    expect(got.json()).toEqual(user);

    const patched = await t.call('PATCH', `/v1/users/${user.id}`, {
      token: acme.token,
      body: {
        name: 'Ada L.',
        traits: { vip: null, city: 'Berlin' },
        external_ids: { stripe: null, hubspot: '51' },
      },
    });
    expect(patched.statusCode, patched.body).toBe(200);
    expect(patched.json()).toMatchObject({
      name: 'Ada L.',
      email: 'ada@example.com',
      traits: { plan: 'pro', city: 'Berlin' },
      external_ids: { shopify: '7302', hubspot: '51' },
    });
    expect(patched.json().traits).not.toHaveProperty('vip');
    expect(patched.json().external_ids).not.toHaveProperty('stripe');

    const del = await t.call('DELETE', `/v1/users/${user.id}`, { token: acme.token });
    expect(del.statusCode).toBe(204);
    const gone = await t.call('GET', `/v1/users/${user.id}`, { token: acme.token });
    expect(gone.statusCode).toBe(404);
    expect(gone.json().error.code).toBe('user_not_found');
    // The external id is free again once its user is gone.
    await createUser(acme.token, { external_ids: { shopify: '7302' } });
  });

  it('looks a user up by external id, per organization', async () => {
    const user = await createUser(acme.token, { external_ids: { woocommerce: 'w-1' } });
    const found = await t.call('GET', '/v1/users/by-external-id/woocommerce/w-1', { token: acme.token });
    expect(found.statusCode).toBe(200);
    expect(found.json().id).toBe(user.id);
    const missing = await t.call('GET', '/v1/users/by-external-id/woocommerce/w-2', { token: acme.token });
    expect(missing.statusCode).toBe(404);
    // Another organization may use the same external id for its own user, and never sees Acme's.
    const other = await t.call('GET', '/v1/users/by-external-id/woocommerce/w-1', { token: globex.token });
    expect(other.statusCode).toBe(404);
    await createUser(globex.token, { external_ids: { woocommerce: 'w-1' } });
  });

  it('keeps external ids per platform account, and finds them with or without the account', async () => {
    const org = await t.organization('Two stores');
    const call = (url: string) => t.call('GET', url, { token: org.token });
    // Customer 12 of each store is another person.
    const a = await createUser(org.token, { external_ids: { 'woocommerce@a.example.com': '12' } });
    const b = await createUser(org.token, {
      external_ids: { 'woocommerce@b.example.com': '12', 'woocommerce@a.example.com': '40' },
    });
    expect(b.external_ids).toEqual({ 'woocommerce@a.example.com': '40', 'woocommerce@b.example.com': '12' });

    const inA = await call('/v1/users/by-external-id/woocommerce/12?account=a.example.com');
    expect(inA.json().id).toBe(a.id);
    const inB = await call('/v1/users/by-external-id/woocommerce/12?account=b.example.com');
    expect(inB.json().id).toBe(b.id);
    // Without the account: the one user who holds the id, or 409 listing the holders.
    expect((await call('/v1/users/by-external-id/woocommerce/40')).json().id).toBe(b.id);
    const ambiguous = await call('/v1/users/by-external-id/woocommerce/12');
    expect(ambiguous.statusCode).toBe(409);
    expect(ambiguous.json().error).toMatchObject({
      code: 'external_id_ambiguous',
      details: [
        { account: 'a.example.com', user_id: a.id },
        { account: 'b.example.com', user_id: b.id },
      ],
    });
    // A third store has no customer 12 of its own, until a user holds 12 without account: such an
    // id stands for every store that has none.
    const inC = await call('/v1/users/by-external-id/woocommerce/12?account=c.example.com');
    expect(inC.statusCode).toBe(404);
    expect(inC.json().error.code).toBe('user_not_found');
    const any = await createUser(org.token, { external_ids: { woocommerce: '12' } });
    expect((await call('/v1/users/by-external-id/woocommerce/12?account=c.example.com')).json().id).toBe(
      any.id,
    );
    expect((await call('/v1/users/by-external-id/woocommerce/12?account=a.example.com')).json().id).toBe(
      a.id,
    );

    // One id per user and account: a second account's id is added, a null removes that one only.
    const patched = await t.call('PATCH', `/v1/users/${b.id}`, {
      token: org.token,
      body: { external_ids: { 'woocommerce@a.example.com': null, 'woocommerce@c.example.com': '41' } },
    });
    expect(patched.json().external_ids).toEqual({
      'woocommerce@b.example.com': '12',
      'woocommerce@c.example.com': '41',
    });
    // The same id in the same account is still one user's.
    const clash = await t.call('POST', '/v1/users', {
      token: org.token,
      body: { external_ids: { 'woocommerce@b.example.com': '12' } },
    });
    expect(clash.statusCode).toBe(409);
    expect(clash.json().error.code).toBe('external_id_conflict');
  });

  it('answers 409 when an external id already belongs to another user of the organization', async () => {
    const a = await createUser(acme.token, { external_ids: { stripe: 'cus_A' } });
    const clash = await t.call('POST', '/v1/users', {
      token: acme.token,
      body: { external_ids: { stripe: 'cus_A' } },
    });
    expect(clash.statusCode).toBe(409);
    expect(clash.json().error.code).toBe('external_id_conflict');
    const b = await createUser(acme.token, { email: 'b@example.com' });
    const clashOnUpdate = await t.call('PATCH', `/v1/users/${b.id}`, {
      token: acme.token,
      body: { name: 'B', external_ids: { stripe: 'cus_A' } },
    });
    expect(clashOnUpdate.statusCode).toBe(409);
    // Nothing of the failed update was written.
    const bAfter = await t.call('GET', `/v1/users/${b.id}`, { token: acme.token });
    expect(bAfter.json()).toMatchObject({ name: null, external_ids: {} });
    const aAfter = await t.call('GET', `/v1/users/${a.id}`, { token: acme.token });
    expect(aAfter.json().external_ids).toEqual({ stripe: 'cus_A' });
  });

  it('pages through users with a cursor, oldest first, missing none', async () => {
    const org = await t.organization('Paging');
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) ids.push((await createUser(org.token, { email: `u${i}@example.com` })).id);
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const url: string = `/v1/users?limit=3${cursor ? `&cursor=${cursor}` : ''}`;
      const page = await t.call('GET', url, { token: org.token });
      expect(page.statusCode, page.body).toBe(200);
      const body = page.json();
      seen.push(...body.data.map((u: { id: string }) => u.id));
      expect(body.has_more).toBe(body.next_cursor !== null);
      cursor = body.next_cursor;
      pages++;
    } while (cursor);
    expect(seen).toEqual(ids);
    expect(pages).toBe(3);

    const byEmail = await t.call('GET', '/v1/users?email=u3@example.com', { token: org.token });
    expect(byEmail.json().data.map((u: { id: string }) => u.id)).toEqual([ids[3]]);
  });

  it("never shows or changes another organization's user", async () => {
    const user = await createUser(acme.token, {
      email: 'private@acme.test',
      external_ids: { shopify: 'acme-9' },
    });
    for (const [method, body] of [
      ['GET', undefined],
      ['PATCH', { name: 'hijacked' }],
      ['DELETE', undefined],
    ] as const) {
      const res = await t.call(method, `/v1/users/${user.id}`, { token: globex.token, body });
      expect(res.statusCode).toBe(404);
      expect(res.json().error.code).toBe('user_not_found');
      expect(res.body).not.toContain('private@acme.test');
    }
    const list = await t.call('GET', '/v1/users?limit=100', { token: globex.token });
    expect(list.body).not.toContain(user.id);
    const still = await t.call('GET', `/v1/users/${user.id}`, { token: acme.token });
    expect(still.json()).toMatchObject({ email: 'private@acme.test', name: null });
  });

  it('rejects bad input with 400 and the field path, and writes nothing', async () => {
    const org = await t.organization('BadInput');
    const cases: Array<[unknown, string, string]> = [
      [{ email: 'not-an-email' }, 'validation_failed', 'body.email'],
      [{ name: 42 }, 'validation_failed', 'body.name'],
      [{ unknown_field: 1 }, 'validation_failed', 'body'],
      [{ external_ids: { 'Bad Platform!': '1' } }, 'validation_failed', 'body.external_ids.Bad Platform!'],
      [{ external_ids: { shopify: '' } }, 'validation_failed', 'body.external_ids.shopify'],
      [{ external_ids: { 'woocommerce@': '1' } }, 'validation_failed', 'body.external_ids.woocommerce@'],
      [
        { external_ids: { 'woocommerce@a b': '1' } },
        'validation_failed',
        'body.external_ids.woocommerce@a b',
      ],
      [
        { external_ids: { 'woocommerce@a@b': '1' } },
        'validation_failed',
        'body.external_ids.woocommerce@a@b',
      ],
      [{ traits: 'nope' }, 'validation_failed', 'body.traits'],
    ];
    for (const [body, code, path] of cases) {
      const res = await t.call('POST', '/v1/users', { token: org.token, body });
      expect(res.statusCode, JSON.stringify(body)).toBe(400);
      expect(res.json().error.code).toBe(code);
      expect(res.json().error.details.map((d: { path: string }) => d.path)).toContain(path);
    }
    const malformed = await t.call('POST', '/v1/users', {
      token: org.token,
      body: '{"email": ',
      headers: { 'content-type': 'application/json' },
    });
    expect(malformed.statusCode).toBe(400);
    expect(malformed.json().error.code).toBe('invalid_json');

    const huge = await t.call('POST', '/v1/users', {
      token: org.token,
      body: JSON.stringify({ traits: { blob: 'x'.repeat(1024 * 1024) } }),
      headers: { 'content-type': 'application/json' },
    });
    expect(huge.statusCode).toBe(413);
    expect(huge.json().error.code).toBe('payload_too_large');

    const badCursor = await t.call('GET', '/v1/users?cursor=garbage', { token: org.token });
    expect(badCursor.statusCode).toBe(400);
    expect(badCursor.json().error.code).toBe('invalid_cursor');
    const badLimit = await t.call('GET', '/v1/users?limit=1000', { token: org.token });
    expect(badLimit.statusCode).toBe(400);
    expect(badLimit.json().error.details[0].path).toBe('querystring.limit');

    const list = await t.call('GET', '/v1/users', { token: org.token });
    expect(list.json().data).toEqual([]);
  });

  it('needs the users scopes', async () => {
    const readOnly = await t.organization('ReadOnly', { scopes: ['users:read'] });
    expect((await t.call('GET', '/v1/users', { token: readOnly.token })).statusCode).toBe(200);
    const denied = await t.call('POST', '/v1/users', { token: readOnly.token, body: {} });
    expect(denied.statusCode).toBe(403);
    expect(denied.json().error.code).toBe('insufficient_scope');
    const noToken = await t.call('GET', '/v1/users');
    expect(noToken.statusCode).toBe(401);
    expect(noToken.json().error.code).toBe('unauthorized');
  });
});
