// First start: the JWT signing key and, when no admin client exists, one admin client whose
// credentials are handed back once (printed; in embedded mode also written to the data dir).
import { isNull } from 'drizzle-orm';
import type { SecretBox } from '../crypto/secret-box.ts';
import type { Store } from '../store/db.ts';
import { apiClients } from '../store/schema.ts';
import { insertClient } from './api-clients.ts';
import { ADMIN_SCOPE } from './scopes.ts';
import { ensureSigningKey } from './tokens.ts';

const BOOTSTRAP_LOCK = 0x1c_0002;

export interface AdminCredentials {
  clientId: string;
  clientSecret: string;
}

/** Returns the new admin client's credentials when this call created it, else undefined. */
export async function bootstrap(store: Store, box: SecretBox): Promise<AdminCredentials | undefined> {
  return store.withLock(BOOTSTRAP_LOCK, async (db) => {
    await ensureSigningKey(db, box);
    const [admin] = await db
      .select({ id: apiClients.id })
      .from(apiClients)
      .where(isNull(apiClients.organizationId))
      .limit(1);
    if (admin) return undefined;
    const { client, secret } = await insertClient(db, {
      name: 'admin',
      organizationId: null,
      scopes: [ADMIN_SCOPE],
      tier: 'enterprise',
    });
    return { clientId: client.id, clientSecret: secret };
  });
}
