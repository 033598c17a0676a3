// The router reads the log without event data (ROUTER_CONSUMER): it must still apply filters on
// the data, and still keep a destination from hearing of its own failures, by fetching the data
// of exactly those events. Against the real log and database (PGlite, or PostgreSQL).
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../../test/helpers/app.ts';
import { connectorById } from '../connectors/catalog.ts';
import { TOPICS, topicOf } from '../events/types.ts';
import { uuidv7 } from '../ids.ts';
import type { LogRecord } from '../log/port.ts';
import { queryRows } from '../store/db.ts';
import { events } from '../store/schema.ts';
import { createRouter, ROUTER_CONSUMER } from './router.ts';

describe('the router, on envelopes without data', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ INTERCHANGE_EGRESS_ALLOW: '127.0.0.1/32' });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('filters on data it fetches, and keeps operational events from the destination they name', async () => {
    const acme = await t.organization('Acme');
    const install = async (subscription: object) => {
      const res = await t.call('POST', '/v1/installations', {
        token: acme.token,
        body: { connector: 'webhook', config: { url: 'http://127.0.0.1:9/hook' }, subscription },
      });
      expect(res.statusCode, res.body).toBe(201);
      return res.json().id as string;
    };
    const everything = await install({ event_types: ['*'] });
    const bigCarts = await install({ event_types: ['custom.cart'], filter: { total: { $gte: '100' } } });

    const sent: Record<string, string> = {};
    for (const [name, total] of [
      ['small', '50.00'],
      ['big', '150.00'],
    ] as const) {
      const res = await t.call('POST', '/v1/events', {
        token: acme.token,
        body: { type: 'custom.cart', data: { total } },
      });
      expect(res.statusCode, res.body).toBe(201);
      sent[name] = res.json().id;
    }
    // An operational event about `everything`, as the delivery outcome writes it.
    const db = t.app.store.db;
    const disabled = uuidv7();
    await db.transaction(async (tx) => {
      await tx.insert(events).values({
        id: disabled,
        organizationId: acme.id,
        installationId: null,
        source: '/interchange/delivery',
        type: 'endpoint.disabled',
        subject: `installations/${everything}`,
        time: new Date(),
        partitionKey: everything,
        topic: topicOf('endpoint.disabled'),
        userId: null,
        data: { destination_id: everything, connector: 'webhook', reason: 'gone' },
      });
      await t.app.services.log.append(tx as never, [
        { eventId: disabled, topic: topicOf('endpoint.disabled'), partitionKey: everything },
      ]);
    });

    const route = createRouter(db, connectorById);
    const seen: LogRecord[] = [];
    const consumer = t.app.services.log.consume({
      ...ROUTER_CONSUMER,
      group: 'router-test',
      topics: TOPICS,
      leaseMs: 2000,
      pollMs: 20,
      handler: async (records) => {
        seen.push(...records.map((r) => ({ ...r, event: { ...r.event } })));
        await route(records);
      },
    });
    try {
      const deadline = Date.now() + 20_000;
      while (seen.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    } finally {
      await consumer.stop();
    }
    // The log handed over envelopes only.
    expect(seen.map((r) => r.event.id).sort()).toEqual([sent.small, sent.big, disabled].sort());
    for (const r of seen) expect(r.event.data).toBeNull();

    const routed = await queryRows<{ event_id: string; installation_id: string }>(
      db,
      sql`select event_id, installation_id from deliveries where organization_id = ${acme.id}`,
    );
    const to = (destination: string) =>
      routed
        .filter((d) => d.installation_id === destination)
        .map((d) => d.event_id)
        .sort();
    expect(to(everything)).toEqual([sent.small, sent.big].sort());
    expect(to(bigCarts)).toEqual([sent.big]);
  });
});
