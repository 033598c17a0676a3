// Key rotation while the hub runs, as an operator does it: deploy NEW,OLD to every process, run
// `secrets rotate`, deploy NEW alone. Every step keeps every process answering webhooks; a step
// taken too early is refused, and a process that meets a secret sealed with a key it lacks answers
// 503 secret_key_unavailable (never 500) and logs the key's id.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { eq } from 'drizzle-orm';
import { afterAll, describe, expect, it } from 'vitest';
import { stripeCustomer, stripeEvent, stripeWebhookRequest } from '../sim/stripe.ts';
import { type App, createApp, openMigratedStore } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { setActiveKey } from '../src/crypto/key-registry.ts';
import { RotationRefusedError, rotateSecrets } from '../src/crypto/rotate.ts';
import { generateKey, keyId, parseKey, SecretBox } from '../src/crypto/secret-box.ts';
import type { StoreOptions } from '../src/store/db.ts';
import { installations, signingKeys } from '../src/store/schema.ts';
import { createTestDatabase, onPostgres } from './helpers/database.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'interchange-rotate-running-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A store that outlives the apps opened on it: a fresh PostgreSQL database, or PGlite in a data dir. */
async function durableStore(): Promise<StoreOptions> {
  if (!onPostgres) return { kind: 'pglite', dataDir: tempDir() };
  const db = await createTestDatabase();
  cleanups.push(() => db.drop());
  return db.options;
}

const configWith = (key: string) =>
  loadConfig({ INTERCHANGE_DATA_DIR: tempDir(), INTERCHANGE_SECRET_KEY: key, LOG_LEVEL: 'info' });

const idOf = (key: string) => keyId(parseKey(key));

interface Running {
  app: App;
  logs(): string;
}

/** An app as one process of the hub, its log lines kept. */
async function startProcess(key: string, store: StoreOptions): Promise<Running> {
  const lines: string[] = [];
  const app = await createApp(configWith(key), {
    store,
    logDestination: new Writable({
      write(chunk, _enc, done) {
        lines.push(String(chunk));
        done();
      },
    }),
  });
  cleanups.push(() => app.close().catch(() => {}));
  return { app, logs: () => lines.join('') };
}

async function call(app: App, method: 'GET' | 'POST', url: string, token: string, body?: unknown) {
  return app.server.inject({
    method,
    url,
    headers: { authorization: `Bearer ${token}` },
    ...(body === undefined ? {} : { payload: body as never }),
  });
}

async function tokenFor(app: App, clientId: string, clientSecret: string): Promise<string> {
  const res = await app.server.inject({
    method: 'POST',
    url: '/oauth/token',
    payload: { grant_type: 'client_credentials', client_id: clientId, client_secret: clientSecret },
  });
  expect(res.statusCode, res.body).toBe(200);
  return res.json().access_token;
}

/** An organization with a client, on the first process (which created the admin client). */
async function organization(first: App): Promise<{ clientId: string; clientSecret: string }> {
  const creds = first.adminCredentials;
  if (!creds) throw new Error('the first process of a fresh database creates the admin client');
  const admin = await tokenFor(first, creds.clientId, creds.clientSecret);
  const org = await call(first, 'POST', '/v1/organizations', admin, { name: 'Acme' });
  expect(org.statusCode, org.body).toBe(201);
  const client = await call(first, 'POST', '/v1/api-clients', admin, {
    name: 'Acme backend',
    organization_id: org.json().id,
  });
  expect(client.statusCode, client.body).toBe(201);
  return { clientId: client.json().id, clientSecret: client.json().client_secret };
}

interface StripeInstallation {
  id: string;
  secret: string;
}

async function installStripe(
  app: App,
  creds: { clientId: string; clientSecret: string },
  n: number,
): Promise<StripeInstallation> {
  const secret = `whsec_rotation_test_${n}_0123456789abcdef`;
  const res = await call(
    app,
    'POST',
    '/v1/installations',
    await tokenFor(app, creds.clientId, creds.clientSecret),
    {
      connector: 'stripe',
      config: { accountId: `acct_rotation${n}` },
      secrets: { webhookSecret: secret },
    },
  );
  expect(res.statusCode, res.body).toBe(201);
  return { id: res.json().id, secret };
}

/** Stripe delivers a signed customer.created to the installation's URL on `app`. */
async function webhook(app: App, installation: StripeInstallation) {
  const event = stripeEvent('customer.created', stripeCustomer());
  const { body, headers } = stripeWebhookRequest(event, { secret: installation.secret });
  const res = await app.server.inject({
    method: 'POST',
    url: `/hooks/${installation.id}`,
    headers,
    payload: body,
  });
  return { status: res.statusCode, code: res.json().error?.code as string | undefined, headers: res.headers };
}

