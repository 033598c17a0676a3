// Secrets rotation in process: every sealed value moves to the active key, old keys can go, and
// tokens issued before the rotation still verify after it.
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type App, createApp, openMigratedStore } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { type RotationProgress, rotateSecrets } from '../src/crypto/rotate.ts';
import { generateKey, keyId, parseKey, SecretBox } from '../src/crypto/secret-box.ts';
import { newId } from '../src/ids.ts';
import type { Store, StoreOptions } from '../src/store/db.ts';
import { signingKeys } from '../src/store/schema.ts';
import { createTokenService } from '../src/tenancy/tokens.ts';
import { createTestDatabase, onPostgres, type TestDatabase } from './helpers/database.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'interchange-rotate-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function testDatabase(): Promise<TestDatabase> {
  const db = await createTestDatabase();
  cleanups.push(() => db.drop());
  return db;
}

/** A store that outlives the apps opened on it: the test database, or PGlite in a data dir. */
async function durableStore(): Promise<StoreOptions> {
  return onPostgres ? (await testDatabase()).options : { kind: 'pglite', dataDir: tempDir() };
}

const configWith = (env: Record<string, string>) =>
  loadConfig({ INTERCHANGE_DATA_DIR: tempDir(), LOG_LEVEL: 'silent', ...env });

const aad = (id: string) => `signing_keys.secret:${id}`;

async function sealedValues(store: Store): Promise<Array<{ id: string; secret: string }>> {
  return store.db.select({ id: signingKeys.id, secret: signingKeys.secret }).from(signingKeys);
}

async function issueToken(app: App): Promise<string> {
  const creds = app.adminCredentials;
  if (!creds) throw new Error('a fresh database must create an admin client');
  const res = await app.server.inject({
    method: 'POST',
    url: '/oauth/token',
    payload: {
      grant_type: 'client_credentials',
      client_id: creds.clientId,
      client_secret: creds.clientSecret,
    },
  });
  expect(res.statusCode, res.body).toBe(200);
  return res.json().access_token as string;
}

async function callWith(app: App, token: string) {
  return app.server.inject({
    method: 'GET',
    url: '/v1/organizations',
    headers: { authorization: `Bearer ${token}` },
  });
}

describe('secrets rotate with INTERCHANGE_SECRET_KEY', () => {
  it('re-seals everything under the first key, retires the others, and keeps old tokens valid', async () => {
    const [OLD, NEW] = [generateKey(), generateKey()];
    const [oldId, newId_] = [keyId(parseKey(OLD)), keyId(parseKey(NEW))];
    const storeOptions = await durableStore();

    // Data sealed under OLD: the bootstrap signing key, plus two more so the walk covers several rows.
    const before = await createApp(configWith({ INTERCHANGE_SECRET_KEY: OLD }), { store: storeOptions });
    const admin = before.adminCredentials;
    const token = await issueToken(before);
    const oldBox = new SecretBox([parseKey(OLD)]);
    for (let i = 0; i < 2; i++) {
      const id = newId('signingKey');
      await before.store.db
        .insert(signingKeys)
        .values({ id, secret: oldBox.encrypt(`extra-signing-key-${i}`, aad(id)) });
    }
    const plaintexts = new Map(
      (await sealedValues(before.store)).map((r) => [r.id, oldBox.decrypt(r.secret, aad(r.id))]),
    );
    expect(plaintexts.size).toBe(3);
    await before.close();

    const config = configWith({ INTERCHANGE_SECRET_KEY: `${NEW},${OLD}` });
    const store = await openMigratedStore(config, storeOptions);
    const progress: RotationProgress & { total?: number; done: number; stopped: boolean } = {
      done: 0,
      stopped: false,
      start(total) {
        this.total = total;
      },
      increment(n) {
        this.done += n;
      },
      stop() {
        this.stopped = true;
      },
    };
    let rows: Array<{ id: string; secret: string }>;
    try {
      const result = await rotateSecrets(config, store, { progress });
      expect(result).toEqual({ activeKeyId: newId_, resealed: 3, source: 'env', retiredKeyIds: [oldId] });
      expect(progress).toMatchObject({ total: 3, done: 3, stopped: true });
      rows = await sealedValues(store);
    } finally {
      await store.close();
    }

    expect(rows).toHaveLength(3);
    const newBox = new SecretBox([parseKey(NEW)]);
    for (const row of rows) {
      expect(row.secret.startsWith(`v1.${newId_}.`), row.secret).toBe(true);
      expect(newBox.decrypt(row.secret, aad(row.id))).toBe(plaintexts.get(row.id));
      expect(() => oldBox.decrypt(row.secret, aad(row.id))).toThrow(`no key with id ${newId_}`);
    }

    // With NEW alone the app starts, still honours the token issued under OLD, and the old credentials.
    const after = await createApp(configWith({ INTERCHANGE_SECRET_KEY: NEW }), { store: storeOptions });
    try {
      expect(after.adminCredentials).toBeUndefined();
      await expect(after.services.tokens.verify(token)).resolves.toMatchObject({
        clientId: admin?.clientId,
        organizationId: null,
        scopes: ['admin'],
      });
      expect((await callWith(after, token)).statusCode).toBe(200);
      const res = await after.server.inject({
        method: 'POST',
        url: '/oauth/token',
        payload: {
          grant_type: 'client_credentials',
          client_id: admin?.clientId,
          client_secret: admin?.clientSecret,
        },
      });
      expect(res.statusCode, res.body).toBe(200);
    } finally {
      await after.close();
    }

    // OLD alone no longer opens the data: the rotation really moved it.
    await expect(
      createApp(configWith({ INTERCHANGE_SECRET_KEY: OLD }), { store: storeOptions }),
    ).rejects.toThrow(`no key with id ${newId_}`);
  }, 60_000);

  it('re-seals nothing when every value is already under the active key', async () => {
    const [OLD, NEW] = [generateKey(), generateKey()];
    const db = await testDatabase();
    const config = configWith({ INTERCHANGE_SECRET_KEY: `${NEW},${OLD}` });
    const app = await createApp(config, { store: db.options });
    try {
      const sealed = await sealedValues(app.store);
      expect(sealed).toHaveLength(1);
      expect(sealed[0]?.secret.startsWith(`v1.${keyId(parseKey(NEW))}.`)).toBe(true);

      for (let run = 0; run < 2; run++) {
        const result = await rotateSecrets(config, app.store);
        expect(result.resealed).toBe(0);
        expect(result.activeKeyId).toBe(keyId(parseKey(NEW)));
      }
      const alone = configWith({ INTERCHANGE_SECRET_KEY: NEW });
      expect(await rotateSecrets(alone, app.store)).toMatchObject({ resealed: 0, retiredKeyIds: [] });
      // Nothing was rewritten: not even a fresh IV.
      expect(await sealedValues(app.store)).toEqual(sealed);
    } finally {
      await app.close();
    }
  }, 60_000);
});

