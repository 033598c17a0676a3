// The one-statement claim and settle of unlimited destinations: the per-destination cap counts
// what this worker already sends, a claim reads its events, and a success whose lease was taken
// over is `lost`. Then the queue's rate-limit slots against a claim that waits for the
// destination's row lock (a settling transaction holds it): the slots must start when the lock is
// had, not when the claim's transaction began, or every slot already past goes out at once and
// the endpoint sees a burst (PostgreSQL only: an embedded PGlite is one connection, so nothing can
// hold the lock meanwhile). A destination whose booking fails, or whose stored rate limit is out of
// range, holds up no other one. Last, settling failures wakes the log's consumers only when it
// logged an operational event.
import { sql } from 'drizzle-orm';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../../test/helpers/app.ts';
import { onPostgres } from '../../test/helpers/database.ts';
import { newId } from '../ids.ts';
import { queryRows } from '../store/db.ts';
import { deliveries } from '../store/schema.ts';
import { settleAll } from './outcome.ts';
import { claimDeliveries, claimRateLimited, claimUnlimited, Unwritten, WriteLatch } from './queue.ts';

/** A hub started before the tests of the describe block that calls this, and closed after them. */
function hubPerBlock(): () => TestApp {
  let t: TestApp | undefined;
  beforeAll(async () => {
    t = await startTestApp({ INTERCHANGE_EGRESS_ALLOW: '127.0.0.1/32' });
  });
  afterAll(async () => {
    await t?.close();
  });
  return () => {
    if (!t) throw new Error('the hub did not start');
    return t;
  };
}

/**
 * An organization with a webhook destination (its URL never answers; `subscription` as the API
 * takes it) and `count` deliveries to it waiting in the queue, one for each new event of `type`.
 */
async function queued(t: TestApp, count: number, type: string, subscription?: object) {
  const acme = await t.organization('Acme');
  const ep = await t.call('POST', '/v1/installations', {
    token: acme.token,
    body: { connector: 'webhook', config: { url: 'http://127.0.0.1:9/hook' }, subscription },
  });
  expect(ep.statusCode, ep.body).toBe(201);
  const destination = ep.json().id as string;
  const eventIds: string[] = [];
  for (let n = 0; n < count; n++) {
    const e = await t.call('POST', '/v1/events', { token: acme.token, body: { type, data: { n } } });
    eventIds.push(e.json().id);
  }
  await t.app.store.db.insert(deliveries).values(
    eventIds.map((eventId) => ({
      id: newId('delivery'),
      organizationId: acme.id,
      eventId,
      installationId: destination,
    })),
  );
  return { acme, destination, eventIds };
}

/** `count` deliveries to `destination` (of `org`), each for a new event, due `dueAgoMs` ago (1 ms apart). */
async function queuedDue(
  t: TestApp,
  org: { id: string; token: string },
  destination: string,
  count: number,
  dueAgoMs: number,
) {
  const ids: string[] = [];
  for (let n = 0; n < count; n++) {
    const event = await t.call('POST', '/v1/events', {
      token: org.token,
      body: { type: 'custom.due', data: { n } },
    });
    const id = newId('delivery');
    ids.push(id);
    await t.app.store.db.insert(deliveries).values({
      id,
      organizationId: org.id,
      eventId: event.json().id as string,
      installationId: destination,
      nextAttemptAt: new Date(Date.now() - dueAgoMs + n),
    });
  }
  return ids;
}

/** A webhook destination of `org` (its URL never answers). */
async function webhookOf(t: TestApp, org: { token: string }): Promise<string> {
  const ep = await t.call('POST', '/v1/installations', {
    token: org.token,
    body: { connector: 'webhook', config: { url: 'http://127.0.0.1:9/hook' } },
  });
  expect(ep.statusCode, ep.body).toBe(201);
  return ep.json().id as string;
}

