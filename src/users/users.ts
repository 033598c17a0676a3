// The organization's end users, with their id in each external platform account (`external_ids`),
// so events from Shopify or Stripe can carry the organization's own user id.
import { and, asc, eq, gt, inArray, type SQL, sql } from 'drizzle-orm';
import { AppError } from '../errors.ts';
import { isId, newId } from '../ids.ts';
import { type Db, jsonColumn, queryPrepared } from '../store/db.ts';
import { decodeCursor, type Page, toPage } from '../store/pagination.ts';
import { userExternalIds, users } from '../store/schema.ts';

type UserRow = typeof users.$inferSelect;

/** `get`'s row as the driver gives it (json as text, or parsed, depending on the path). */
interface UserSqlRow {
  id: string;
  organization_id: string;
  email: string | null;
  name: string | null;
  traits: Record<string, unknown> | string;
  created_at: Date | string;
  updated_at: Date | string;
  external_ids: ExternalIdLink[] | string | null;
}
/** `externalIds`: by `externalIdKey`, e.g. `{"shopify": "7302", "woocommerce@shop.example.com": "12"}`. */
export type User = UserRow & { externalIds: Record<string, string> };

export interface UserInput {
  email?: string | null | undefined;
  name?: string | null | undefined;
  traits?: Record<string, unknown> | undefined;
  /** By `externalIdKey`. On update, a null value removes that id. */
  externalIds?: Record<string, string | null> | undefined;
}

/** (platform, account, external id), as the database gives them. */
type ExternalIdLink = [platform: string, account: string, externalId: string];

/**
 * How the API names a user's id in one platform account: `platform@account`, or `platform` for an
 * id given without account (account ''), which stands for every account of the platform that has
 * no id of its own. A platform name holds no `@`, so the first one splits.
 */
export function externalIdKey(platform: string, account: string): string {
  return account === '' ? platform : `${platform}@${account}`;
}

export function parseExternalIdKey(key: string): { platform: string; account: string } {
  const at = key.indexOf('@');
  return at < 0 ? { platform: key, account: '' } : { platform: key.slice(0, at), account: key.slice(at + 1) };
}

/** A user's `external_ids` from its links, keys in order. */
const externalIdsOf = (links: ExternalIdLink[]): Record<string, string> =>
  Object.fromEntries(
    links
      .map(([platform, account, id]) => [externalIdKey(platform, account), id] as const)
      .sort(([a], [b]) => a.localeCompare(b)),
  );

const notFound = (id: string) => new AppError('user_not_found', `user ${id} not found`);

/** Postgres unique violation on the external id index, through either driver's error shape. */
function isExternalIdClash(err: unknown): boolean {
  for (let e: unknown = err; e && typeof e === 'object'; e = (e as { cause?: unknown }).cause) {
    const { code, constraint, message } = e as { code?: string; constraint?: string; message?: string };
    if (
      code === '23505' &&
      (constraint === 'user_external_ids_lookup_idx' || message?.includes('user_external_ids_lookup_idx'))
    ) {
      return true;
    }
  }
  return false;
}

