// Migrations that move data, checked on rows written before them: the database is migrated up to
// the one before (a copy of the migrations folder whose journal stops there), given rows in the
// old shape, then migrated to the end.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../../test/helpers/database.ts';
import { openStore, queryRows, type Store } from './db.ts';
import { MIGRATIONS_FOLDER, migrate } from './migrate.ts';

let database: TestDatabase;
let store: Store;
const copies: string[] = [];

/** The migrations folder with its journal cut before the migration tagged `tag`. */
function migrationsBefore(tag: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'interchange-migrations-'));
  copies.push(dir);
  cpSync(MIGRATIONS_FOLDER, dir, { recursive: true });
  const journalPath = join(dir, 'meta', '_journal.json');
  const journal = JSON.parse(readFileSync(journalPath, 'utf8')) as { entries: { tag: string }[] };
  const at = journal.entries.findIndex((e) => e.tag === tag);
  if (at < 0) throw new Error(`no migration ${tag}`);
  journal.entries = journal.entries.slice(0, at);
  writeFileSync(journalPath, JSON.stringify(journal));
  return dir;
}

beforeAll(async () => {
  database = await createTestDatabase();
  store = await openStore(database.options);
});

afterAll(async () => {
  await store?.close();
  await database?.drop();
  for (const dir of copies) rmSync(dir, { recursive: true, force: true });
});

describe('0009_dedupe_keys_event_ids', () => {
  it("gives each key the events its first delivery made, from the keys' and events' old columns", async () => {
    await migrate(store, migrationsBefore('0009_dedupe_keys_event_ids'));
    const event = (id: string, request: string | null) =>
      sql`insert into events (id, organization_id, installation_id, source, type, time, partition_key, topic, data, raw_request_id)
          values (${id}, 'org_1', 'ins_1', '/installations/ins_1', 'order.created', now(), 'shop', 'order-events', '{}', ${request})`;
    await store.db.execute(
      sql`insert into organizations (id, name) values ('org_1', 'Acme'), ('org_2', 'Globex')`,
    );
    for (const [id, request] of [
      ['e3', 'req_a'],
      ['e1', 'req_a'],
      ['e2', 'req_a'],
      ['e4', 'req_b'],
      ['e5', 'req_h'],
      ['e6', 'req_h'],
      ['e7', null],
    ] as const)
      await store.db.execute(event(id, request));
    await store.db.execute(sql`insert into dedupe_keys (organization_id, scope, key, request_id, event_id) values
      ('org_1', 'ins_1', 'shop:orders/create:event:a', 'req_a', 'e3'),
      ('org_1', 'ins_1', 'shop:orders/create:event:b', 'req_b', 'e4'),
      ('org_1', 'ins_1', 'event:hubspot-1', 'req_h', 'e5'),
      ('org_1', 'ins_1', 'event:hubspot-2', 'req_h', 'e6'),
      ('org_1', 'api', 'cart-42', null, 'e7'),
      ('org_2', 'ins_9', 'shop:orders/create:event:a', 'req_a', 'x9'),
      ('org_1', 'ins_1', 'shop:orders/create:event:gone', 'req_gone', null)`);

    await migrate(store);
    const rows = await queryRows<{ organization_id: string; key: string; event_ids: string[] }>(
      store.db,
      sql`select organization_id, key, event_ids from dedupe_keys order by organization_id, key`,
    );
    expect(rows.map((r) => [r.organization_id, r.key, r.event_ids])).toEqual([
      ['org_1', 'cart-42', ['e7']],
      ['org_1', 'event:hubspot-1', ['e5']],
      ['org_1', 'event:hubspot-2', ['e6']],
      ['org_1', 'shop:orders/create:event:a', ['e1', 'e2', 'e3']],
      ['org_1', 'shop:orders/create:event:b', ['e4']],
      ['org_1', 'shop:orders/create:event:gone', []],
      // Another organization's request of the same id is not this one's.
      ['org_2', 'shop:orders/create:event:a', ['x9']],
    ]);
    const columns = await queryRows<{ column_name: string }>(
      store.db,
      sql`select column_name from information_schema.columns where table_name = 'dedupe_keys' order by column_name`,
    );
    expect(columns.map((c) => c.column_name)).not.toContain('event_id');
  });
});

describe('0013_user_external_ids_account', () => {
  it('gives the ids stored before no account, so they still stand for every account', async () => {
    const fresh = await createTestDatabase();
    const before = await openStore(fresh.options);
    try {
      await migrate(before, migrationsBefore('0013_user_external_ids_account'));
      await before.db.execute(sql`insert into organizations (id, name) values ('org_1', 'Acme')`);
      await before.db.execute(
        sql`insert into users (id, organization_id) values ('usr_a', 'org_1'), ('usr_b', 'org_1')`,
      );
      await before.db.execute(sql`insert into user_external_ids (user_id, organization_id, platform, external_id) values
        ('usr_a', 'org_1', 'woocommerce', '12'), ('usr_a', 'org_1', 'shopify', '7302'), ('usr_b', 'org_1', 'stripe', 'cus_1')`);

      await migrate(before);
      const rows = await queryRows<{
        user_id: string;
        platform: string;
        account: string;
        external_id: string;
      }>(
        before.db,
        sql`select user_id, platform, account, external_id from user_external_ids order by user_id, platform`,
      );
      expect(rows.map((r) => [r.user_id, r.platform, r.account, r.external_id])).toEqual([
        ['usr_a', 'shopify', '', '7302'],
        ['usr_a', 'woocommerce', '', '12'],
        ['usr_b', 'stripe', '', 'cus_1'],
      ]);
      // A user may now hold an id in each account of a platform, and another user the same id in
      // another account; within one account an id is still one user's.
      await before.db.execute(sql`insert into user_external_ids (user_id, organization_id, platform, account, external_id) values
        ('usr_a', 'org_1', 'woocommerce', 'b.example.com', '40'), ('usr_b', 'org_1', 'woocommerce', 'a.example.com', '12')`);
      await expect(
        before.db.execute(sql`insert into user_external_ids (user_id, organization_id, platform, account, external_id)
          values ('usr_b', 'org_1', 'woocommerce', '', '12')`),
      ).rejects.toThrow();
    } finally {
      await before.close();
      await fresh.drop();
    }
  });
});
