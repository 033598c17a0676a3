// Cursor pagination over time-ordered ids: oldest first, so a client paging through a growing
// collection never misses an item added while it pages. The cursor is opaque to clients.
import { AppError } from '../errors.ts';
import { type IdKind, isId } from '../ids.ts';

export interface Page<T> {
  data: T[];
  hasMore: boolean;
  nextCursor: string | null;
}

export function encodeCursor(lastId: string): string {
  return Buffer.from(lastId, 'utf8').toString('base64url');
}

export function decodeCursor(kind: IdKind, cursor: string | undefined): string | undefined {
  if (cursor === undefined) return undefined;
  const id = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!isId(kind, id)) throw new AppError('invalid_cursor', 'cursor is not one this API returned');
  return id;
}

/** Turns `limit + 1` fetched rows into a page. */
export function toPage<T extends { id: string }>(rows: T[], limit: number): Page<T> {
  const data = rows.slice(0, limit);
  const hasMore = rows.length > limit;
  const last = data.at(-1);
  return { data, hasMore, nextCursor: hasMore && last ? encodeCursor(last.id) : null };
}