describe('claiming and settling an unlimited destination', () => {
  const hub = hubPerBlock();

  it('caps by what the worker already sends, reads the events, and settles a taken-over lease as lost', async () => {
    const t = hub();
    const { acme, destination, eventIds } = await queued(t, 4, 'custom.claim');
    const db = t.app.store.db;
    const options = { limit: 10, leaseMs: 60_000, perDestination: 3 };

    // One already under way in this worker: two more fit under the cap of three.
    const a = await claimUnlimited(db, { ...options, owner: 'a', busy: new Map([[destination, 1]]) });
    expect(a.claimed).toHaveLength(2);
    expect(a.rateLimitedWork).toBe(false);
    for (const c of a.claimed) {
      expect(c).toMatchObject({ installationId: destination, connectorId: 'webhook', attempt: 1 });
      expect(c.event).toMatchObject({ id: c.eventId, type: 'custom.claim', organizationId: acme.id });
      expect(eventIds).toContain(c.eventId);
    }
    // Another worker gets the other two, never the leased ones.
    const b = await claimUnlimited(db, { ...options, owner: 'b', busy: new Map() });
    expect(b.claimed.map((c) => c.id).sort()).toEqual(
      (await queryRows<{ id: string }>(db, sql`select id from deliveries where lease_owner = 'b'`))
        .map((r) => r.id)
        .sort(),
    );
    expect(b.claimed).toHaveLength(2);
    expect(b.claimed.some((c) => a.claimed.some((x) => x.id === c.id))).toBe(false);

    // Worker a's first lease was taken over meanwhile: its success there is lost, the other counts.
    const [taken, kept] = a.claimed as [(typeof a.claimed)[0], (typeof a.claimed)[0]];
    await db.execute(sql`update deliveries set lease_owner = 'c' where id = ${taken.id}`);
    const settled = await settleAll(
      // Successes only: the event log (written only on failures) is not needed.
      { db, log: t.app.services.log, policy: { schedule: [] }, disableAfterMs: 60_000, owner: 'a' },
      a.claimed.map((claimed) => ({
        claimed,
        connector: 'webhook',
        eventType: claimed.event.type,
        startedAt: new Date(),
        durationMs: 12.4,
        result: { status: 'delivered', statusCode: 204, response: 'ok' },
      })),
    );
    expect(settled).toEqual(['lost', 'succeeded']);
    const rows = await queryRows<{ id: string; status: string; lease_owner: string | null }>(
      db,
      sql`select id, status, lease_owner from deliveries where id in (${taken.id}, ${kept.id})`,
    );
    expect(Object.fromEntries(rows.map((r) => [r.id, [r.status, r.lease_owner]]))).toEqual({
      [taken.id]: ['delivering', 'c'],
      [kept.id]: ['succeeded', null],
    });
    const attempts = await queryRows<{
      outcome: string;
      status_code: number;
      response: string;
      duration_ms: number;
    }>(
      db,
      sql`select outcome, status_code, response, duration_ms from delivery_attempts
          where delivery_id in (${taken.id}, ${kept.id})`,
    );
    expect(attempts).toEqual([
      { outcome: 'succeeded', status_code: 204, response: 'ok', duration_ms: 12 },
      { outcome: 'succeeded', status_code: 204, response: 'ok', duration_ms: 12 },
    ]);
  });

  it('does not let a destination at its cap fill the window with its backlog and stall the others', async () => {
    const t = hub();
    const acme = await t.organization('Acme');
    const [slow, other] = [await webhookOf(t, acme), await webhookOf(t, acme)];
    const db = t.app.store.db;
    const queue = (destination: string, count: number, dueAgoMs: number) =>
      queuedDue(t, acme, destination, count, dueAgoMs);
    // The slow destination's backlog is older than anything else, and larger than a claim's window.
    await queue(slow, 12, 60_000);
    const others = await queue(other, 3, 1_000);
    // This worker already has as many requests open to the slow destination as it may.
    const claim = await claimUnlimited(db, {
      owner: 'fair',
      limit: 4,
      leaseMs: 60_000,
      perDestination: 2,
      busy: new Map([[slow, 2]]),
    });
    expect(claim.claimed.map((c) => c.installationId)).toEqual([other, other]);
    expect(others).toEqual(expect.arrayContaining(claim.claimed.map((c) => c.id)));
  });
});

