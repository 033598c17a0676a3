// /v1/api-clients: secrets shown once, tenant isolation, no scope or tier escalation, and changes
// (rotation, deletion, fewer scopes) that take effect on existing credentials at once.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashSecret } from '../src/crypto/random.ts';
import { ORGANIZATION_SCOPES, TIER_LIMITS } from '../src/tenancy/scopes.ts';
import { type Credentials, startTestApp, type TestApp } from './helpers/app.ts';

let t: TestApp;
let adminToken: string;
let acme: Awaited<ReturnType<TestApp['organization']>>;
let globex: Awaited<ReturnType<TestApp['organization']>>;

beforeAll(async () => {
  t = await startTestApp();
  adminToken = await t.token(t.admin);
  acme = await t.organization('Acme');
  globex = await t.organization('Globex');
});
afterAll(() => t?.close());

async function createClient(token: string, body: Record<string, unknown>) {
  const res = await t.call('POST', '/v1/api-clients', { token, body });
  expect(res.statusCode, res.body).toBe(201);
  return res.json();
}

function requestToken(creds: Credentials) {
  return t.call('POST', '/oauth/token', {
    body: { grant_type: 'client_credentials', client_id: creds.clientId, client_secret: creds.clientSecret },
  });
}

const credsOf = (created: { id: string; client_secret: string }): Credentials => ({
  clientId: created.id,
  clientSecret: created.client_secret,
});

/** Neither the secret nor its stored hash appears anywhere in a response body. */
function expectNoSecret(body: string, secret: string): void {
  expect(body).not.toContain(secret);
  expect(body).not.toContain(hashSecret(secret));
  expect(body).not.toMatch(/secret/i);
  expect(body).not.toMatch(/hash/i);
}

