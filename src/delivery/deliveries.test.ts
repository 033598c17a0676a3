// Delivery statistics as GET /v1/stats answers them: latencies rounded to 0.01 ms (PostgreSQL's
// percentile interpolation leaves float noise such as 73.26400000000001).
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../../test/helpers/app.ts';
import { newId } from '../ids.ts';
import { queryRows } from '../store/db.ts';
import { deliveries } from '../store/schema.ts';

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({ INTERCHANGE_EGRESS_ALLOW: '127.0.0.1/32' });
});
afterAll(() => t?.close());

it('answers latencies and ages rounded, without float noise', async () => {
  const org = await t.organization('Stats');
  const ep = await t.call('POST', '/v1/installations', {
    token: org.token,
    body: { connector: 'webhook', config: { url: 'http://127.0.0.1:9/hook' } },
  });
  const destination = ep.json().id as string;
  // Two deliveries, 10.3 ms and 73.9 ms after their events entered the hub; one still waiting.
  const rows = [];
  for (const latencyMs of [10.3, 73.9, null]) {
    const event = await t.call('POST', '/v1/events', {
      token: org.token,
      body: { type: 'custom.x', data: {} },
    });
    rows.push({
      id: newId('delivery'),
      organizationId: org.id,
      eventId: event.json().id,
      installationId: destination,
      latencyMs,
    });
  }
  await t.app.store.db.insert(deliveries).values(rows.map(({ latencyMs: _, ...row }) => row));
  for (const { id, latencyMs } of rows) {
    if (latencyMs === null) {
      await queryRows(
        t.app.store.db,
        sql`update deliveries set created_at = now() - interval '1.2345678 seconds' where id = ${id}`,
      );
      continue;
    }
    await queryRows(
      t.app.store.db,
      sql`update deliveries d set status = 'succeeded',
            delivered_at = e.created_at + ${`${latencyMs} milliseconds`}::interval
          from events e where e.id = d.event_id and d.id = ${id}`,
    );
  }
  const [stats] = (await t.call('GET', '/v1/stats', { token: org.token })).json().data;
  // Unrounded: 42.10000000000001 and 73.26400000000001.
  expect(stats).toMatchObject({ latency_p50_ms: 42.1, latency_p99_ms: 73.26, queue_depth: 1 });
  const age = stats.oldest_pending_age_seconds as number;
  expect(age).toBeGreaterThan(1.2);
  expect(Number(age.toFixed(3))).toBe(age);
});
