// Verified tokens are remembered until they expire: the second request with a token does not
// verify its signature again, and nothing else changes (expiry, tampering, other tokens).
import * as jose from 'jose';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../../test/helpers/database.ts';
import { generateKey, parseKey, SecretBox } from '../crypto/secret-box.ts';
import { openStore, type Store } from '../store/db.ts';
import { migrate } from '../store/migrate.ts';
import type { ApiClient } from './api-clients.ts';
import { createTokenService, ensureSigningKey } from './tokens.ts';

vi.mock('jose', async (importOriginal) => {
  const actual = await importOriginal<typeof import('jose')>();
  return { ...actual, jwtVerify: vi.fn(actual.jwtVerify) };
});

let database: TestDatabase;
let store: Store;
const box = new SecretBox([parseKey(generateKey())]);
const client = {
  id: 'cli_1',
  organizationId: 'org_1',
  name: 'c',
  scopes: ['users:read', 'users:write'],
  tier: 'free',
  createdAt: new Date(),
  updatedAt: new Date(),
  lastUsedAt: null,
} as ApiClient;

beforeAll(async () => {
  database = await createTestDatabase();
  store = await openStore(database.options);
  await migrate(store);
  await ensureSigningKey(store.db, box);
});

afterAll(async () => {
  await store.close();
  await database.drop();
});

describe('token verification', () => {
  it('verifies a token once, answers the same from memory until it expires, and then refuses it', async () => {
    const tokens = createTokenService({ db: store.db, box, issuer: 'https://hub.test', ttlSeconds: 60 });
    const verify = vi.mocked(jose.jwtVerify);
    const { access_token: token } = await tokens.issue(client, ['users:read']);
    const { access_token: other } = await tokens.issue(client, ['users:write']);
    verify.mockClear();

    const first = await tokens.verify(token);
    expect(first).toEqual({ clientId: 'cli_1', organizationId: 'org_1', scopes: ['users:read'] });
    first.scopes.push('admin'); // a caller's change does not reach the next answer
    expect(await tokens.verify(token)).toEqual({
      clientId: 'cli_1',
      organizationId: 'org_1',
      scopes: ['users:read'],
    });
    expect(verify).toHaveBeenCalledTimes(1);
    expect((await tokens.verify(other)).scopes).toEqual(['users:write']);
    expect(verify).toHaveBeenCalledTimes(2);

    // A token differing in its signature is a token of its own, checked, and refused.
    const [header, payload, signature] = token.split('.') as [string, string, string];
    const tampered = `${header}.${payload}.${signature.slice(0, -2)}${signature.endsWith('AA') ? 'BB' : 'AA'}`;
    await expect(tokens.verify(tampered)).rejects.toMatchObject({ code: 'invalid_token' });

    // Past its expiry a remembered token is refused as jose would refuse it.
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      vi.setSystemTime(Date.now() + 61_000);
      await expect(tokens.verify(token)).rejects.toMatchObject({ code: 'invalid_token' });
    } finally {
      vi.useRealTimers();
    }
  });
});
