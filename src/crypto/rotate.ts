// `interchange secrets rotate`: makes the first configured key the one every process seals with,
// and re-seals every encrypted column under it. With the embedded key file, a new key is generated
// first and the old ones dropped at the end; with INTERCHANGE_SECRET_KEY the operator puts the new
// key first (NEW,OLD) on every process, runs this, and removes OLD afterwards.
//
// The stages: `preflight` refuses, changing nothing, while a stored secret is sealed with a key not
// configured here or a running process lacks the new key; `switchActiveKey` records the new key and
// waits until every running process seals with it; `resealAll` re-seals until nothing is left
// under another key. A process that started without the new key cannot start any more.
import { sql } from 'drizzle-orm';
import type { Config } from '../config.ts';
import { type Db, queryRows, type Store } from '../store/db.ts';
import { ENCRYPTED_COLUMNS } from '../store/schema.ts';
import {
  countSealedOtherwise,
  describeHolder,
  HEARTBEAT_MS,
  type KeyHolder,
  liveHolders,
  readActiveKey,
  sealedKeyCounts,
  setActiveKey,
} from './key-registry.ts';
import { keyFilePath, loadKeyTexts, writeKeyFile } from './keyring.ts';
import { aadFor, generateKey, parseKey, SecretBox } from './secret-box.ts';

const BATCH = 200;
/** How long to wait for every running process to seal with the new key: a few heartbeats. */
const SWITCH_WAIT_MS = 4 * HEARTBEAT_MS;
const SWITCH_POLL_MS = 250;
/** Re-sealing passes: a second one catches a value sealed with the old key while the first ran. */
const MAX_PASSES = 3;

/** The rotation would break something, or could not finish: the message says what to do. */
export class RotationRefusedError extends Error {
  override name = 'RotationRefusedError';
}

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

export interface RotationOptions {
  progress?: RotationProgress | undefined;
  /** How long to wait for running processes to switch (tests shorten it). */
  switchWaitMs?: number;
}

const NOTHING_CHANGED = 'nothing was changed';

const holderKeys = (h: KeyHolder) => `${describeHolder(h)} (keys ${h.keyIds.join(', ')})`;

/** Refuses, before anything changes, a rotation that would leave a secret or a process without its key. */
async function preflight(db: Db, box: SecretBox, target: string): Promise<void> {
  const counts = await sealedKeyCounts(db);
  const unknown = [...counts].filter(([id]) => !box.has(id));
  if (unknown.length > 0) {
    const list = unknown.map(([id, n]) => `${n} with key ${id}`).join(', ');
    throw new RotationRefusedError(
      `stored secrets are sealed with keys INTERCHANGE_SECRET_KEY does not include here (${list}): ` +
        `list every key still in use after the new one, then run this again; ${NOTHING_CHANGED}`,
    );
  }
  const active = await readActiveKey(db);
  if (active !== undefined && !box.has(active)) {
    throw new RotationRefusedError(
      `the running processes seal new secrets with key ${active}, which INTERCHANGE_SECRET_KEY does not include here: ` +
        `keep it after the new key until this rotation is done; ${NOTHING_CHANGED}`,
    );
  }
  const lacking = (await liveHolders(db)).filter((h) => !h.keyIds.includes(target));
  if (lacking.length > 0) {
    throw new RotationRefusedError(
      `${lacking.length} running process(es) do not have the new key ${target}: ${lacking.map(holderKeys).join('; ')}. ` +
        `Give every process INTERCHANGE_SECRET_KEY=<new>,<old> and restart them, then run this again; ${NOTHING_CHANGED}`,
    );
  }
}

/** Makes `target` the key every process seals with, and waits until every running one does. */
async function switchActiveKey(db: Db, target: string, waitMs: number): Promise<void> {
  await setActiveKey(db, target);
  const until = Date.now() + waitMs;
  for (;;) {
    const behind = (await liveHolders(db)).filter((h) => h.sealingKeyId !== target);
    if (behind.length === 0) return;
    if (Date.now() >= until) {
      throw new RotationRefusedError(
        `${behind.length} running process(es) did not switch to key ${target} within ${Math.round(waitMs / 1000)} s: ` +
          `${behind.map(holderKeys).join('; ')}. Nothing was re-sealed; every running process can read key ${target}, ` +
          'so run this again once they answer',
      );
    }
    await new Promise((resolve) => setTimeout(resolve, SWITCH_POLL_MS));
  }
}

/** Re-seals every value not sealed with the box's active key; answers how many. */
async function resealPass(store: Store, box: SecretBox, progress?: RotationProgress): Promise<number> {
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
          const [row] = await queryRows<{ value: string | null }>(
            tx as unknown as Db,
            sql`select ${sql.identifier(col.column)} as value from ${sql.identifier(col.table)} where ${sql.identifier(col.idColumn)} = ${id} for update`,
          );
          if (!row?.value || SecretBox.keyIdOf(row.value) === box.activeKeyId) continue;
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
  return resealed;
}

/** Re-seals until no stored secret is left under another key. */
async function resealAll(store: Store, box: SecretBox, progress?: RotationProgress): Promise<number> {
  let resealed = 0;
  for (let pass = 0; pass < MAX_PASSES; pass++) {
    resealed += await resealPass(store, box, pass === 0 ? progress : undefined);
    if ((await countSealedOtherwise(store.db, box.activeKeyId)) === 0) return resealed;
  }
  throw new RotationRefusedError(
    `secrets are still being sealed with another key than ${box.activeKeyId}: a process not seen by this command ` +
      '(an older version?) is running; stop it and run this again',
  );
}

export async function rotateSecrets(
  config: Config,
  store: Store,
  options: RotationOptions = {},
): Promise<RotationResult> {
  const { keys, source } = loadKeyTexts(config);
  const texts = source === 'file' ? [generateKey(), ...keys] : keys;
  const box = new SecretBox(texts.map(parseKey));
  const target = box.activeKeyId;
  await preflight(store.db, box, target);

  // Written before the database names the new key: a crash midway leaves rows under either key,
  // both still in the file.
  if (source === 'file') writeKeyFile(keyFilePath(config), texts);
  await switchActiveKey(store.db, target, options.switchWaitMs ?? SWITCH_WAIT_MS);
  const resealed = await resealAll(store, box, options.progress);

  const retiredKeyIds = box.keyIds.filter((k) => k !== target);
  if (source === 'file') writeKeyFile(keyFilePath(config), [texts[0] as string]);
  return { activeKeyId: target, resealed, source, retiredKeyIds };
}
