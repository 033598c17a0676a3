// /v1/organizations: admin CRUD, cursor pagination, deletion of everything an organization owns,
// bad input and unknown ids.
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { users } from '../src/store/schema.ts';
import { startTestApp, type TestApp } from './helpers/app.ts';

let t: TestApp;
let adminToken: string;

beforeAll(async () => {
  t = await startTestApp();
  adminToken = await t.token(t.admin);
});
afterAll(() => t?.close());

async function createOrganization(name: string) {
  const res = await t.call('POST', '/v1/organizations', { token: adminToken, body: { name } });
  expect(res.statusCode, res.body).toBe(201);
  return res.json();
}

async function listAll(limit: number): Promise<{ ids: string[]; pages: number }> {
  const ids: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const url: string = `/v1/organizations?limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`;
    const page = await t.call('GET', url, { token: adminToken });
    expect(page.statusCode, page.body).toBe(200);
    const body = page.json();
    expect(body.data.length).toBeLessThanOrEqual(limit);
    expect(body.has_more).toBe(body.next_cursor !== null);
    ids.push(...body.data.map((o: { id: string }) => o.id));
    cursor = body.next_cursor;
    pages++;
  } while (cursor);
  return { ids, pages };
}

describe('organizations', () => {
  it('creates, reads, renames and deletes an organization', async () => {
    const org = await createOrganization('  Initech  ');
    expect(org).toEqual({
      id: expect.stringMatching(/^org_[0-9a-f]{32}$/),
      name: 'Initech',
      created_at: expect.any(String),
      updated_at: expect.any(String),
    });
    expect(new Date(org.created_at).toISOString()).toBe(org.created_at);

    const got = await t.call('GET', `/v1/organizations/${org.id}`, { token: adminToken });
    expect(got.statusCode).toBe(200);
    expect(got.json()).toEqual(org);

    const renamed = await t.call('PATCH', `/v1/organizations/${org.id}`, {
      token: adminToken,
      body: { name: 'Initrode' },
    });
    expect(renamed.statusCode, renamed.body).toBe(200);
    expect(renamed.json()).toMatchObject({ id: org.id, name: 'Initrode', created_at: org.created_at });
    expect(Date.parse(renamed.json().updated_at)).toBeGreaterThanOrEqual(Date.parse(org.updated_at));
    const reread = await t.call('GET', `/v1/organizations/${org.id}`, { token: adminToken });
    expect(reread.json().name).toBe('Initrode');

    // An empty patch changes nothing.
    const noop = await t.call('PATCH', `/v1/organizations/${org.id}`, { token: adminToken, body: {} });
    expect(noop.statusCode, noop.body).toBe(200);
    expect(noop.json()).toEqual(reread.json());

    const del = await t.call('DELETE', `/v1/organizations/${org.id}`, { token: adminToken });
    expect(del.statusCode).toBe(204);
    expect(del.body).toBe('');
    const gone = await t.call('GET', `/v1/organizations/${org.id}`, { token: adminToken });
    expect(gone.statusCode).toBe(404);
    expect(gone.json().error.code).toBe('organization_not_found');
    const again = await t.call('DELETE', `/v1/organizations/${org.id}`, { token: adminToken });
    expect(again.statusCode).toBe(404);
    expect(again.json().error.code).toBe('organization_not_found');
    const list = await t.call('GET', '/v1/organizations?limit=100', { token: adminToken });
    expect(list.body).not.toContain(org.id);
  });

  it('pages through organizations with a cursor, oldest first, missing none', async () => {
    const created: string[] = [];
    for (let i = 0; i < 5; i++) created.push((await createOrganization(`Paged ${i}`)).id);

    const all = await t.call('GET', '/v1/organizations?limit=100', { token: adminToken });
    const everything: string[] = all.json().data.map((o: { id: string }) => o.id);
    expect(all.json()).toMatchObject({ has_more: false, next_cursor: null });
    expect(everything.filter((id) => created.includes(id))).toEqual(created);

    const paged = await listAll(2);
    expect(paged.ids).toEqual(everything);
    expect(paged.pages).toBe(Math.ceil(everything.length / 2));
    expect(new Set(paged.ids).size).toBe(paged.ids.length);

    const first = await t.call('GET', '/v1/organizations?limit=1', { token: adminToken });
    expect(first.json()).toMatchObject({ has_more: true, next_cursor: expect.any(String) });

    for (const cursor of ['garbage', Buffer.from(`usr_${'0'.repeat(32)}`).toString('base64url')]) {
      const bad = await t.call('GET', `/v1/organizations?cursor=${cursor}`, { token: adminToken });
      expect(bad.statusCode).toBe(400);
      expect(bad.json().error.code).toBe('invalid_cursor');
    }
    for (const limit of ['0', '101', 'ten']) {
      const bad = await t.call('GET', `/v1/organizations?limit=${limit}`, { token: adminToken });
      expect(bad.statusCode).toBe(400);
      expect(bad.json().error.details[0].path).toBe('querystring.limit');
    }
  });

  it('deletes everything an organization owns: its users and its API clients', async () => {
    const doomed = await t.organization('Doomed');
    const survivor = await t.organization('Survivor');
    for (const org of [doomed, survivor]) {
      const res = await t.call('POST', '/v1/users', {
        token: org.token,
        body: { email: 'same@example.com', external_ids: { shopify: '1' } },
      });
      expect(res.statusCode, res.body).toBe(201);
    }
    const extra = await t.call('POST', '/v1/api-clients', {
      token: doomed.token,
      body: { name: 'second client', scopes: ['users:read'] },
    });
    expect(extra.statusCode, extra.body).toBe(201);

    const del = await t.call('DELETE', `/v1/organizations/${doomed.id}`, { token: adminToken });
    expect(del.statusCode, del.body).toBe(204);

    // Its clients' tokens stop working, and their credentials no longer get tokens.
    const call = await t.call('GET', '/v1/users', { token: doomed.token });
    expect(call.statusCode).toBe(401);
    expect(call.json().error.code).toBe('invalid_token');
    for (const [clientId, clientSecret] of [
      [doomed.client.clientId, doomed.client.clientSecret],
      [extra.json().id, extra.json().client_secret],
    ]) {
      const token = await t.call('POST', '/oauth/token', {
        body: { grant_type: 'client_credentials', client_id: clientId, client_secret: clientSecret },
      });
      expect(token.statusCode).toBe(401);
      expect(token.json().error).toBe('invalid_client');
      const got = await t.call('GET', `/v1/api-clients/${clientId}`, { token: adminToken });
      expect(got.statusCode).toBe(404);
    }
    const clients = await t.call('GET', `/v1/api-clients?organization_id=${doomed.id}`, {
      token: adminToken,
    });
    expect(clients.json().data).toEqual([]);
    const leftUsers = await t.app.store.db.select().from(users).where(eq(users.organizationId, doomed.id));
    expect(leftUsers).toEqual([]);

    // The other organization keeps its users and its access.
    const survivors = await t.call('GET', '/v1/users', { token: survivor.token });
    expect(survivors.statusCode).toBe(200);
    expect(survivors.json().data).toEqual([expect.objectContaining({ email: 'same@example.com' })]);
  });

  it('rejects bad input with 400 validation_failed and the field path, and writes nothing', async () => {
    const org = await createOrganization('Valid');
    const cases: Array<[unknown, string]> = [
      [{}, 'body.name'],
      [{ name: '' }, 'body.name'],
      [{ name: '   ' }, 'body.name'],
      [{ name: 42 }, 'body.name'],
      [{ name: 'x'.repeat(201) }, 'body.name'],
      [{ name: 'Fine', plan: 'enterprise' }, 'body'],
    ];
    for (const [body, path] of cases) {
      const res = await t.call('POST', '/v1/organizations', { token: adminToken, body });
      expect(res.statusCode, JSON.stringify(body)).toBe(400);
      expect(res.json().error.code).toBe('validation_failed');
      expect(res.json().error.details.map((d: { path: string }) => d.path)).toContain(path);

      if (path === 'body.name' && Object.keys(body as object).length === 0) continue;
      const patch = await t.call('PATCH', `/v1/organizations/${org.id}`, { token: adminToken, body });
      expect(patch.statusCode, JSON.stringify(body)).toBe(400);
      expect(patch.json().error.code).toBe('validation_failed');
      expect(patch.json().error.details.map((d: { path: string }) => d.path)).toContain(path);
    }
    const still = await t.call('GET', `/v1/organizations/${org.id}`, { token: adminToken });
    expect(still.json().name).toBe('Valid');
    const list = await t.call('GET', '/v1/organizations?limit=100', { token: adminToken });
    expect(list.body).not.toContain('Fine');
  });

  it('answers 404 organization_not_found for unknown and malformed ids', async () => {
    const ids = [
      `org_${'0'.repeat(32)}`,
      `org_${'f'.repeat(32)}`,
      'nope',
      'org_',
      `usr_${'0'.repeat(32)}`,
      "org_' or '1'='1",
    ];
    for (const id of ids) {
      const url = `/v1/organizations/${encodeURIComponent(id)}`;
      for (const [method, body] of [
        ['GET', undefined],
        ['PATCH', { name: 'renamed' }],
        ['PATCH', {}],
        ['DELETE', undefined],
      ] as const) {
        const res = await t.call(method, url, { token: adminToken, body });
        expect(res.statusCode, `${method} ${id}`).toBe(404);
        expect(res.json().error.code).toBe('organization_not_found');
      }
    }
    const list = await t.call('GET', '/v1/organizations?limit=100', { token: adminToken });
    expect(list.body).not.toContain('renamed');
  });

  it('is for admin clients only', async () => {
    const org = await t.organization('Tenant');
    for (const [method, url] of [
      ['GET', '/v1/organizations'],
      ['GET', `/v1/organizations/${org.id}`],
      ['PATCH', `/v1/organizations/${org.id}`],
      ['DELETE', `/v1/organizations/${org.id}`],
    ] as const) {
      const res = await t.call(method, url, {
        token: org.token,
        body: method === 'PATCH' ? { name: 'taken over' } : undefined,
      });
      expect(res.statusCode, `${method} ${url}`).toBe(403);
      expect(res.json().error.code).toBe('insufficient_scope');
    }
    const unauthenticated = await t.call('GET', '/v1/organizations');
    expect(unauthenticated.statusCode).toBe(401);
    const still = await t.call('GET', `/v1/organizations/${org.id}`, { token: adminToken });
    expect(still.json().name).toBe('Tenant');
  });
});