// A hub of its own, for the same reason as below: the claim takes the oldest due deliveries.
describe('claiming past what the unlimited claim cannot take', () => {
  const hub = hubPerBlock();

  it('passes over the older backlogs of rate-limited, paused and disabled destinations', async () => {
    const t = hub();
    const acme = await t.organization('Acme');
    const db = t.app.store.db;
    const [limited, paused, disabled, other] = [
      await webhookOf(t, acme),
      await webhookOf(t, acme),
      await webhookOf(t, acme),
      await webhookOf(t, acme),
    ];
    await db.execute(
      sql`update installations set destination = jsonb_set(destination, '{rateLimit}', '5') where id = ${limited}`,
    );
    await db.execute(
      sql`insert into destination_state (installation_id, throttled_until) values (${paused}, now() + interval '1 hour')`,
    );
    await db.execute(sql`update installations set status = 'disabled' where id = ${disabled}`);
    // Their backlogs are older than anything else, and each larger than a claim's window.
    await queuedDue(t, acme, limited, 6, 60_000);
    await queuedDue(t, acme, paused, 6, 50_000);
    await queuedDue(t, acme, disabled, 6, 40_000);
    const others = await queuedDue(t, acme, other, 3, 1_000);
    const claim = await claimUnlimited(db, {
      owner: 'past',
      limit: 4,
      leaseMs: 60_000,
      perDestination: 2,
      busy: new Map(),
    });
    expect(claim.claimed.map((c) => c.installationId)).toEqual([other, other]);
    expect(others).toEqual(expect.arrayContaining(claim.claimed.map((c) => c.id)));
    // The rate-limited one's are for `claimRateLimited`, which the claim says has work.
    expect(claim.rateLimitedWork).toBe(true);
  });
});

// A hub of its own: claims take the oldest due delivery of any organization, and the tests above
// leave some behind.
describe('settling failures', () => {
  const hub = hubPerBlock();

  it("wakes the log's consumers after settling only when a failure logged an event", async () => {
    const t = hub();
    const { acme } = await queued(t, 2, 'custom.wake');
    const db = t.app.store.db;
    const log = t.app.services.log;
    let wakes = 0;
    const counting = Object.assign(Object.create(log), {
      committed() {
        wakes++;
        log.committed();
      },
    }) as typeof log;
    const claim = async () => {
      const c = await claimUnlimited(db, {
        limit: 1,
        leaseMs: 60_000,
        perDestination: 5,
        owner: 'w',
        busy: new Map(),
      });
      expect(c.claimed).toHaveLength(1);
      return c.claimed[0] as (typeof c.claimed)[0];
    };
    const settle = (claimed: Awaited<ReturnType<typeof claim>>, schedule: number[]) =>
      settleAll({ db, log: counting, policy: { schedule }, disableAfterMs: 60_000, owner: 'w' }, [
        {
          claimed,
          connector: 'webhook',
          eventType: 'custom.wake',
          startedAt: new Date(),
          durationMs: 3,
          result: { status: 'retry', error: 'HTTP 500', statusCode: 500 },
        },
      ]);

    // A retry logs nothing: nobody is woken.
    expect(await settle(await claim(), [60_000])).toEqual(['retrying']);
    expect(wakes).toBe(0);
    // An exhausted delivery logs `delivery.exhausted`: the consumers are woken to route it.
    expect(await settle(await claim(), [])).toEqual(['dead']);
    expect(wakes).toBe(1);
    const exhausted = await queryRows<{ n: number }>(
      db,
      sql`select count(*)::int as n from events where organization_id = ${acme.id} and type = 'delivery.exhausted'`,
    );
    expect(exhausted[0]?.n).toBe(1);
  });
});

