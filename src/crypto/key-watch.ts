// Each process's side of the key registry (key-registry.ts). At start it refuses to run without a
// key that the stored secrets or the database's active key need. Then it seals with the database's
// active key, whatever order its INTERCHANGE_SECRET_KEY lists keys in, and every HEARTBEAT_MS it
// reports the keys it holds and follows a rotation (a new active key) without a restart.
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { Db } from '../store/db.ts';
import {
  HEARTBEAT_MS,
  heartbeat,
  initActiveKey,
  type KeyHolder,
  newHolderId,
  readActiveKey,
  removeHolder,
  sealedKeyCounts,
} from './key-registry.ts';
import { type SecretBox, SecretKeyError } from './secret-box.ts';

/** A missing key is logged at most once per this interval (per key id). */
const REPORT_INTERVAL_MS = 60_000;

export interface KeyWatch {
  /** `host:pid:…`, this process's row in secret_key_holders. */
  processId: string;
  stop(): Promise<void>;
}

/**
 * For SecretBox's onKeyUnavailable: one log line naming the key by id (never the key), at most
 * once a minute per key.
 */
export function keyUnavailableReporter(logger: Logger): (keyId: string) => void {
  const lastReported = new Map<string, number>();
  return (keyId) => {
    const now = Date.now();
    if (now - (lastReported.get(keyId) ?? Number.NEGATIVE_INFINITY) < REPORT_INTERVAL_MS) return;
    lastReported.set(keyId, now);
    logger.error(
      { key_id: keyId },
      `key ${keyId} is needed but not in INTERCHANGE_SECRET_KEY here: requests that need it answer 503 secret_key_unavailable; give every process the same keys`,
    );
  };
}

/**
 * The key a database without an active key starts with: the one its stored secrets are all sealed
 * with, if this process has it (a database from before the registry), else the first configured.
 */
function initialKey(box: SecretBox, counts: Map<string, number>): string {
  const [only, ...others] = counts.keys();
  return only !== undefined && others.length === 0 && box.has(only) ? only : (box.keyIds[0] as string);
}

/** Refuses to start without a key the database needs; answers the active key. */
async function checkKeys(db: Db, box: SecretBox): Promise<string> {
  const counts = await sealedKeyCounts(db);
  const missing = [...counts].filter(([id]) => !box.has(id));
  if (missing.length > 0) {
    throw new SecretKeyError(
      missing
        .map(([id, n]) => `no key with id ${id} is configured (${n} stored secret(s) are sealed with it)`)
        .join('; '),
    );
  }
  const active = (await readActiveKey(db)) ?? (await initActiveKey(db, initialKey(box, counts)));
  if (!box.has(active)) {
    throw new SecretKeyError(
      `no key with id ${active} is configured (the key every process seals new secrets with since the last \`secrets rotate\`)`,
    );
  }
  return active;
}

export async function startKeyWatch(parts: {
  db: Db;
  box: SecretBox;
  logger: Logger;
  intervalMs?: number;
}): Promise<KeyWatch> {
  const { db, box, logger } = parts;
  const intervalMs = parts.intervalMs ?? HEARTBEAT_MS;
  box.sealWith(await checkKeys(db, box));
  const self: Omit<KeyHolder, 'sealingKeyId'> = {
    processId: newHolderId(),
    host: hostname(),
    pid: process.pid,
    keyIds: box.keyIds,
  };

  let followed = box.activeKeyId;
  /** Seals with the database's active key from now on; says so once when it changes. */
  function follow(active: string) {
    if (active === followed) return;
    followed = active;
    box.sealWith(active);
    if (box.sealingKeyId === active) {
      logger.info({ key_id: active }, `sealing new secrets with key ${active} from now on (secrets rotate)`);
    } else {
      logger.error(
        { key_id: active },
        `every process now seals new secrets with key ${active}, which INTERCHANGE_SECRET_KEY here lacks: add it and restart this process`,
      );
    }
  }

  async function tick() {
    const active = await readActiveKey(db);
    if (active) follow(active);
    await heartbeat(db, { ...self, sealingKeyId: box.sealingKeyId ?? null });
  }

  await tick();
  let stopped = false;
  let running: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  const schedule = () => {
    timer = setTimeout(() => {
      // A database outage is reported by the requests that meet it; the next beat tries again.
      running = tick()
        .catch((err) => logger.debug({ err }, 'key registry heartbeat failed'))
        .finally(() => {
          running = undefined;
          if (!stopped) schedule();
        });
    }, intervalMs);
    timer.unref();
  };
  schedule();

  return {
    processId: self.processId,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
      await removeHolder(db, self.processId).catch(() => {});
    },
  };
}