async function expectWebhooksAnswered(apps: App[], installs: StripeInstallation[]) {
  for (const app of apps) {
    for (const installation of installs) {
      // Each process keeps installations for 2 s: forget them, as if that time had passed.
      app.services.installations.forget(installation.id);
      expect(await webhook(app, installation), installation.id).toMatchObject({ status: 200 });
    }
  }
}

/** The key id each stored secret is sealed with. */
async function sealedWith(app: App): Promise<string[]> {
  const rows = [
    ...(await app.store.db.select({ v: installations.secrets }).from(installations)),
    ...(await app.store.db.select({ v: signingKeys.secret }).from(signingKeys)),
  ];
  return [...new Set(rows.map((r) => (r.v ? (SecretBox.keyIdOf(r.v) ?? 'malformed') : 'none')))];
}

describe.runIf(onPostgres)('rotation with several processes on one database (requires DATABASE_URL)', () => {
  it('deploy NEW,OLD → rotate → deploy NEW: every process answers webhooks at every step', async () => {
    const [OLD, NEW] = [generateKey(), generateKey()];
    const store = await durableStore();

    // Processes running on OLD.
    const a = await startProcess(OLD, store);
    const creds = await organization(a.app);
    const first = await installStripe(a.app, creds, 1);
    await expectWebhooksAnswered([a.app], [first]);

    // Step 1, a rolling deploy of NEW,OLD: a new process starts while A still runs OLD alone. It
    // seals with OLD, the database's active key, so A reads what it seals.
    const b = await startProcess(`${NEW},${OLD}`, store);
    const second = await installStripe(b.app, creds, 2);
    expect(await sealedWith(b.app)).toEqual([idOf(OLD)]);
    await expectWebhooksAnswered([a.app, b.app], [first, second]);

    // Rotating now would leave A unable to read: refused, and nothing changes.
    const rotateConfig = configWith(`${NEW},${OLD}`);
    const rotator = await openMigratedStore(rotateConfig, store);
    cleanups.push(() => rotator.close());
    const refused = await rotateSecrets(rotateConfig, rotator).catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(RotationRefusedError);
    expect((refused as Error).message).toContain(`do not have the new key ${idOf(NEW)}`);
    expect((refused as Error).message).toContain(`keys ${idOf(OLD)})`);
    expect((refused as Error).message).toContain('nothing was changed');
    expect(await sealedWith(b.app)).toEqual([idOf(OLD)]);
    await expectWebhooksAnswered([a.app, b.app], [first, second]);

    // A gets NEW,OLD too; now the rotation goes through, and both processes seal with NEW at once.
    await a.app.close();
    const a2 = await startProcess(`${NEW},${OLD}`, store);
    const result = await rotateSecrets(rotateConfig, rotator);
    expect(result).toMatchObject({ activeKeyId: idOf(NEW), retiredKeyIds: [idOf(OLD)] });
    expect(await sealedWith(b.app)).toEqual([idOf(NEW)]);
    expect([a2.app.box.activeKeyId, b.app.box.activeKeyId]).toEqual([idOf(NEW), idOf(NEW)]);
    const third = await installStripe(b.app, creds, 3);
    expect(await sealedWith(b.app)).toEqual([idOf(NEW)]);
    await expectWebhooksAnswered([a2.app, b.app], [first, second, third]);

    // Step 3, NEW alone, deployed while NEW,OLD processes still run.
    await b.app.close();
    const c = await startProcess(NEW, store);
    await expectWebhooksAnswered([a2.app, c.app], [first, second, third]);
    // A process given OLD alone can no longer start, and says which key it lacks.
    await expect(startProcess(OLD, store)).rejects.toThrow(`no key with id ${idOf(NEW)} is configured`);
    // Nothing left to move.
    await expect(rotateSecrets(configWith(NEW), rotator)).resolves.toMatchObject({
      resealed: 0,
      retiredKeyIds: [],
    });
  }, 120_000);
});