// A hub of its own: the claims take every rate-limited destination's due deliveries.
describe('claiming rate-limited destinations when one of them fails', () => {
  const hub = hubPerBlock();
  const options = { limit: 20, leaseMs: 60_000, busy: new Map(), perDestination: 10 };
  const limited = { event_types: ['custom.*'], rate_limit: 50 };

  it('books and leases the others, and reports the one whose booking failed, its deliveries untouched', async () => {
    const t = hub();
    const db = t.app.store.db;
    const broken = await queued(t, 2, 'custom.broken', limited);
    const healthy = await queued(t, 3, 'custom.healthy', limited);
    // The broken destination's state row cannot be written, as a database error would have it.
    await db.execute(
      sql.raw(`create function refuse_booking() returns trigger language plpgsql as $$
        begin
          if new.installation_id = '${broken.destination}' then raise exception 'refused'; end if;
          return new;
        end $$`),
    );
    await db.execute(
      sql`create trigger refuse_booking before insert or update on destination_state
          for each row execute function refuse_booking()`,
    );

    let claim: Awaited<ReturnType<typeof claimRateLimited>>;
    try {
      claim = await claimRateLimited(db, { ...options, owner: 'w' });
    } finally {
      await db.execute(sql`drop trigger refuse_booking on destination_state`);
    }
    expect(claim.claimed.map((c) => c.eventId).sort()).toEqual([...healthy.eventIds].sort());
    expect(claim.failed.map((f) => f.installationId)).toEqual([broken.destination]);
    const untouched = await queryRows<{ status: string; attempts: number; lease_owner: string | null }>(
      db,
      sql`select status, attempts, lease_owner from deliveries where installation_id = ${broken.destination}`,
    );
    expect(untouched).toEqual([
      { status: 'pending', attempts: 0, lease_owner: null },
      { status: 'pending', attempts: 0, lease_owner: null },
    ]);

    // Passed over, it is not tried at all.
    const again = await claimRateLimited(db, {
      ...options,
      owner: 'w',
      passOver: new Set([broken.destination]),
    });
    expect(again).toEqual({ claimed: [], failed: [] });
  });

  it('reads a stored rate limit out of range, or not a number, within the range the API accepts', async () => {
    const t = hub();
    const db = t.app.store.db;
    // Values the API refuses, written straight into the rows (numeric 1e400 is no float8).
    const stored = ['1e-300', '-5', '1e400', '"fast"'];
    const destinations: string[] = [];
    for (const value of stored) {
      const { destination } = await queued(t, 2, 'custom.stored', limited);
      await db.execute(
        sql`update installations set destination = jsonb_set(destination, '{rateLimit}', ${value}::jsonb)
            where id = ${destination}`,
      );
      destinations.push(destination);
    }
    const claim = await claimRateLimited(db, { ...options, owner: 'w' });
    expect(claim.failed).toEqual([]);
    const per = (id: string) => claim.claimed.filter((c) => c.installationId === id);
    // At 0.01 requests a second, one slot at once and the next 100 s on; at 10,000, both at once.
    const [tiny, negative, huge, text] = destinations as [string, string, string, string];
    for (const id of [tiny, negative, text]) expect(per(id)).toHaveLength(1);
    expect(per(huge)).toHaveLength(2);
    const tat = await queryRows<{ ahead_ms: number }>(
      db,
      sql`select extract(epoch from tat - now()) * 1000 as ahead_ms from destination_state
          where installation_id = ${tiny}`,
    );
    expect(Number(tat[0]?.ahead_ms)).toBeGreaterThan(90_000);
    expect(Number(tat[0]?.ahead_ms)).toBeLessThanOrEqual(100_000);
  });
});

describe.skipIf(!onPostgres)('rate-limit slots of a claim that waited for the lock (PostgreSQL only)', () => {
  const hub = hubPerBlock();

  it('books slots from the time the lock was had', async () => {
    const t = hub();
    const { destination } = await queued(t, 5, 'custom.slot', {
      event_types: ['custom.*'],
      rate_limit: 20,
    });

    // Another transaction holds the destination's state row, as a settling one does.
    const holder = new pg.Client({ connectionString: t.db.url });
    await holder.connect();
    try {
      await holder.query(
        'insert into destination_state (installation_id) values ($1) on conflict do nothing',
        [destination],
      );
      await holder.query('begin');
      await holder.query('select 1 from destination_state where installation_id = $1 for update', [
        destination,
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

describe('the write latch of a batch handed over unwritten', () => {
  const state = (p: Promise<void>) =>
    Promise.race([
      p.then(
        () => 'written',
        (err: Error) => `failed: ${err.message}`,
      ),
      new Promise((r) => setTimeout(() => r('waiting'), 20)),
    ]);

  it('resolves once every delivery is written, whichever way, and each counts once', async () => {
    const latch = new WriteLatch();
    expect(await state(latch.wait())).toBe('written');
    const [a, b] = [new Unwritten(latch), new Unwritten(latch)];
    const waiting = latch.wait();
    a.written();
    a.written();
    expect(await state(waiting)).toBe('waiting');
    b.written();
    expect(await state(waiting)).toBe('written');
    expect(await state(latch.wait())).toBe('written');
  });

  it('rejects as soon as one could not be written, the others still under way', async () => {
    const latch = new WriteLatch();
    const [a, b, c] = [new Unwritten(latch), new Unwritten(latch), new Unwritten(latch)];
    const waiting = latch.wait();
    a.written();
    b.failed(new Error('refused'));
    expect(await state(waiting)).toBe('failed: refused');
    c.written();
    expect(await state(latch.wait())).toBe('failed: refused');
  });
});
