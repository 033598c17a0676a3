// Privacy redaction (Shopify's customers/redact and shop/redact): scrubs the personal data we
// hold on a customer, or on every customer of an installation, from stored events, and drops the
// raw bodies they came from. Ids and amounts stay, so history and totals remain consistent.
import { and, eq, inArray, or, sql } from 'drizzle-orm';
import type { Db } from '../store/db.ts';
import { events, inboundRequests } from '../store/schema.ts';

const PERSONAL = new Set([
  'email',
  'first_name',
  'last_name',
  'phone',
  'name',
  'address1',
  'address2',
  'postal_code',
]);
const ADDRESSES = new Set(['address', 'billing_address', 'shipping_address']);

/** A copy of canonical data with personal fields nulled; product names in line items are kept. */
export function scrub(value: unknown, key = ''): unknown {
  if (Array.isArray(value)) return value.map((v) => scrub(v, key === 'products' ? 'products[]' : key));
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value).map(([k, v]) => {
      if (ADDRESSES.has(k)) return [k, null];
      if (PERSONAL.has(k) && !(k === 'name' && key === 'products[]')) return [k, v === undefined ? v : null];
      return [k, scrub(v, k)];
    }),
  );
}

export async function redact(
  tx: Db,
  target: { organizationId: string; installationId: string; customerId: string | null; all: boolean },
): Promise<number> {
  if (!target.all && !target.customerId) return 0;
  const concerns = target.all
    ? undefined
    : or(
        sql`${events.data}->>'customer_id' = ${target.customerId}`,
        sql`${events.data}->'customer'->>'customer_id' = ${target.customerId}`,
      );
  const rows = await tx
    .select({ id: events.id, data: events.data, rawRequestId: events.rawRequestId })
    .from(events)
    .where(
      and(
        eq(events.organizationId, target.organizationId),
        eq(events.installationId, target.installationId),
        concerns,
      ),
    );
  for (const row of rows) {
    await tx
      .update(events)
      .set({ data: scrub(row.data) })
      .where(eq(events.id, row.id));
  }
  const raw = [...new Set(rows.flatMap((r) => (r.rawRequestId ? [r.rawRequestId] : [])))];
  if (raw.length > 0)
    await tx.update(inboundRequests).set({ body: null }).where(inArray(inboundRequests.id, raw));
  return rows.length;
}
