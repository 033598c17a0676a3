// POST /oauth/token (RFC 6749 client credentials) and bearer-token checks on /v1: every way a
// token request or a token can be wrong, next to a control that shows the same call otherwise works.
import { randomBytes } from 'node:crypto';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ORGANIZATION_SCOPES } from '../src/tenancy/scopes.ts';
import { createTokenService } from '../src/tenancy/tokens.ts';
import { type Credentials, startTestApp, type TestApp } from './helpers/app.ts';

let t: TestApp;
let acme: Awaited<ReturnType<TestApp['organization']>>;
let globex: Awaited<ReturnType<TestApp['organization']>>;

beforeAll(async () => {
  t = await startTestApp();
  acme = await t.organization('Acme');
  globex = await t.organization('Globex');
});
afterAll(() => t?.close());

const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();
const formHeaders = { 'content-type': 'application/x-www-form-urlencoded' };

/** RFC 6749 §2.3.1: each part is form-urlencoded, then `id:secret` is base64-encoded. */
function basic(id: string, secret: string, encode: (s: string) => string = encodeURIComponent): string {
  return `Basic ${Buffer.from(`${encode(id)}:${encode(secret)}`).toString('base64')}`;
}

/** Percent-encodes every character, which a compliant server must decode back. */
const encodeEveryChar = (s: string) =>
  [...s].map((c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`).join('');

function requestToken(payload: unknown, headers: Record<string, string> = {}) {
  return t.app.server.inject({
    method: 'POST',
    url: '/oauth/token',
    headers,
    payload: payload as never,
  });
}

function credentialsBody(creds: Credentials, extra: Record<string, string> = {}) {
  return {
    grant_type: 'client_credentials',
    client_id: creds.clientId,
    client_secret: creds.clientSecret,
    ...extra,
  };
}

function decodePart(token: string, index: 0 | 1): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[index] as string, 'base64url').toString('utf8'));
}

const encodePart = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

async function expectOAuthError(
  res: Awaited<ReturnType<typeof requestToken>>,
  status: number,
  error: string,
): Promise<void> {
  expect(res.statusCode, res.body).toBe(status);
  expect(res.json()).toEqual({ error, error_description: expect.any(String) });
  expect(res.headers['cache-control']).toBe('no-store');
}

async function expectInvalidToken(token: string, url = '/v1/users'): Promise<void> {
  const res = await t.call('GET', url, { token });
  expect(res.statusCode, res.body).toBe(401);
  expect(res.json().error.code).toBe('invalid_token');
  expect(res.headers['www-authenticate']).toContain('invalid_token');
}

describe('POST /oauth/token', () => {
  it('issues a bearer token for form-encoded credentials', async () => {
    const res = await requestToken(form(credentialsBody(acme.client)), formHeaders);
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json();
    expect(body).toEqual({
      access_token: expect.stringMatching(/^[\w-]+\.[\w-]+\.[\w-]+$/),
      token_type: 'Bearer',
      expires_in: 3600,
      scope: ORGANIZATION_SCOPES.join(' '),
    });
    expect(res.headers['cache-control']).toBe('no-store');
    // The token works on the API.
    const users = await t.call('GET', '/v1/users', { token: body.access_token });
    expect(users.statusCode, users.body).toBe(200);
  });

  it('issues a bearer token for a JSON body', async () => {
    const res = await requestToken(credentialsBody(acme.client));
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ token_type: 'Bearer', expires_in: 3600 });
    expect(res.headers['cache-control']).toBe('no-store');
    const users = await t.call('GET', '/v1/users', { token: res.json().access_token });
    expect(users.statusCode).toBe(200);
  });

  it('accepts HTTP Basic credentials, url-decoding both parts (RFC 6749 §2.3.1)', async () => {
    const plain = await requestToken(form({ grant_type: 'client_credentials' }), {
      ...formHeaders,
      authorization: basic(acme.client.clientId, acme.client.clientSecret),
    });
    expect(plain.statusCode, plain.body).toBe(200);
    expect(plain.json().token_type).toBe('Bearer');
    expect(plain.headers['cache-control']).toBe('no-store');

    // Every character percent-encoded: only a server that url-decodes the parts accepts this.
    const encoded = await requestToken(
      { grant_type: 'client_credentials' },
      { authorization: basic(acme.client.clientId, acme.client.clientSecret, encodeEveryChar) },
    );
    expect(encoded.statusCode, encoded.body).toBe(200);
    const users = await t.call('GET', '/v1/users', { token: encoded.json().access_token });
    expect(users.statusCode).toBe(200);

    const wrong = await requestToken(
      { grant_type: 'client_credentials' },
      { authorization: basic(acme.client.clientId, `${acme.client.clientSecret}x`) },
    );
    await expectOAuthError(wrong, 401, 'invalid_client');
    expect(wrong.headers['www-authenticate']).toMatch(/^Basic /);
  });

  it('answers 401 invalid_client for a wrong secret, an unknown client or no credentials', async () => {
    const wrongSecret = await requestToken(
      credentialsBody({ clientId: acme.client.clientId, clientSecret: globex.client.clientSecret }),
    );
    await expectOAuthError(wrongSecret, 401, 'invalid_client');
    expect(wrongSecret.body).not.toContain(globex.client.clientSecret);

    const unknownWellFormed = await requestToken(
      credentialsBody({ clientId: `cli_${'0'.repeat(32)}`, clientSecret: acme.client.clientSecret }),
    );
    await expectOAuthError(unknownWellFormed, 401, 'invalid_client');
    const unknownMalformed = await requestToken(
      credentialsBody({ clientId: 'nobody', clientSecret: acme.client.clientSecret }),
    );
    await expectOAuthError(unknownMalformed, 401, 'invalid_client');

    const none = await requestToken({ grant_type: 'client_credentials' });
    await expectOAuthError(none, 401, 'invalid_client');
    const idOnly = await requestToken({ grant_type: 'client_credentials', client_id: acme.client.clientId });
    await expectOAuthError(idOnly, 401, 'invalid_client');
  });

  it('answers 400 invalid_request for credentials sent both by Basic and in the body', async () => {
    const both = await requestToken(credentialsBody(acme.client), {
      authorization: basic(acme.client.clientId, acme.client.clientSecret),
    });
    await expectOAuthError(both, 400, 'invalid_request');
    const idInBody = await requestToken(
      form({ grant_type: 'client_credentials', client_id: acme.client.clientId }),
      { ...formHeaders, authorization: basic(acme.client.clientId, acme.client.clientSecret) },
    );
    await expectOAuthError(idInBody, 400, 'invalid_request');
  });

  it('answers 400 invalid_request without grant_type and unsupported_grant_type for other grants', async () => {
    const { grant_type: _omitted, ...noGrant } = credentialsBody(acme.client);
    await expectOAuthError(await requestToken(noGrant), 400, 'invalid_request');
    await expectOAuthError(await requestToken(form(noGrant), formHeaders), 400, 'invalid_request');

    for (const grant of ['password', 'authorization_code', 'refresh_token', 'CLIENT_CREDENTIALS']) {
      const res = await requestToken(credentialsBody(acme.client, { grant_type: grant }));
      await expectOAuthError(res, 400, 'unsupported_grant_type');
      expect(res.body).not.toContain('access_token');
    }
  });

  it('issues a token for a subset of the scopes, which then lacks the others', async () => {
    const res = await requestToken(
      form(credentialsBody(acme.client, { scope: 'users:read api_clients:read' })),
      formHeaders,
    );
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().scope).toBe('users:read api_clients:read');
    const token = res.json().access_token;

    expect((await t.call('GET', '/v1/users', { token })).statusCode).toBe(200);
    const write = await t.call('POST', '/v1/users', { token, body: { name: 'Not allowed' } });
    expect(write.statusCode).toBe(403);
    expect(write.json().error.code).toBe('insufficient_scope');
    expect(write.headers['www-authenticate']).toContain('scope="users:write"');
    // Nothing was written.
    const list = await t.call('GET', '/v1/users?limit=100', { token });
    expect(list.body).not.toContain('Not allowed');
  });

  it('answers 400 invalid_scope for a scope the client does not hold', async () => {
    const readOnly = await t.organization('ReadOnly', { scopes: ['users:read'] });
    for (const scope of ['users:write', 'users:read users:write', 'admin', 'no-such-scope', ' ']) {
      const res = await requestToken(credentialsBody(readOnly.client, { scope }));
      await expectOAuthError(res, 400, 'invalid_scope');
    }
    const ok = await requestToken(credentialsBody(readOnly.client, { scope: 'users:read' }));
    expect(ok.statusCode, ok.body).toBe(200);
    expect(ok.json().scope).toBe('users:read');
  });
});

describe('bearer tokens on /v1', () => {
  it('answers 401 unauthorized without a token', async () => {
    const variants: Record<string, string>[] = [
      {},
      { authorization: '' },
      { authorization: 'Bearer' },
      { authorization: 'Basic abc' },
    ];
    for (const headers of variants) {
      const res = await t.call('GET', '/v1/users', { headers });
      expect(res.statusCode).toBe(401);
      expect(res.json().error.code).toBe('unauthorized');
    }
  });

  it('answers 401 invalid_token for a garbage token', async () => {
    await expectInvalidToken('garbage');
    await expectInvalidToken('a.b.c');
    await expectInvalidToken(`${acme.token}x`);
  });

  it('answers 401 for a token whose payload was changed', async () => {
    const readOnly = await t.token(acme.client, 'users:read');
    // Control: the untouched token is valid but may not write.
    const denied = await t.call('POST', '/v1/users', { token: readOnly, body: {} });
    expect(denied.statusCode).toBe(403);

    const [header, payload, signature] = readOnly.split('.') as [string, string, string];
    // One character of the payload changed (the first: its bits always count).
    const flipped = `${header}.${payload[0] === 'e' ? 'f' : 'e'}${payload.slice(1)}.${signature}`;
    await expectInvalidToken(flipped);

    // A payload rewritten to grant more, or to act in another organization, keeping the signature.
    const claims = decodePart(readOnly, 1);
    const escalated = `${header}.${encodePart({ ...claims, scope: 'users:read users:write' })}.${signature}`;
    const write = await t.call('POST', '/v1/users', { token: escalated, body: { name: 'Mallory' } });
    expect(write.statusCode).toBe(401);
    expect(write.json().error.code).toBe('invalid_token');
    const otherOrg = `${header}.${encodePart({ ...claims, org: globex.id })}.${signature}`;
    await expectInvalidToken(otherOrg);

    const users = await t.call('GET', '/v1/users?limit=100', { token: acme.token });
    expect(users.body).not.toContain('Mallory');
  });

  it('answers 401 for an expired token', async () => {
    const token = await t.token(acme.client);
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      vi.setSystemTime(Date.now() + (3600 - 60) * 1000);
      const before = await t.call('GET', '/v1/users', { token });
      expect(before.statusCode, before.body).toBe(200);
      vi.setSystemTime(Date.now() + 61 * 1000);
      await expectInvalidToken(token);
    } finally {
      vi.useRealTimers();
    }
    // Back at the real time the token is valid again, so the 401 above came from its expiry.
    expect((await t.call('GET', '/v1/users', { token })).statusCode).toBe(200);
  });

  it('answers 401 for a token with a foreign issuer, signed with the right key', async () => {
    const client = await t.app.services.apiClients.current(acme.client.clientId);
    if (!client) throw new Error('client missing');
    const options = { db: t.app.store.db, box: t.app.box, ttlSeconds: 3600 };

    // Control: the same key and claims with this service's issuer make a working token.
    const genuine = createTokenService({ ...options, issuer: t.app.config.tokenIssuer });
    await genuine.load();
    const control = (await genuine.issue(client, ['users:read'])).access_token;
    expect((await t.call('GET', '/v1/users', { token: control })).statusCode).toBe(200);

    const evil = createTokenService({ ...options, issuer: 'https://evil.example' });
    await evil.load();
    const foreign = (await evil.issue(client, ['users:read'])).access_token;
    expect(decodePart(foreign, 1).iss).toBe('https://evil.example');
    expect(decodePart(foreign, 0).kid).toBe(decodePart(control, 0).kid);
    await expectInvalidToken(foreign);
  });

  it('answers 401 for a token signed with another key', async () => {
    const claims = decodePart(acme.token, 1);
    const header = decodePart(acme.token, 0);
    const forged = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: String(header.kid) })
      .sign(randomBytes(32));
    await expectInvalidToken(forged);
  });

  it('answers 401 for an alg:none token', async () => {
    const [header, payload] = acme.token.split('.') as [string, string];
    const none = `${encodePart({ ...decodePart(acme.token, 0), alg: 'none' })}.${payload}.`;
    await expectInvalidToken(none);
    // The same with the original header but no signature.
    await expectInvalidToken(`${header}.${payload}.`);
  });

  it('answers 401 for a token of a deleted API client', async () => {
    const org = await t.organization('Doomed');
    expect((await t.call('GET', '/v1/users', { token: org.token })).statusCode).toBe(200);
    const admin = await t.token(t.admin);
    const del = await t.call('DELETE', `/v1/api-clients/${org.client.clientId}`, { token: admin });
    expect(del.statusCode, del.body).toBe(204);
    await expectInvalidToken(org.token);
    await expectOAuthError(await requestToken(credentialsBody(org.client)), 401, 'invalid_client');
  });

  it('answers 403 organization_required for an admin token on an organization route', async () => {
    const admin = await t.token(t.admin);
    const res = await t.call('GET', '/v1/users', { token: admin });
    expect(res.statusCode).toBe(403);
    expect(res.json().error.code).toBe('organization_required');
    const create = await t.call('POST', '/v1/users', { token: admin, body: { name: 'x' } });
    expect(create.statusCode).toBe(403);
    expect(create.json().error.code).toBe('organization_required');
  });

  it('answers 403 insufficient_scope for an organization token on an admin route', async () => {
    for (const [method, url] of [
      ['GET', '/v1/organizations'],
      ['POST', '/v1/organizations'],
      ['GET', `/v1/organizations/${acme.id}`],
      ['DELETE', `/v1/organizations/${globex.id}`],
    ] as const) {
      const res = await t.call(method, url, {
        token: acme.token,
        body: method === 'POST' ? { name: 'x' } : undefined,
      });
      expect(res.statusCode, `${method} ${url}`).toBe(403);
      expect(res.json().error.code).toBe('insufficient_scope');
      expect(res.headers['www-authenticate']).toContain('scope="admin"');
    }
    // Globex is still there.
    const admin = await t.token(t.admin);
    expect((await t.call('GET', `/v1/organizations/${globex.id}`, { token: admin })).statusCode).toBe(200);
  });
});
