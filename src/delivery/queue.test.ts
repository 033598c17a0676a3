// The queue's rate-limit slots against a claim that waits for the destination's row lock (a
// settling transaction holds it): the slots must start when the lock is had, not when the claim's
// transaction began, or every slot already past goes out at once and the endpoint sees a burst.
// PostgreSQL only: an embedded PGlite is one connection, so nothing can hold the lock meanwhile.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../../test/helpers/app.ts';
import { onPostgres } from '../../test/helpers/database.ts';
import { newId } from '../ids.ts';
import { deliveries } from '../store/schema.ts';
import { claimDeliveries } from './queue.ts';

describe.skipIf(!onPostgres)('rate-limit slots of a claim that waited for the lock (PostgreSQL only)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ INTERCHANGE_EGRESS_ALLOW: '127.0.0.1/32' });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('books slots from the time the lock was had', async () => {
    const acme = await t.organization('Acme');
    const ep = await t.call('POST', '/v1/installations', {
      token: acme.token,
      body: {
        connector: 'webhook',
        config: { url: 'http://127.0.0.1:9/hook' },
        subscription: { event_types: ['custom.*'], rate_limit: 20 },
      },
    });
    expect(ep.statusCode, ep.body).toBe(201);
    const eventIds: string[] = [];
    for (let n = 0; n < 5; n++) {
      const e = await t.call('POST', '/v1/events', {
        token: acme.token,
        body: { type: 'custom.slot', data: { n } },
      });
      eventIds.push(e.json().id);
    }
    await t.app.store.db.insert(deliveries).values(
      eventIds.map((eventId) => ({
        id: newId('delivery'),
        organizationId: acme.id,
        eventId,
        installationId: ep.json().id as string,
      })),
    );

    // Another transaction holds the destination's state row, as a settling one does.
    const holder = new pg.Client({ connectionString: t.db.url });
    await holder.connect();
    try {
      await holder.query(
        'insert into destination_state (installation_id) values ($1) on conflict do nothing',
        [ep.json().id],
      );
      await holder.query('begin');
      await holder.query('select 1 from destination_state where installation_id = $1 for update', [
        ep.json().id,
      ]);
      const claim = claimDeliveries(t.app.store.db, {
        owner: 'test',
        limit: 10,
        leaseMs: 60_000,
        busy: new Map(),
        perDestination: 10,
      });
      await new Promise((r) => setTimeout(r, 600));
      const releasing = Date.now();
      await holder.query('commit');
      const claimed = await claim;

      expect(claimed).toHaveLength(5);
      const slots = claimed.map((c) => c.sendAt.getTime()).sort((a, b) => a - b);
      // Not in the past when the lock came free (5 ms for clock resolution), and 50 ms apart.
      expect(slots[0]).toBeGreaterThanOrEqual(releasing - 5);
      for (let i = 1; i < slots.length; i++)
        expect((slots[i] as number) - (slots[i - 1] as number)).toBeCloseTo(50, 0);
    } finally {
      await holder.end();
    }
  });
});