describe('secrets rotate with the embedded key file', () => {
  it('leaves the key file with one new key, mode 0600, that opens every re-sealed value', async () => {
    const dataDir = tempDir();
    const config = loadConfig({ INTERCHANGE_DATA_DIR: dataDir, LOG_LEVEL: 'silent' });
    expect(config.embedded).toBe(true);
    const keyPath = join(dataDir, 'secret-keys.json');
    const readKeys = () => JSON.parse(readFileSync(keyPath, 'utf8')).keys as string[];

    const storeOptions = await durableStore();
    const app = await createApp(config, { store: storeOptions });
    const token = await issueToken(app);
    const clientId = app.adminCredentials?.clientId;
    const [oldKey, ...others] = readKeys();
    expect(others).toEqual([]);
    const plaintext = new Map(
      (await sealedValues(app.store)).map((r) => [
        r.id,
        new SecretBox([parseKey(oldKey as string)]).decrypt(r.secret, aad(r.id)),
      ]),
    );
    // While the hub runs with the old key alone, the rotation is refused and changes nothing.
    await expect(rotateSecrets(config, app.store, { switchWaitMs: 0 })).rejects.toThrow(
      /running process\(es\) do not have the new key .*nothing was changed/,
    );
    expect(readKeys()).toEqual([oldKey]);
    await app.close();

    const store = await openMigratedStore(config, storeOptions);
    try {
      const result = await rotateSecrets(config, store);

      const keys = readKeys();
      expect(keys).toHaveLength(1);
      const [newKey] = keys as [string];
      expect(newKey).not.toBe(oldKey);
      expect(statSync(keyPath).mode & 0o777).toBe(0o600);
      expect(result).toEqual({
        activeKeyId: keyId(parseKey(newKey)),
        resealed: 1,
        source: 'file',
        retiredKeyIds: [keyId(parseKey(oldKey as string))],
      });
      const newBox = new SecretBox([parseKey(newKey)]);
      for (const row of await sealedValues(store)) {
        expect(row.secret.startsWith(`v1.${result.activeKeyId}.`)).toBe(true);
        expect(newBox.decrypt(row.secret, aad(row.id))).toBe(plaintext.get(row.id));
      }

      // A token service reading the re-sealed keys with the key file's one key verifies the old token.
      const tokens = createTokenService({
        db: store.db,
        box: newBox,
        issuer: config.tokenIssuer,
        ttlSeconds: config.tokenTtlSeconds,
      });
      await tokens.load();
      await expect(tokens.verify(token)).resolves.toMatchObject({ clientId });
    } finally {
      await store.close();
    }
  }, 60_000);
});
