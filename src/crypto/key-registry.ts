// What the database knows about the master keys, shared by every process: the key all of them seal
// with (secret_key_state), which keys each running process holds (secret_key_holders, refreshed by
// a heartbeat), and which keys the stored secrets are sealed with. `secrets rotate` reads it to
// refuse an unsafe rotation; each process, to refuse to start without a key it needs.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { eq, sql } from 'drizzle-orm';
import { type Db, queryRows } from '../store/db.ts';
import { ENCRYPTED_COLUMNS, secretKeyHolders, secretKeyState } from '../store/schema.ts';

/** How often a process refreshes its row and reads the active key. */
export const HEARTBEAT_MS = 5000;
/** A process not heard from for this long is taken to be gone. */
export const LIVE_MS = 3 * HEARTBEAT_MS;
/** Rows of processes gone this long are deleted. */
const FORGET_AFTER_MS = 24 * 60 * 60 * 1000;

export interface KeyHolder {
  processId: string;
  host: string;
  pid: number;
  keyIds: string[];
  sealingKeyId: string | null;
}

/** `host:pid`, how the operator finds the process. */
export const describeHolder = (h: Pick<KeyHolder, 'host' | 'pid'>) => `${h.host}:${h.pid}`;

export function newHolderId(): string {
  return `${hostname()}:${process.pid}:${randomUUID()}`;
}

export async function readActiveKey(db: Db): Promise<string | undefined> {
  const [row] = await db.select({ id: secretKeyState.activeKeyId }).from(secretKeyState);
  return row?.id;
}

/** Records `keyId` as the active key unless one is recorded already; answers the recorded one. */
export async function initActiveKey(db: Db, keyId: string): Promise<string> {
  await db.insert(secretKeyState).values({ activeKeyId: keyId }).onConflictDoNothing();
  return (await readActiveKey(db)) as string;
}

export async function setActiveKey(db: Db, keyId: string): Promise<void> {
  await db
    .insert(secretKeyState)
    .values({ activeKeyId: keyId })
    .onConflictDoUpdate({
      target: secretKeyState.id,
      set: { activeKeyId: keyId, changedAt: sql`now()` },
    });
}

/** How many stored secrets each key seals (by key id), over every sealed column. */
export async function sealedKeyCounts(db: Db): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const col of ENCRYPTED_COLUMNS) {
    const rows = await queryRows<{ keyId: string; n: number }>(
      db,
      sql`select split_part(${sql.identifier(col.column)}, '.', 2) as "keyId", count(*)::int as n
          from ${sql.identifier(col.table)} where ${sql.identifier(col.column)} is not null group by 1`,
    );
    for (const r of rows) counts.set(r.keyId, (counts.get(r.keyId) ?? 0) + r.n);
  }
  return counts;
}

/** Stored secrets not sealed with `keyId`. */
export async function countSealedOtherwise(db: Db, keyId: string): Promise<number> {
  let total = 0;
  for (const [id, n] of await sealedKeyCounts(db)) if (id !== keyId) total += n;
  return total;
}

export async function heartbeat(db: Db, holder: KeyHolder): Promise<void> {
  await db
    .insert(secretKeyHolders)
    .values({ ...holder, heartbeatAt: sql`now()` })
    .onConflictDoUpdate({
      target: secretKeyHolders.processId,
      set: { keyIds: holder.keyIds, sealingKeyId: holder.sealingKeyId, heartbeatAt: sql`now()` },
    });
}

export async function removeHolder(db: Db, processId: string): Promise<void> {
  await db.delete(secretKeyHolders).where(eq(secretKeyHolders.processId, processId));
}

/**
 * The processes heard from within LIVE_MS (by the database's clock), oldest first. Rows of
 * processes gone for FORGET_AFTER_MS (killed before they could remove their row) are deleted.
 */
export async function liveHolders(db: Db): Promise<KeyHolder[]> {
  await db
    .delete(secretKeyHolders)
    .where(sql`${secretKeyHolders.heartbeatAt} < now() - make_interval(secs => ${FORGET_AFTER_MS / 1000})`);
  return db
    .select({
      processId: secretKeyHolders.processId,
      host: secretKeyHolders.host,
      pid: secretKeyHolders.pid,
      keyIds: secretKeyHolders.keyIds,
      sealingKeyId: secretKeyHolders.sealingKeyId,
    })
    .from(secretKeyHolders)
    .where(sql`${secretKeyHolders.heartbeatAt} > now() - make_interval(secs => ${LIVE_MS / 1000})`)
    .orderBy(secretKeyHolders.startedAt);
}
