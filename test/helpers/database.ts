// Where a test's data lives: an in-memory PGlite, or with DATABASE_URL a fresh database created
// on that server for this test and dropped after it, so runs never see each other's rows.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { StoreOptions } from '../../src/store/db.ts';

export const onPostgres = Boolean(process.env.DATABASE_URL);

export interface TestDatabase {
  options: StoreOptions;
  /** The URL of the fresh database (Postgres only), for child processes. */
  url: string | undefined;
  drop(): Promise<void>;
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const serverUrl = process.env.DATABASE_URL;
  if (!serverUrl)
    return { options: { kind: 'pglite', dataDir: undefined }, url: undefined, drop: async () => {} };
  const name = `ic_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    options: { kind: 'postgres', url: url.toString(), poolSize: 5 },
    url: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: serverUrl });
      await c.connect();
      await c.query(`drop database if exists ${name} with (force)`);
      await c.end();
    },
  };
}