describe('rotation, one process at a time', () => {
  it('a process started with NEW,OLD seals with OLD until rotate, then follows it without a restart', async () => {
    const [OLD, NEW] = [generateKey(), generateKey()];
    const store = await durableStore();
    const old = await startProcess(OLD, store);
    const creds = await organization(old.app);
    const first = await installStripe(old.app, creds, 1);
    await old.app.close();

    const running = await startProcess(`${NEW},${OLD}`, store);
    const second = await installStripe(running.app, creds, 2);
    // Readable by a process that has OLD alone.
    expect(await sealedWith(running.app)).toEqual([idOf(OLD)]);

    // Rotating with this process running: it has NEW, so it switches and the rotation proceeds.
    const result = await rotateSecrets(configWith(`${NEW},${OLD}`), running.app.store);
    expect(result).toMatchObject({ activeKeyId: idOf(NEW), resealed: 3, retiredKeyIds: [idOf(OLD)] });
    expect(running.app.box.activeKeyId).toBe(idOf(NEW));
    expect(running.logs()).toContain(`sealing new secrets with key ${idOf(NEW)} from now on`);
    const third = await installStripe(running.app, creds, 3);
    expect(await sealedWith(running.app)).toEqual([idOf(NEW)]);
    await expectWebhooksAnswered([running.app], [first, second, third]);
  }, 90_000);

  it('refuses to rotate while a stored secret is sealed with a key not listed, changing nothing', async () => {
    const [OLD, NEW] = [generateKey(), generateKey()];
    const store = await durableStore();
    const old = await startProcess(OLD, store);
    await old.app.close();

    // NEW alone, too early: OLD still seals the signing key.
    const config = configWith(NEW);
    const rotator = await openMigratedStore(config, store);
    try {
      await expect(rotateSecrets(config, rotator)).rejects.toThrow(
        new RegExp(
          `sealed with keys INTERCHANGE_SECRET_KEY does not include here \\(1 with key ${idOf(OLD)}\\).*nothing was changed`,
        ),
      );
      expect(
        (await rotator.db.select({ v: signingKeys.secret }).from(signingKeys)).map((r) =>
          SecretBox.keyIdOf(r.v),
        ),
      ).toEqual([idOf(OLD)]);
    } finally {
      await rotator.close();
    }
    // And a process with NEW alone refuses to start, naming OLD.
    await expect(startProcess(NEW, store)).rejects.toThrow(
      `no key with id ${idOf(OLD)} is configured (1 stored secret(s) are sealed with it)`,
    );
  }, 90_000);

  it('a secret sealed with a key the process lacks: 503 secret_key_unavailable, one log line naming its id', async () => {
    const [OLD, OTHER] = [generateKey(), generateKey()];
    const store = await durableStore();
    const running = await startProcess(OLD, store);
    const creds = await organization(running.app);
    const installation = await installStripe(running.app, creds, 1);
    // As a process with another key set would have sealed it (a key removed too early, say).
    const aad = `installations.secrets:${installation.id}`;
    const foreign = new SecretBox([parseKey(OTHER)]).encrypt(
      JSON.stringify({ webhookSecret: installation.secret }),
      aad,
    );
    await running.app.store.db
      .update(installations)
      .set({ secrets: foreign })
      .where(eq(installations.id, installation.id));
    running.app.services.installations.forget(installation.id);

    for (let i = 0; i < 5; i++) {
      const res = await webhook(running.app, installation);
      expect(res).toMatchObject({ status: 503, code: 'secret_key_unavailable' });
      expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
    }
    const lines = running
      .logs()
      .split('\n')
      .filter((l) => l.includes(idOf(OTHER)));
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0] as string)).toMatchObject({ level: 50, key_id: idOf(OTHER) });
    expect(running.logs()).not.toContain(OTHER);
    expect(running.logs()).not.toContain('"statusCode":500');
  }, 90_000);

  it('a process the rotation did not see (cut off) stops sealing once it learns of a key it lacks', async () => {
    const [OLD, NEW] = [generateKey(), generateKey()];
    const store = await durableStore();
    const running = await startProcess(OLD, store);
    const creds = await organization(running.app);
    // As if `secrets rotate` had run while this process could not reach the database.
    await setActiveKey(running.app.store.db, idOf(NEW));
    const until = Date.now() + 15_000;
    while (!running.logs().includes(`seals new secrets with key ${idOf(NEW)}`) && Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    // It does not seal a secret with OLD that the others could not read once OLD is gone.
    const res = await call(
      running.app,
      'POST',
      '/v1/installations',
      await tokenFor(running.app, creds.clientId, creds.clientSecret),
      {
        connector: 'stripe',
        config: { accountId: 'acct_cutoff' },
        secrets: { webhookSecret: 'whsec_cut_off_0123456789abcdef' },
      },
    );
    expect(res.statusCode, res.body).toBe(503);
    expect(res.json().error.code).toBe('secret_key_unavailable');
    expect(await sealedWith(running.app)).toEqual([idOf(OLD)]);
    const lines = running
      .logs()
      .split('\n')
      .filter((l) => l.includes(`seals new secrets with key ${idOf(NEW)}`));
    expect(lines).toHaveLength(1);
    expect(running.logs()).not.toContain(NEW);
  }, 90_000);
});
