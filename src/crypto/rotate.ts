// `interchange secrets rotate`: re-seals every encrypted column under the active key. With the
// embedded key file, a new key is generated first and the old ones dropped at the end; with
// INTERCHANGE_SECRET_KEY the operator puts the new key first and removes the old one afterwards.
import { sql } from 'drizzle-orm';
import type { Config } from '../config.ts';
import { type Db, queryRows, type Store } from '../store/db.ts';
import { ENCRYPTED_COLUMNS } from '../store/schema.ts';
import { keyFilePath, loadKeyTexts, writeKeyFile } from './keyring.ts';
import { aadFor, generateKey, parseKey, SecretBox } from './secret-box.ts';

const BATCH = 200;

export interface RotationResult {
  activeKeyId: string;
  resealed: number;
  source: 'env' | 'file';
  /** Key ids no value is sealed with any more (dropped from the key file; removable from the env). */
  retiredKeyIds: string[];
}

export interface RotationProgress {
  start(total: number): void;
  increment(n: number): void;
  stop(): void;
}

export async function rotateSecrets(
  config: Config,
  store: Store,
  progress?: RotationProgress,
): Promise<RotationResult> {
  const { keys, source } = loadKeyTexts(config);
  const texts = source === 'file' ? [generateKey(), ...keys] : keys;
  // Written before re-sealing: a crash midway leaves rows under either key, both still in the file.
  if (source === 'file') writeKeyFile(keyFilePath(config), texts);
  const box = new SecretBox(texts.map(parseKey));
  const prefix = `v1.${box.activeKeyId}.%`;

  const pending = [];
  let total = 0;
  for (const col of ENCRYPTED_COLUMNS) {
    const rows = await queryRows<{ id: string }>(
      store.db,
      sql`select ${sql.identifier(col.idColumn)} as id from ${sql.identifier(col.table)} where ${sql.identifier(col.column)} not like ${prefix}`,
    );
    pending.push({ col, ids: rows.map((r) => r.id) });
    total += rows.length;
  }

  progress?.start(total);
  let resealed = 0;
  for (const { col, ids } of pending) {
    for (let i = 0; i < ids.length; i += BATCH) {
      const batch = ids.slice(i, i + BATCH);
      await store.db.transaction(async (tx) => {
        for (const id of batch) {
          const [row] = await queryRows<{ value: string }>(
            tx as unknown as Db,
            sql`select ${sql.identifier(col.column)} as value from ${sql.identifier(col.table)} where ${sql.identifier(col.idColumn)} = ${id} for update`,
          );
          if (!row) continue;
          const aad = aadFor(col.table, col.column, id);
          const value = box.encrypt(box.decrypt(row.value, aad), aad);
          await tx.execute(
            sql`update ${sql.identifier(col.table)} set ${sql.identifier(col.column)} = ${value} where ${sql.identifier(col.idColumn)} = ${id}`,
          );
        }
      });
      resealed += batch.length;
      progress?.increment(batch.length);
    }
  }
  progress?.stop();

  const retiredKeyIds = box.keyIds.filter((k) => k !== box.activeKeyId);
  if (source === 'file') writeKeyFile(keyFilePath(config), [texts[0] as string]);
  return { activeKeyId: box.activeKeyId, resealed, source, retiredKeyIds };
}
