// Schemas shared by the routes: errors, examples, pagination, timestamps. Each named schema
// carries an OpenAPI component id through zod's registry.
import { z } from 'zod';

export const errorSchema = z
  .object({
    error: z.object({
      code: z.string().describe('stable, machine-readable error code'),
      message: z.string(),
      details: z.unknown().optional(),
    }),
  })
  .meta({ id: 'Error' });

/** A request body's named example, as OpenAPI's Example Object has it. */
export interface Example<T> {
  summary: string;
  value: T;
}

/**
 * The schema with named examples for its OpenAPI entry (a request body's `examples`, which
 * @fastify/swagger takes from `x-examples`). Each is checked against the schema here, when the
 * routes are built, so an example cannot drift from what the route takes.
 */
export function withExamples<T extends z.ZodType>(
  schema: T,
  examples: Record<string, Example<z.input<T>>>,
): T {
  for (const [name, { value }] of Object.entries(examples)) {
    const result = schema.safeParse(value);
    if (!result.success)
      throw new Error(`the example ${name} does not fit its schema: ${z.prettifyError(result.error)}`);
  }
  return schema.meta({ 'x-examples': examples });
}

export const listQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(100).default(20).describe('page size, 1 to 100'),
  cursor: z.string().max(200).optional().describe('`next_cursor` of the previous page'),
});

export function listOf<T extends z.ZodType>(item: T) {
  return z.object({
    data: z.array(item),
    has_more: z.boolean(),
    next_cursor: z.string().nullable().describe('pass as `cursor` for the next page; null on the last page'),
  });
}

export function presentPage<T, U>(
  page: { data: T[]; hasMore: boolean; nextCursor: string | null },
  fn: (t: T) => U,
) {
  return { data: page.data.map(fn), has_more: page.hasMore, next_cursor: page.nextCursor };
}

export const timestamp = z.iso.datetime();

/**
 * An ISO 8601 date-time given to the API (offset allowed) whose instant is in years 1 to 9999 UTC,
 * the range the database stores ("0000-01-01T00:00:00+01:00" is in year −1).
 */
export const instant = z.iso.datetime({ offset: true }).refine((value) => {
  const year = new Date(value).getUTCFullYear();
  return year >= 1 && year <= 9999;
}, 'must be a time between the years 0001 and 9999 (UTC)');

export const iso = (d: Date) => d.toISOString();

export const idParams = z.strictObject({ id: z.string().max(100) });

export const bearer = [{ bearerAuth: [] }];
