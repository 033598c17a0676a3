// Organizations: the tenants. Deleting one removes everything it owns (foreign keys cascade).
import { asc, eq, gt } from 'drizzle-orm';
import { AppError } from '../errors.ts';
import { isId, newId } from '../ids.ts';
import type { Db } from '../store/db.ts';
import { decodeCursor, type Page, toPage } from '../store/pagination.ts';
import { organizations } from '../store/schema.ts';

export type Organization = typeof organizations.$inferSelect;

export function createOrganizationService(db: Db) {
  async function get(id: string): Promise<Organization> {
    const [row] = isId('organization', id)
      ? await db.select().from(organizations).where(eq(organizations.id, id))
      : [];
    if (!row) throw new AppError('organization_not_found', `organization ${id} not found`);
    return row;
  }

  return {
    get,

    async create(input: { name: string }): Promise<Organization> {
      const [row] = await db
        .insert(organizations)
        .values({ id: newId('organization'), name: input.name })
        .returning();
      return row as Organization;
    },

    async list(query: { limit: number; cursor?: string | undefined }): Promise<Page<Organization>> {
      const after = decodeCursor('organization', query.cursor);
      const rows = await db
        .select()
        .from(organizations)
        .where(after ? gt(organizations.id, after) : undefined)
        .orderBy(asc(organizations.id))
        .limit(query.limit + 1);
      return toPage(rows, query.limit);
    },

    async update(id: string, patch: { name?: string | undefined }): Promise<Organization> {
      if (patch.name === undefined || !isId('organization', id)) return get(id);
      const [row] = await db
        .update(organizations)
        .set({ name: patch.name, updatedAt: new Date() })
        .where(eq(organizations.id, id))
        .returning();
      if (!row) throw new AppError('organization_not_found', `organization ${id} not found`);
      return row;
    },

    async remove(id: string): Promise<void> {
      const deleted = isId('organization', id)
        ? await db.delete(organizations).where(eq(organizations.id, id)).returning({ id: organizations.id })
        : [];
      if (deleted.length === 0) throw new AppError('organization_not_found', `organization ${id} not found`);
    },
  };
}

export type OrganizationService = ReturnType<typeof createOrganizationService>;