describe('api clients', () => {
  it('returns the client secret once, on creation only', async () => {
    const created = await createClient(adminToken, {
      name: 'Acme ETL',
      organization_id: acme.id,
      scopes: ['users:read'],
    });
    expect(created).toMatchObject({
      id: expect.stringMatching(/^cli_[0-9a-f]{32}$/),
      organization_id: acme.id,
      name: 'Acme ETL',
      scopes: ['users:read'],
      tier: 'free',
      rate_limit_per_hour: 1000,
      last_used_at: null,
      client_secret: expect.stringMatching(/^ics_/),
    });
    const secret: string = created.client_secret;
    expect(JSON.stringify(created)).not.toContain(hashSecret(secret));

    const got = await t.call('GET', `/v1/api-clients/${created.id}`, { token: adminToken });
    expect(got.statusCode).toBe(200);
    expect(got.json().id).toBe(created.id);
    expectNoSecret(got.body, secret);

    const list = await t.call('GET', `/v1/api-clients?organization_id=${acme.id}&limit=100`, {
      token: adminToken,
    });
    expect(list.json().data.map((c: { id: string }) => c.id)).toContain(created.id);
    expectNoSecret(list.body, secret);

    const orgList = await t.call('GET', '/v1/api-clients?limit=100', { token: acme.token });
    expect(orgList.json().data.map((c: { id: string }) => c.id)).toContain(created.id);
    expectNoSecret(orgList.body, secret);

    const patched = await t.call('PATCH', `/v1/api-clients/${created.id}`, {
      token: adminToken,
      body: { name: 'Acme ETL v2' },
    });
    expect(patched.statusCode, patched.body).toBe(200);
    expect(patched.json().name).toBe('Acme ETL v2');
    expectNoSecret(patched.body, secret);
  });

  it('creates credentials that work at /oauth/token, and records their use', async () => {
    const created = await createClient(acme.token, { name: 'Acme worker', scopes: ['users:write'] });
    expect(created.organization_id).toBe(acme.id);
    const res = await requestToken(credsOf(created));
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().scope).toBe('users:write');
    const token = res.json().access_token;
    const user = await t.call('POST', '/v1/users', { token, body: { name: 'Made by worker' } });
    expect(user.statusCode, user.body).toBe(201);
    // The user belongs to Acme: Acme's own client sees it.
    const seen = await t.call('GET', `/v1/users/${user.json().id}`, { token: acme.token });
    expect(seen.statusCode).toBe(200);

    const got = await t.call('GET', `/v1/api-clients/${created.id}`, { token: acme.token });
    expect(got.json().last_used_at).not.toBeNull();
  });

  it("lists only the caller's own organization's clients", async () => {
    const mine = await createClient(acme.token, { name: 'Acme listed' });
    const theirs = await createClient(globex.token, { name: 'Globex hidden' });

    const list = await t.call('GET', '/v1/api-clients?limit=100', { token: acme.token });
    expect(list.statusCode).toBe(200);
    const data: Array<{ id: string; organization_id: string | null }> = list.json().data;
    expect(data.map((c) => c.id)).toContain(mine.id);
    expect(data.map((c) => c.id)).toContain(acme.client.clientId);
    expect(data.every((c) => c.organization_id === acme.id)).toBe(true);
    expect(list.body).not.toContain(theirs.id);
    expect(list.body).not.toContain('Globex hidden');
    expect(list.body).not.toContain(t.admin.clientId);

    // Asking for another organization's clients by filter gives nothing.
    const filtered = await t.call('GET', `/v1/api-clients?organization_id=${globex.id}`, {
      token: acme.token,
    });
    expect(filtered.statusCode).toBe(200);
    expect(filtered.json().data).toEqual([]);

    // An admin sees every organization's clients, and the admin clients.
    const all = await t.call('GET', '/v1/api-clients?limit=100', { token: adminToken });
    const allIds = all.json().data.map((c: { id: string }) => c.id);
    expect(allIds).toEqual(expect.arrayContaining([mine.id, theirs.id, t.admin.clientId]));
  });

  it('pages through clients with a cursor', async () => {
    const org = await t.organization('Paging');
    const ids = [org.client.clientId];
    for (let i = 0; i < 4; i++) ids.push((await createClient(org.token, { name: `c${i}` })).id);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const url: string = `/v1/api-clients?limit=2${cursor ? `&cursor=${cursor}` : ''}`;
      const page = await t.call('GET', url, { token: org.token });
      expect(page.statusCode, page.body).toBe(200);
      seen.push(...page.json().data.map((c: { id: string }) => c.id));
      cursor = page.json().next_cursor;
    } while (cursor);
    expect(seen).toEqual(ids);
  });

  it("answers 404 for another organization's client and leaves it untouched", async () => {
    const secretName = 'Globex confidential integration';
    const theirs = await createClient(globex.token, { name: secretName, scopes: ['users:read'] });
    const calls = [
      ['GET', `/v1/api-clients/${theirs.id}`, undefined],
      ['PATCH', `/v1/api-clients/${theirs.id}`, { name: 'pwned', scopes: ['users:read'] }],
      ['POST', `/v1/api-clients/${theirs.id}/rotate-secret`, undefined],
      ['DELETE', `/v1/api-clients/${theirs.id}`, undefined],
    ] as const;
    for (const [method, url, body] of calls) {
      const res = await t.call(method, url, { token: acme.token, body });
      expect(res.statusCode, `${method} ${url}`).toBe(404);
      expect(res.json().error.code).toBe('api_client_not_found');
      expect(res.body).not.toContain(secretName);
      expect(res.body).not.toContain(globex.id);
      expect(res.body).not.toContain('client_secret');
    }
    // Exactly as for a client that does not exist.
    const missing = await t.call('GET', `/v1/api-clients/cli_${'0'.repeat(32)}`, { token: acme.token });
    expect(missing.statusCode).toBe(404);
    expect(missing.json().error.code).toBe('api_client_not_found');

    const still = await t.call('GET', `/v1/api-clients/${theirs.id}`, { token: globex.token });
    expect(still.json()).toMatchObject({ name: secretName, scopes: ['users:read'] });
    expect((await requestToken(credsOf(theirs))).statusCode).toBe(200);
  });

  it("creates an organization client's new clients in its own organization only", async () => {
    const created = await createClient(acme.token, { name: 'Sneaky', organization_id: globex.id });
    expect(created.organization_id).toBe(acme.id);
    const globexList = await t.call('GET', '/v1/api-clients?limit=100', { token: globex.token });
    expect(globexList.body).not.toContain(created.id);
  });

  it('refuses to grant scopes the caller does not hold (403 scope_escalation)', async () => {
    const limited = await t.organization('Limited', { scopes: ['users:read', 'api_clients:write'] });
    const res = await t.call('POST', '/v1/api-clients', {
      token: limited.token,
      body: { name: 'escalated', scopes: ['users:write'] },
    });
    expect(res.statusCode, res.body).toBe(403);
    expect(res.json().error.code).toBe('scope_escalation');
    expect(res.body).not.toContain('client_secret');

    // Nor by raising its own scopes.
    const self = await t.call('PATCH', `/v1/api-clients/${limited.client.clientId}`, {
      token: limited.token,
      body: { scopes: ['users:read', 'users:write', 'api_clients:write'] },
    });
    expect(self.statusCode).toBe(403);
    expect(self.json().error.code).toBe('scope_escalation');

    // Nothing was created or changed.
    const list = await t.call('GET', '/v1/api-clients?limit=100', { token: adminToken });
    const limitedClients = list
      .json()
      .data.filter((c: { organization_id: string }) => c.organization_id === limited.id);
    expect(limitedClients).toEqual([
      expect.objectContaining({ id: limited.client.clientId, scopes: ['users:read', 'api_clients:write'] }),
    ]);

    // A subset of its own scopes is fine.
    const ok = await createClient(limited.token, { name: 'reader', scopes: ['users:read'] });
    expect(ok.scopes).toEqual(['users:read']);
  });

  it("defaults a new client's scopes to those the caller may grant", async () => {
    const limited = await t.organization('Defaults', { scopes: ['users:read', 'api_clients:write'] });
    const created = await createClient(limited.token, { name: 'default scopes' });
    expect([...created.scopes].sort()).toEqual(['api_clients:write', 'users:read']);
    // An admin's default for an organization client is every organization scope.
    const byAdmin = await createClient(adminToken, { name: 'all', organization_id: limited.id });
    expect([...byAdmin.scopes].sort()).toEqual([...ORGANIZATION_SCOPES].sort());
  });

  it("refuses to rotate the secret of a client holding more than the caller (it would hand over that client's access)", async () => {
    const org = await t.organization('Rotation', { scopes: ['users:read', 'api_clients:write'] });
    const strong = await createClient(adminToken, {
      name: 'strong',
      organization_id: org.id,
      tier: 'enterprise',
    });
    const res = await t.call('POST', `/v1/api-clients/${strong.id}/rotate-secret`, { token: org.token });
    expect(res.statusCode, res.body).toBe(403);
    expect(res.json().error.code).toBe('scope_escalation');
    expect(res.body).not.toContain('client_secret');
    // The strong client's secret still works.
    expect((await requestToken(credsOf(strong))).statusCode).toBe(200);
  });

  it('refuses to grant a tier above the caller (403 scope_escalation)', async () => {
    const free = await t.organization('FreeTier', { tier: 'free' });
    const res = await t.call('POST', '/v1/api-clients', {
      token: free.token,
      body: { name: 'upgrade', tier: 'basic' },
    });
    expect(res.statusCode, res.body).toBe(403);
    expect(res.json().error.code).toBe('scope_escalation');
    const self = await t.call('PATCH', `/v1/api-clients/${free.client.clientId}`, {
      token: free.token,
      body: { tier: 'enterprise' },
    });
    expect(self.statusCode).toBe(403);
    expect(self.json().error.code).toBe('scope_escalation');
    const own = await t.call('GET', `/v1/api-clients/${free.client.clientId}`, { token: free.token });
    expect(own.json()).toMatchObject({ tier: 'free', rate_limit_per_hour: 1000 });

    // The same tier is fine, and is the default.
    const same = await createClient(free.token, { name: 'same tier' });
    expect(same.tier).toBe('free');
    const basic = await t.organization('BasicTier', { tier: 'basic' });
    expect((await createClient(basic.token, { name: 'inherits' })).tier).toBe('basic');
    expect((await createClient(basic.token, { name: 'lower', tier: 'free' })).tier).toBe('free');
  });

  it('answers 400 when an organization client asks for the admin scope', async () => {
    for (const scopes of [['admin'], ['users:read', 'admin']]) {
      const res = await t.call('POST', '/v1/api-clients', {
        token: acme.token,
        body: { name: 'wannabe admin', scopes },
      });
      expect(res.statusCode, res.body).toBe(400);
      expect(res.json().error.code).toBe('validation_failed');
      expect(res.json().error.details.map((d: { path: string }) => d.path)).toContain('scopes');
    }
    const self = await t.call('PATCH', `/v1/api-clients/${acme.client.clientId}`, {
      token: acme.token,
      body: { scopes: ['admin'] },
    });
    expect(self.statusCode).toBe(400);
    // The admin routes stay closed to Acme.
    const orgs = await t.call('GET', '/v1/organizations', { token: acme.token });
    expect(orgs.statusCode).toBe(403);
  });

  it('answers 400 for bad input', async () => {
    const cases: Array<[unknown, string]> = [
      [{}, 'body.name'],
      [{ name: '   ' }, 'body.name'],
      [{ name: 'x', scopes: [] }, 'body.scopes'],
      [{ name: 'x', scopes: ['users:delete'] }, 'body.scopes.0'],
      [{ name: 'x', tier: 'platinum' }, 'body.tier'],
      [{ name: 'x', client_secret: 'chosen' }, 'body'],
    ];
    for (const [body, path] of cases) {
      const res = await t.call('POST', '/v1/api-clients', { token: acme.token, body });
      expect(res.statusCode, JSON.stringify(body)).toBe(400);
      expect(res.json().error.code).toBe('validation_failed');
      expect(res.json().error.details.map((d: { path: string }) => d.path)).toContain(path);
    }
  });

  it('answers 404 when an admin creates a client in an organization that does not exist', async () => {
    for (const organizationId of [`org_${'0'.repeat(32)}`, 'org_nope']) {
      const res = await t.call('POST', '/v1/api-clients', {
        token: adminToken,
        body: { name: 'orphan', organization_id: organizationId },
      });
      expect(res.statusCode, res.body).toBe(404);
      expect(res.json().error.code).toBe('organization_not_found');
    }
    const list = await t.call('GET', '/v1/api-clients?limit=100', { token: adminToken });
    expect(list.body).not.toContain('orphan');
  });

  it('lets an admin create admin clients, and only with the admin scope', async () => {
    const created = await createClient(adminToken, { name: 'second admin', organization_id: null });
    expect(created).toMatchObject({ organization_id: null, scopes: ['admin'], tier: 'enterprise' });
    const token = (await requestToken(credsOf(created))).json().access_token;
    expect((await t.call('GET', '/v1/organizations', { token })).statusCode).toBe(200);

    const bad = await t.call('POST', '/v1/api-clients', {
      token: adminToken,
      body: { name: 'admin with org scopes', organization_id: null, scopes: ['users:read'] },
    });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.code).toBe('validation_failed');
  });

  it('rotates a secret: the old one stops working, the new one works', async () => {
    const created = await createClient(acme.token, { name: 'rotated', scopes: ['users:read'] });
    const old = credsOf(created);
    expect((await requestToken(old)).statusCode).toBe(200);

    const rotated = await t.call('POST', `/v1/api-clients/${created.id}/rotate-secret`, {
      token: acme.token,
    });
    expect(rotated.statusCode, rotated.body).toBe(200);
    expect(rotated.json()).toMatchObject({ id: created.id, scopes: ['users:read'] });
    const fresh = credsOf(rotated.json());
    expect(fresh.clientSecret).toMatch(/^ics_/);
    expect(fresh.clientSecret).not.toBe(old.clientSecret);

    const withOld = await requestToken(old);
    expect(withOld.statusCode).toBe(401);
    expect(withOld.json().error).toBe('invalid_client');
    const withNew = await requestToken(fresh);
    expect(withNew.statusCode, withNew.body).toBe(200);
    expect((await t.call('GET', '/v1/users', { token: withNew.json().access_token })).statusCode).toBe(200);

    const got = await t.call('GET', `/v1/api-clients/${created.id}`, { token: acme.token });
    expectNoSecret(got.body, fresh.clientSecret);
  });

  it('deletes a client: its tokens stop working at once', async () => {
    const created = await createClient(acme.token, { name: 'deleted', scopes: ['users:read'] });
    const token = (await requestToken(credsOf(created))).json().access_token;
    expect((await t.call('GET', '/v1/users', { token })).statusCode).toBe(200);

    const del = await t.call('DELETE', `/v1/api-clients/${created.id}`, { token: acme.token });
    expect(del.statusCode, del.body).toBe(204);
    expect(del.body).toBe('');

    const after = await t.call('GET', '/v1/users', { token });
    expect(after.statusCode).toBe(401);
    expect(after.json().error.code).toBe('invalid_token');
    expect((await requestToken(credsOf(created))).statusCode).toBe(401);
    const gone = await t.call('GET', `/v1/api-clients/${created.id}`, { token: acme.token });
    expect(gone.statusCode).toBe(404);
    const again = await t.call('DELETE', `/v1/api-clients/${created.id}`, { token: acme.token });
    expect(again.statusCode).toBe(404);
    // The deleting client is unaffected.
    expect((await t.call('GET', '/v1/users', { token: acme.token })).statusCode).toBe(200);
  });

  it('reduces scopes: an existing token loses the removed scope at once', async () => {
    const created = await createClient(acme.token, { name: 'shrinking', scopes: ['users:write'] });
    const token = (await requestToken(credsOf(created))).json().access_token;
    const before = await t.call('POST', '/v1/users', { token, body: { name: 'before' } });
    expect(before.statusCode, before.body).toBe(201);

    const patched = await t.call('PATCH', `/v1/api-clients/${created.id}`, {
      token: acme.token,
      body: { scopes: ['users:read'] },
    });
    expect(patched.statusCode, patched.body).toBe(200);
    expect(patched.json().scopes).toEqual(['users:read']);

    const after = await t.call('POST', '/v1/users', { token, body: { name: 'after' } });
    expect(after.statusCode).toBe(403);
    expect(after.json().error.code).toBe('insufficient_scope');
    // A new token gets the new scopes.
    const renewed = await requestToken(credsOf(created));
    expect(renewed.json().scope).toBe('users:read');
    expect((await t.call('GET', '/v1/users', { token: renewed.json().access_token })).statusCode).toBe(200);
  });

  it('sets rate_limit_per_hour from the tier', async () => {
    for (const [tier, limit] of Object.entries(TIER_LIMITS)) {
      const created = await createClient(adminToken, {
        name: `tier ${tier}`,
        organization_id: acme.id,
        tier,
      });
      expect(created).toMatchObject({ tier, rate_limit_per_hour: limit });
      const got = await t.call('GET', `/v1/api-clients/${created.id}`, { token: adminToken });
      expect(got.json()).toMatchObject({ tier, rate_limit_per_hour: limit });
    }
    expect(TIER_LIMITS).toEqual({ free: 1000, basic: 10_000, professional: 100_000, enterprise: 1_000_000 });

    const created = await createClient(adminToken, { name: 'upgraded', organization_id: acme.id });
    expect(created.rate_limit_per_hour).toBe(1000);
    const patched = await t.call('PATCH', `/v1/api-clients/${created.id}`, {
      token: adminToken,
      body: { tier: 'professional' },
    });
    expect(patched.json()).toMatchObject({ tier: 'professional', rate_limit_per_hour: 100_000 });
  });

  it('needs the api_clients scopes', async () => {
    const usersOnly = await t.organization('UsersOnly', { scopes: ['users:write'] });
    const list = await t.call('GET', '/v1/api-clients', { token: usersOnly.token });
    expect(list.statusCode).toBe(403);
    expect(list.json().error.code).toBe('insufficient_scope');
    const reader = await t.organization('Reader', { scopes: ['api_clients:read'] });
    expect((await t.call('GET', '/v1/api-clients', { token: reader.token })).statusCode).toBe(200);
    const create = await t.call('POST', '/v1/api-clients', { token: reader.token, body: { name: 'x' } });
    expect(create.statusCode).toBe(403);
    expect(create.json().error.code).toBe('insufficient_scope');
  });
});