export function createUserService(db: Db) {
  async function withExternalIds(rows: UserRow[]): Promise<User[]> {
    if (rows.length === 0) return [];
    const links = await db
      .select()
      .from(userExternalIds)
      .where(
        inArray(
          userExternalIds.userId,
          rows.map((r) => r.id),
        ),
      );
    return rows.map((row) => ({
      ...row,
      externalIds: externalIdsOf(
        links
          .filter((l) => l.userId === row.id)
          .map((l): ExternalIdLink => [l.platform, l.account, l.externalId]),
      ),
    }));
  }

  /** One user with its external ids: one prepared statement (two Drizzle queries before it). */
  async function get(organizationId: string, id: string): Promise<User> {
    const [row] = isId('user', id)
      ? await queryPrepared<UserSqlRow>(
          db,
          'user_get',
          sql`select u.id, u.organization_id, u.email, u.name, u.traits, u.created_at, u.updated_at,
                (select json_agg(json_build_array(x.platform, x.account, x.external_id))
                   from user_external_ids x where x.user_id = u.id) as external_ids
              from users u where u.organization_id = ${organizationId} and u.id = ${id}`,
        )
      : [];
    if (!row) throw notFound(id);
    const links = jsonColumn(row.external_ids) ?? [];
    return {
      id: row.id,
      organizationId: row.organization_id,
      email: row.email,
      name: row.name,
      traits: jsonColumn(row.traits),
      createdAt: new Date(row.created_at),
      updatedAt: new Date(row.updated_at),
      externalIds: externalIdsOf(links),
    };
  }

  /** Applies external id changes inside the caller's transaction; a clash with another user is a 409. */
  async function setExternalIds(
    tx: Db,
    organizationId: string,
    userId: string,
    ids: Record<string, string | null>,
  ) {
    for (const [key, externalId] of Object.entries(ids)) {
      const { platform, account } = parseExternalIdKey(key);
      await tx
        .delete(userExternalIds)
        .where(
          and(
            eq(userExternalIds.userId, userId),
            eq(userExternalIds.platform, platform),
            eq(userExternalIds.account, account),
          ),
        );
      if (externalId !== null) {
        await tx.insert(userExternalIds).values({ userId, organizationId, platform, account, externalId });
      }
    }
  }

  async function mutate<T>(fn: (tx: Db) => Promise<T>): Promise<T> {
    try {
      return await db.transaction((tx) => fn(tx as unknown as Db));
    } catch (err) {
      if (isExternalIdClash(err)) {
        throw new AppError(
          'external_id_conflict',
          'another user of this organization already has that external id in that account',
        );
      }
      throw err;
    }
  }

  return {
    get,

    async create(organizationId: string, input: UserInput): Promise<User> {
      const id = newId('user');
      await mutate(async (tx) => {
        await tx.insert(users).values({
          id,
          organizationId,
          email: input.email ?? null,
          name: input.name ?? null,
          traits: input.traits ?? {},
        });
        await setExternalIds(tx, organizationId, id, input.externalIds ?? {});
      });
      return get(organizationId, id);
    },

    async list(
      organizationId: string,
      query: { limit: number; cursor?: string | undefined; email?: string | undefined },
    ): Promise<Page<User>> {
      const after = decodeCursor('user', query.cursor);
      const rows = await db
        .select()
        .from(users)
        .where(
          and(
            eq(users.organizationId, organizationId),
            query.email ? eq(users.email, query.email) : undefined,
            after ? gt(users.id, after) : undefined,
          ),
        )
        .orderBy(asc(users.id))
        .limit(query.limit + 1);
      const page = toPage(rows, query.limit);
      return { ...page, data: await withExternalIds(page.data) };
    },

    /**
     * The user with this id in the platform. With an account, as ingest attributes a webhook of
     * that account: the id in that account, else the id given without account. Without one, the id
     * in whichever account holds it; held in several accounts by different users, the answer is
     * 409 `external_id_ambiguous` listing them (ask again with the account).
     */
    async findByExternalId(
      organizationId: string,
      platform: string,
      externalId: string,
      account?: string,
    ): Promise<User> {
      const holders = await db
        .select({ userId: userExternalIds.userId, account: userExternalIds.account })
        .from(userExternalIds)
        .where(
          and(
            eq(userExternalIds.organizationId, organizationId),
            eq(userExternalIds.platform, platform),
            eq(userExternalIds.externalId, externalId),
            account === undefined ? undefined : inArray(userExternalIds.account, [account, '']),
          ),
        )
        .orderBy(asc(userExternalIds.account));
      // With an account, the id in that account wins over the one given without account.
      const chosen =
        account === undefined ? holders : [holders.find((h) => h.account === account) ?? holders[0]];
      const users = [...new Set(chosen.flatMap((h) => (h ? [h.userId] : [])))];
      const [only] = users;
      if (!only) {
        const where = account ? ` in account ${account}` : '';
        throw new AppError('user_not_found', `no user has ${platform} id ${externalId}${where}`);
      }
      if (users.length > 1) {
        throw new AppError(
          'external_id_ambiguous',
          `${platform} id ${externalId} belongs to ${users.length} users, each in another account: give the account (?account=)`,
          { details: holders.map((h) => ({ account: h.account, user_id: h.userId })) },
        );
      }
      return get(organizationId, only);
    },

    async update(organizationId: string, id: string, patch: UserInput): Promise<User> {
      await get(organizationId, id);
      await mutate(async (tx) => {
        const fields: Partial<Omit<UserRow, 'traits'>> & { traits?: SQL } = { updatedAt: new Date() };
        if (patch.email !== undefined) fields.email = patch.email;
        if (patch.name !== undefined) fields.name = patch.name;
        if (patch.traits !== undefined) {
          // Shallow merge, as analytics identify calls do: a null value removes that trait.
          const removed = Object.keys(patch.traits).filter((k) => patch.traits?.[k] === null);
          const set = Object.fromEntries(Object.entries(patch.traits).filter(([, v]) => v !== null));
          fields.traits = sql`(${users.traits} || ${JSON.stringify(set)}::jsonb) - array(select jsonb_array_elements_text(${JSON.stringify(removed)}::jsonb))`;
        }
        await tx
          .update(users)
          .set(fields)
          .where(and(eq(users.organizationId, organizationId), eq(users.id, id)));
        await setExternalIds(tx, organizationId, id, patch.externalIds ?? {});
      });
      return get(organizationId, id);
    },

    async remove(organizationId: string, id: string): Promise<void> {
      const deleted = isId('user', id)
        ? await db
            .delete(users)
            .where(and(eq(users.organizationId, organizationId), eq(users.id, id)))
            .returning({ id: users.id })
        : [];
      if (deleted.length === 0) throw notFound(id);
    },
  };
}

export type UserService = ReturnType<typeof createUserService>;
