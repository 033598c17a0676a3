// Applies the committed migrations, under an advisory lock so that several processes starting
// at once against one PostgreSQL apply them exactly once.
import { fileURLToPath } from 'node:url';
import type { NodePgDatabase } from 'drizzle-orm/node-postgres';
import { migrate as migrateNodePg } from 'drizzle-orm/node-postgres/migrator';
import type { PgliteDatabase } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import type { Store } from './db.ts';

export const MIGRATIONS_FOLDER = fileURLToPath(new URL('./migrations', import.meta.url));
const MIGRATION_LOCK = 0x1c_0001;

/** `folder`: another migrations folder (a test's copy that stops at an earlier migration). */
export async function migrate(store: Store, folder = MIGRATIONS_FOLDER): Promise<void> {
  await store.withLock(MIGRATION_LOCK, async (db) => {
    if (store.kind === 'pglite') {
      await migratePglite(db as unknown as PgliteDatabase, { migrationsFolder: folder });
    } else {
      await migrateNodePg(db as unknown as NodePgDatabase, { migrationsFolder: folder });
    }
  });
}
