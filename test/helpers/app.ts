// An Interchange app for a test: its own database (see database.ts), a fresh secret key, captured
// log lines, and helpers to get tokens and call the API in process (`inject`) or over a socket.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { type App, createApp } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import { generateKey } from '../../src/crypto/secret-box.ts';
import { createTestDatabase, type TestDatabase } from './database.ts';

export interface Credentials {
  clientId: string;
  clientSecret: string;
}

export interface TestApp {
  app: App;
  db: TestDatabase;
  admin: Credentials;
  secretKey: string;
  /** Every log line the app wrote so far. */
  logs(): string;
  token(creds: Credentials, scope?: string): Promise<string>;
  /** `inject` with an optional bearer token and JSON body. */
  call(
    method: InjectOptions['method'],
    url: string,
    options?: { token?: string; body?: unknown; headers?: Record<string, string> },
  ): Promise<LightMyRequestResponse>;
  /** An organization with one API client (all organization scopes unless given). */
  organization(
    name?: string,
    client?: { scopes?: string[]; tier?: string },
  ): Promise<{ id: string; client: Credentials; token: string }>;
  close(): Promise<void>;
}

/**
 * `share`: a second app on the first one's database and key, as a second api process would be
 * (PostgreSQL only: an in-memory PGlite belongs to one app).
 */
export async function startTestApp(env: Record<string, string> = {}, share?: TestApp): Promise<TestApp> {
  if (share && share.db.url === undefined) throw new Error('only apps on PostgreSQL can share a database');
  const db = share?.db ?? (await createTestDatabase());
  const secretKey = share?.secretKey ?? generateKey();
  const dataDir = mkdtempSync(join(tmpdir(), 'interchange-test-'));
  const lines: string[] = [];
  const logDestination = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk));
      done();
    },
  });
  const config = loadConfig({
    INTERCHANGE_DATA_DIR: dataDir,
    INTERCHANGE_SECRET_KEY: secretKey,
    LOG_LEVEL: 'info',
    ...(db.url ? { DATABASE_URL: db.url } : {}),
    ...env,
  });
  const app = await createApp(config, { store: db.options, logDestination });
  await app.server.ready();
  const admin = share?.admin ?? app.adminCredentials;
  if (!admin) throw new Error('a fresh database must create an admin client');

  const call: TestApp['call'] = (method, url, options = {}) =>
    app.server.inject({
      method,
      url,
      headers: {
        ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
        ...options.headers,
      },
      ...(options.body === undefined ? {} : { payload: options.body as never }),
    });

  const token: TestApp['token'] = async (creds, scope) => {
    const res = await call('POST', '/oauth/token', {
      body: {
        grant_type: 'client_credentials',
        client_id: creds.clientId,
        client_secret: creds.clientSecret,
        ...(scope ? { scope } : {}),
      },
    });
    if (res.statusCode !== 200) throw new Error(`token request failed: ${res.statusCode} ${res.body}`);
    return res.json().access_token as string;
  };

  return {
    app,
    db,
    admin,
    secretKey,
    logs: () => lines.join(''),
    token,
    call,
    async organization(name = 'Acme', client = {}) {
      const adminToken = await token(admin);
      const org = await call('POST', '/v1/organizations', { token: adminToken, body: { name } });
      if (org.statusCode !== 201) throw new Error(`organization: ${org.statusCode} ${org.body}`);
      const id = org.json().id as string;
      const created = await call('POST', '/v1/api-clients', {
        token: adminToken,
        body: { name: `${name} backend`, organization_id: id, ...client },
      });
      if (created.statusCode !== 201) throw new Error(`api client: ${created.statusCode} ${created.body}`);
      const creds = { clientId: created.json().id, clientSecret: created.json().client_secret };
      return { id, client: creds, token: await token(creds) };
    },
    async close() {
      await app.close();
      if (!share) await db.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
