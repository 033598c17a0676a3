// The router reads the log without event data (ROUTER_CONSUMER): it must still apply filters on
// the data, and still keep a destination from hearing of its own failures, by fetching the data
// of exactly those events. Against the real log and database (PGlite, or PostgreSQL).
import { eq, sql } from 'drizzle-orm';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../../test/helpers/app.ts';
import { sleep, until } from '../../test/helpers/log-fixture.ts';
import { connectorById } from '../connectors/catalog.ts';
import type { DeliveryResult, HttpClient } from '../connectors/sdk.ts';
import { TOPICS, topicOf } from '../events/types.ts';
import { newId, uuidv7 } from '../ids.ts';
import type { LogRecord } from '../log/port.ts';
import { queryRows } from '../store/db.ts';
import { events, organizations } from '../store/schema.ts';
import { type AttemptRecord, createSettler } from './outcome.ts';
import { type Claimed, Unwritten } from './queue.ts';
import { createRouter, ROUTER_CONSUMER } from './router.ts';
import { type Handoff, QUICK_MS, startSender } from './sender.ts';

describe('the router, on envelopes without data', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ INTERCHANGE_EGRESS_ALLOW: '127.0.0.1/32' });
  });
  afterAll(async () => {
    await t?.close();
  });

  /** A webhook destination (its URL never answers: these tests only route, or send with a fake HTTP client). */
  async function installWebhook(
    token: string,
    subscription: object,
    url = 'http://127.0.0.1:9/hook',
  ): Promise<string> {
    const res = await t.call('POST', '/v1/installations', {
      token,
      body: { connector: 'webhook', config: { url }, subscription },
    });
    expect(res.statusCode, res.body).toBe(201);
    return res.json().id as string;
  }

  /** Routes the log in a group of its own, handing over to `handoff`, until the organization has `count` deliveries. */
  async function routeUntil(group: string, handoff: Handoff, organizationId: string, count: number) {
    const db = t.app.store.db;
    const consumer = t.app.services.log.consume({
      ...ROUTER_CONSUMER,
      group,
      topics: TOPICS,
      leaseMs: 2000,
      pollMs: 20,
      handler: createRouter(db, connectorById, handoff),
    });
    try {
      const made = async () =>
        (
          await queryRows<{ n: number }>(
            db,
            sql`select count(*)::int as n from deliveries where organization_id = ${organizationId}`,
          )
        )[0]?.n;
      await until(async () => (await made()) === count, 20_000, `${count} deliveries`);
    } finally {
      await consumer.stop();
    }
  }

  it('filters on data it fetches, and keeps operational events from the destination they name', async () => {
    const acme = await t.organization('Acme');
    const install = (subscription: object) => installWebhook(acme.token, subscription);
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
      await until(() => seen.length >= 3, 20_000, 'three records');
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

  it("shares one work budget among an event's filters, destination after destination, and never holds back one without a filter", async () => {
    const org = await t.organization('Many filters');
    const install = (filter?: object) =>
      installWebhook(org.token, { event_types: ['custom.bomb'], ...(filter ? { filter } : {}) });
    // Created in this order (the router evaluates them by id): a cheap filter that matches, the
    // issue's three bombs, 95 filters reading nine paths through the array each (about 90,000
    // units: within their own budget, but not all of them within the event's), and none.
    const cheap = await install({ a: 1 });
    for (const bomb of [
      { a: { $in: Array(2000).fill(0) } },
      { $or: Array.from({ length: 199 }, () => ({ a: 0 })) },
      { $or: Array.from({ length: 127 }, () => ({ a: { $gt: 5 } })) },
    ])
      await install(bomb);
    const spreading: string[] = [];
    for (let d = 0; d < 95; d++)
      spreading.push(await install({ $or: Array.from({ length: 9 }, (_, p) => ({ [`a.d${d}p${p}`]: 1 })) }));
    const unfiltered = await install();

    const res = await t.call('POST', '/v1/events', {
      token: org.token,
      body: { type: 'custom.bomb', data: { a: Array(520_000).fill(1) } },
    });
    expect(res.statusCode, res.body.slice(0, 200)).toBe(201);
    const eventId = res.json().id as string;

    const db = t.app.store.db;
    const reports: Array<{ destinationId: string; eventId: string; budget: string }> = [];
    const route = createRouter(db, connectorById, undefined, { filterExhausted: (r) => reports.push(r) });
    let routed = false;
    const consumer = t.app.services.log.consume({
      ...ROUTER_CONSUMER,
      group: 'router-budget-test',
      topics: TOPICS,
      leaseMs: 5000,
      pollMs: 20,
      handler: async (records) => {
        await route(records);
        if (records.some((r) => r.event.id === eventId)) routed = true;
      },
    });
    try {
      await until(() => routed, 30_000, 'the 1 MB event routed');
    } finally {
      await consumer.stop();
    }
    const deliveredTo = await queryRows<{ installation_id: string }>(
      db,
      sql`select installation_id from deliveries where event_id = ${eventId} order by installation_id`,
    );
    expect(deliveredTo.map((d) => d.installation_id)).toEqual([cheap, unfiltered].sort());
    // The event's budget ran out among the costly filters: every one after that did not match.
    const exhausted = reports.filter((r) => r.eventId === eventId);
    expect(exhausted.length).toBeGreaterThanOrEqual(80);
    expect(exhausted.map((r) => r.destinationId)).toEqual(spreading.slice(-exhausted.length));
    expect(new Set(exhausted.map((r) => r.budget))).toEqual(new Set(['event']));
  }, 120_000);

  it('hands fresh deliveries to its sender unwritten, as far as it has room and the destination allows, and writes them leased when no outcome comes', async () => {
    const acme = await t.organization('Handoff');
    const install = (subscription: object) => installWebhook(acme.token, subscription);
    const plain = await install({ event_types: ['custom.*'] });
    const ordered = await install({ event_types: ['custom.*'], ordered: true });
    const paused = await install({ event_types: ['custom.*'] });
    const crowded = await install({ event_types: ['custom.*'] });
    const db = t.app.store.db;
    await db.execute(
      sql`insert into destination_state (installation_id, throttled_until) values (${paused}, now() + interval '1 hour')`,
    );
    const ids: string[] = [];
    for (const n of [1, 2, 3]) {
      const res = await t.call('POST', '/v1/events', {
        token: acme.token,
        body: { type: 'custom.visit', subject: 'visitor-1', data: { n } },
      });
      expect(res.statusCode, res.body).toBe(201);
      ids.push(res.json().id);
    }

    // The sender's side: room for everything but one delivery to `crowded`.
    const reserved: Map<string, number>[] = [];
    const adopted: { claimed: Claimed[]; granted: Map<string, number> }[] = [];
    const handoff: Handoff = {
      owner: 'test-sender',
      leaseMs: 60_000,
      // No waiting for room: what the sender has no room for now is created pending.
      room: async () => new Set(),
      reserve: (wanted) => {
        const granted = new Map([...wanted].map(([id, n]) => [id, id === crowded ? Math.min(n, 1) : n]));
        reserved.push(new Map(wanted));
        return granted;
      },
      adopt: (claimed, granted) => {
        adopted.push({ claimed, granted: new Map(granted) });
      },
    };
    await routeUntil('router-handoff-test', handoff, acme.id, 12);

    // Ordered and paused destinations are never offered; the others are, one slot per delivery.
    const offered = (id: string) => reserved.reduce((sum, m) => sum + (m.get(id) ?? 0), 0);
    expect([offered(plain), offered(paused), offered(crowded), offered(ordered)]).toEqual([3, 0, 3, 0]);
    // Given to the sender with their events: every one to `plain`, the one slot of `crowded`. This
    // sender never settles anything: once WRITE_ONCE_WAIT_MS was over, the router wrote them leased.
    const claimed = adopted.flatMap((a) => a.claimed);
    const to = (id: string) => claimed.filter((c) => c.installationId === id);
    expect(
      to(plain)
        .map((c) => c.eventId)
        .sort(),
    ).toEqual([...ids].sort());
    expect(to(crowded)).toHaveLength(1);
    expect(to(paused)).toHaveLength(0);
    for (const c of claimed) {
      expect(c.attempt).toBe(1);
      expect(c.connectorId).toBe('webhook');
      expect(c.event.type).toBe('custom.visit');
      expect(c.event.data).toMatchObject({ n: expect.any(Number) });
      expect(c.unwritten?.state).toBe('leasing');
    }
    // Every granted slot came back with the batch it was granted for, used or not.
    for (const a of adopted) {
      for (const [id, n] of a.granted)
        expect(a.claimed.filter((c) => c.installationId === id).length).toBeLessThanOrEqual(n);
    }

    const rows = await queryRows<{
      installation_id: string;
      status: string;
      lease_owner: string | null;
      attempts: number;
    }>(
      db,
      sql`select installation_id, status, lease_owner, attempts from deliveries where organization_id = ${acme.id}`,
    );
    const statuses = (id: string) =>
      rows
        .filter((r) => r.installation_id === id)
        .map((r) => `${r.status}/${r.lease_owner ?? '-'}/${r.attempts}`)
        .sort();
    expect(statuses(plain)).toEqual(Array(3).fill('delivering/test-sender/1'));
    expect(statuses(crowded)).toEqual(['delivering/test-sender/1', 'pending/-/0', 'pending/-/0']);
    expect(statuses(paused)).toEqual(Array(3).fill('pending/-/0'));
    expect(statuses(ordered)).toEqual(Array(3).fill('pending/-/0'));
  });
  it('hands a batch over in chunks as its sender makes room, and does not wait for a congested destination', async () => {
    const acme = await t.organization('Chunks');
    const steady = await installWebhook(acme.token, { event_types: ['custom.*'] });
    const congested = await installWebhook(acme.token, { event_types: ['custom.*'] });
    const db = t.app.store.db;
    const ids: string[] = [];
    for (let n = 0; n < 5; n++) {
      // One subject: one partition, so the router sees the five in one batch.
      const res = await t.call('POST', '/v1/events', {
        token: acme.token,
        body: { type: 'custom.visit', subject: 'visitor-1', data: { n } },
      });
      expect(res.statusCode, res.body).toBe(201);
      ids.push(res.json().id);
    }

    // A sender with room for two deliveries at a time, which it makes again before each wait
    // ends; it finds `congested` congested (never worth waiting for) and has no room for it.
    const adopted: Claimed[][] = [];
    const handoff: Handoff = {
      owner: 'test-sender',
      leaseMs: 60_000,
      room: async (wanted) => new Set([...wanted.keys()].filter((id) => id !== congested)),
      reserve: (wanted) => new Map([...wanted].map(([id, n]) => [id, id === congested ? 0 : Math.min(n, 2)])),
      adopt: (claimed) => {
        adopted.push(claimed.filter((c) => c.installationId === steady || c.installationId === congested));
      },
    };
    await routeUntil('router-chunks-test', handoff, acme.id, 10);

    // Every delivery to `steady` was handed over, two at a time: none was left to be claimed. (A
    // new group reads the log from its start: earlier tests' events come by too.)
    const here = adopted.filter((batch) => batch.length > 0);
    expect(
      here
        .flat()
        .map((c) => c.eventId)
        .sort(),
    ).toEqual([...ids].sort());
    expect(here.flat().every((c) => c.installationId === steady)).toBe(true);
    expect(here.length).toBeGreaterThanOrEqual(3);
    expect(Math.max(...here.map((batch) => batch.length))).toBe(2);
    const rows = await queryRows<{ installation_id: string; status: string }>(
      db,
      sql`select installation_id, status from deliveries where organization_id = ${acme.id}`,
    );
    const statuses = (id: string) => rows.filter((r) => r.installation_id === id).map((r) => r.status);
    expect(statuses(steady)).toEqual(Array(5).fill('delivering'));
    // The congested destination's were created pending at once, for any worker to claim.
    expect(statuses(congested)).toEqual(Array(5).fill('pending'));
  });
  /** `n` custom events of one subject (one partition: one batch), and their ids in order. */
  async function visits(token: string, n: number): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const res = await t.call('POST', '/v1/events', {
        token,
        body: { type: 'custom.visit', subject: 'visitor-1', data: { n: i } },
      });
      expect(res.statusCode, res.body).toBe(201);
      ids.push(res.json().id);
    }
    return ids;
  }

  /**
   * The real sender with a fake HTTP client, and a hand-over to it that keeps what it was given of
   * `organizationId`'s deliveries (`handed`).
   */
  function realSender(
    organizationId: string,
    http: HttpClient,
    policy = { schedule: t.app.config.retrySchedule },
    pollMs?: number,
  ) {
    const { services, store, config } = t.app;
    const sender = startSender({
      db: store.db,
      log: services.log,
      installations: services.installations,
      catalog: connectorById,
      http,
      logger: pino({ level: 'silent' }),
      policy,
      disableAfterMs: config.disableAfterMs,
      timeoutMs: 5000,
      leaseMs: 60_000,
      pollMs,
    });
    const handed: Claimed[] = [];
    const handoff: Handoff = {
      ...sender.handoff,
      adopt: (claimed, granted) => {
        handed.push(...claimed.filter((c) => c.organizationId === organizationId));
        sender.handoff.adopt(claimed, granted);
      },
    };
    return { sender, handed, handoff };
  }

  /** The real settler, settling for the lease owner `test-sender`. */
  const testSettler = () =>
    createSettler({
      db: t.app.store.db,
      log: t.app.services.log,
      policy: { schedule: t.app.config.retrySchedule },
      disableAfterMs: t.app.config.disableAfterMs,
      owner: 'test-sender',
    });

  /** The first attempt at a `custom.visit` event's delivery, handed over unwritten, and its result. */
  function unwrittenAttempt(
    organizationId: string,
    installationId: string,
    eventId: string,
    result: DeliveryResult,
  ): AttemptRecord {
    const now = new Date();
    return {
      claimed: {
        id: newId('delivery'),
        organizationId,
        eventId,
        installationId,
        attempt: 1,
        roundAttempts: 1,
        sendAt: now,
        connectorId: 'webhook',
        sourceConnector: null,
        event: {
          id: eventId,
          organizationId,
          installationId: null,
          source: '/api',
          type: 'custom.visit',
          subject: 'visitor-1',
          time: now,
          partitionKey: 'visitor-1',
          topic: 'custom-events',
          userId: null,
          data: {},
          rawRequestId: null,
          createdAt: now,
        },
        unwritten: new Unwritten(),
      },
      connector: 'webhook',
      eventType: 'custom.visit',
      startedAt: now,
      durationMs: 1,
      result,
    };
  }

  const deliveriesOf = (organizationId: string) =>
    queryRows<{
      id: string;
      event_id: string;
      installation_id: string;
      status: string;
      attempts: number;
      lease_owner: string | null;
      outcomes: string[];
    }>(
      t.app.store.db,
      sql`select d.id, d.event_id, d.installation_id, d.status, d.attempts, d.lease_owner,
            array(select a.outcome from delivery_attempts a where a.delivery_id = d.id order by a.attempt) as outcomes
          from deliveries d where d.organization_id = ${organizationId}`,
    );

  it('writes a delivery it hands over once, with the outcome of its first attempt', async () => {
    const acme = await t.organization('Write once');
    const fine = await installWebhook(acme.token, { event_types: ['custom.*'] });
    // A URL the fake HTTP client answers 500 to.
    const failing = await installWebhook(
      acme.token,
      { event_types: ['custom.*'] },
      'http://127.0.0.1:9/fails',
    );
    const { sender, handed, handoff } = realSender(
      acme.id,
      async (url) => ({ status: url.endsWith('/fails') ? 500 : 204, headers: {}, body: '' }),
      // Retries an hour later: the failed deliveries stay as their first attempt left them.
      { schedule: [3_600_000, 3_600_000] },
    );
    const ids = await visits(acme.token, 3);
    try {
      await routeUntil('router-write-once-test', handoff, acme.id, 6);
    } finally {
      await sender.stop();
    }

    expect(handed.map((c) => c.eventId).sort()).toEqual([...ids, ...ids].sort());
    // Each row was written by its outcome, not leased first by the router.
    for (const c of handed) expect(c.unwritten?.state).toBe('settling');
    const rows = await deliveriesOf(acme.id);
    const summary = (id: string) =>
      rows
        .filter((r) => r.installation_id === id)
        .map((r) => `${r.status}/${r.attempts}/${r.lease_owner ?? '-'}/${r.outcomes.join(',')}`);
    expect(summary(fine)).toEqual(Array(3).fill('succeeded/1/-/succeeded'));
    expect(summary(failing)).toEqual(Array(3).fill('failed/1/-/retry'));
    // The ids the sender used are the rows' own.
    expect(new Set(rows.map((r) => r.id))).toEqual(new Set(handed.map((c) => c.id)));
  });

  it('commits the log past a batch only once its deliveries are written, and never sends one written before', async () => {
    const acme = await t.organization('Not lost');
    await installWebhook(acme.token, { event_types: ['custom.*'] });
    const ids = await visits(acme.token, 3);
    const { store } = t.app;
    const settle = testSettler();
    // The first hand-over's outcomes cannot be written (the database went away, say); later ones are.
    let failNext = true;
    const handed: string[] = [];
    const handoff = (adoptOne: (c: Claimed) => void): Handoff => ({
      owner: 'test-sender',
      leaseMs: 60_000,
      room: async (wanted) => new Set(wanted.keys()),
      reserve: (wanted) => new Map(wanted),
      adopt: (claimed) => {
        const here = claimed.filter((c) => c.organizationId === acme.id);
        for (const c of here) {
          handed.push(c.eventId);
          adoptOne(c);
        }
        if (here.length > 0) failNext = false;
      },
    });
    const delivered = (c: Claimed) =>
      settle({
        claimed: c,
        connector: 'webhook',
        eventType: c.event.type,
        startedAt: new Date(),
        durationMs: 1,
        result: { status: 'delivered', statusCode: 204 },
      });
    const flaky = handoff((c) => {
      if (failNext) {
        const u = c.unwritten;
        if (!u) throw new Error('handed over written');
        u.state = 'settling';
        u.failed(new Error('the database went away'));
      } else void delivered(c);
    });
    await routeUntil('router-not-lost-test', flaky, acme.id, 3);
    // The batch failed, so it was read again and handed over again: each event twice, written once.
    expect([...handed].sort()).toEqual([...ids, ...ids].sort());
    const rows = await deliveriesOf(acme.id);
    expect(rows.map((r) => `${r.status}/${r.attempts}/${r.outcomes.join(',')}`)).toEqual(
      Array(3).fill('succeeded/1/succeeded'),
    );

    // Read again from the start (a new group): nothing already in the table is handed over or made again.
    handed.length = 0;
    const again: LogRecord[] = [];
    const consumer = t.app.services.log.consume({
      ...ROUTER_CONSUMER,
      group: 'router-not-lost-again',
      topics: TOPICS,
      pollMs: 20,
      handler: async (records) => {
        again.push(...records.filter((r) => r.event.organization === acme.id));
      },
    });
    try {
      await until(() => again.length >= 3, 20_000, 'the three records again');
    } finally {
      await consumer.stop();
    }
    expect(again).toHaveLength(3);
    await createRouter(
      store.db,
      connectorById,
      handoff(() => {}),
    )(again);
    expect(handed).toEqual([]);
    expect(await deliveriesOf(acme.id)).toHaveLength(3);
  });

  it('settles each attempt of a batch on its own when the batch is refused, and loses one whose destination is gone', async () => {
    const acme = await t.organization('Settle apart');
    const kept = await installWebhook(acme.token, { event_types: ['custom.*'] });
    const deleted = await installWebhook(acme.token, { event_types: ['custom.*'] });
    const [eventId, otherEventId] = await visits(acme.token, 2);
    const settle = testSettler();
    const gone = await t.call('DELETE', `/v1/installations/${deleted}`, { token: acme.token });
    expect(gone.statusCode, gone.body).toBe(204);
    const attempt = (installationId: string, statusCode = 204, event = eventId as string) =>
      settle(unwrittenAttempt(acme.id, installationId, event, { status: 'delivered', statusCode }));
    // Settled together: a status code beyond the column's range makes the database refuse the
    // batch; the others are then settled apart.
    const results = await Promise.allSettled([
      attempt(kept),
      attempt(deleted),
      attempt(kept, 2 ** 40, otherEventId),
    ]);
    expect(results.map((r) => (r.status === 'fulfilled' ? r.value : 'refused'))).toEqual([
      'succeeded',
      'lost',
      'refused',
    ]);
    const rows = await deliveriesOf(acme.id);
    expect(rows.map((r) => `${r.installation_id}/${r.status}/${r.outcomes.join(',')}`)).toEqual([
      `${kept}/succeeded/succeeded`,
    ]);
  });
  it('claims what the router queued at once, though its last claim found nothing due and its poll interval is long', async () => {
    const acme = await t.organization('Queued wakes');
    const ordered = await installWebhook(
      acme.token,
      { event_types: ['custom.*'], ordered: true },
      'http://127.0.0.1:9/queued',
    );
    const sent: string[] = [];
    const { sender, handoff } = realSender(
      acme.id,
      async (url) => {
        // Earlier tests' deliveries may come due meanwhile: only this destination's are counted.
        if (url.endsWith('/queued')) sent.push(url);
        return { status: 204, headers: {}, body: '' };
      },
      undefined,
      60_000,
    );
    try {
      // Whatever earlier tests left due is sent first; then the sender waits with nothing due.
      await sleep(500);
      // An ordered destination's deliveries are queued pending, not handed over.
      await visits(acme.token, 2);
      await routeUntil('router-queued-wakes', handoff, acme.id, 2);
      await until(() => sent.length >= 2, 5000, 'both deliveries sent');
    } finally {
      await sender.stop();
    }
    expect(sent).toHaveLength(2);
    const rows = await deliveriesOf(acme.id);
    expect(rows.map((r) => `${r.installation_id}/${r.status}`)).toEqual(
      Array(2).fill(`${ordered}/succeeded`),
    );
  });

  it('stops without waiting for its poll interval, even when asked to while it claims', async () => {
    const acme = await t.organization('Stops at once');
    const { sender } = realSender(
      acme.id,
      async () => ({ status: 204, headers: {}, body: '' }),
      undefined,
      60_000,
    );
    // Right after start the sender is in its first claim.
    const stopped = await Promise.race([
      sender.stop().then(() => 'stopped'),
      sleep(10_000).then(() => 'still waiting'),
    ]);
    expect(stopped).toBe('stopped');
  });

  it('sends a retry due at once without waiting for its poll interval', async () => {
    const acme = await t.organization('Retry wakes');
    await installWebhook(acme.token, { event_types: ['custom.*'] }, 'http://127.0.0.1:9/retried');
    let calls = 0;
    const { sender, handoff } = realSender(
      acme.id,
      // Earlier tests' deliveries may come due meanwhile: only this destination's are counted.
      async (url) =>
        url.endsWith('/retried')
          ? { status: ++calls === 1 ? 500 : 204, headers: {}, body: '' }
          : { status: 204, headers: {}, body: '' },
      // The first retry at once, the next much later.
      { schedule: [0, 3_600_000] },
      60_000,
    );
    try {
      await sleep(500);
      await visits(acme.token, 1);
      await routeUntil('router-retry-wakes', handoff, acme.id, 1);
      await until(
        async () => (await deliveriesOf(acme.id))[0]?.status === 'succeeded',
        5000,
        'the retry to succeed',
      );
    } finally {
      await sender.stop();
    }
    const rows = await deliveriesOf(acme.id);
    expect(rows.map((r) => `${r.status}/${r.outcomes.join(',')}`)).toEqual(['succeeded/retry,succeeded']);
  });

  it('settles successes while a failure transaction is held up', async () => {
    const acme = await t.organization('Two lanes');
    const destination = await installWebhook(acme.token, { event_types: ['custom.*'] });
    const [first, second] = await visits(acme.token, 2);
    // Every transaction (a failure's settling) waits at this gate; single statements do not.
    let open: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const db = t.app.store.db;
    const gated = new Proxy(db, {
      get: (target, key) =>
        key === 'transaction'
          ? async (...args: Parameters<typeof db.transaction>) => {
              await gate;
              return target.transaction(...args);
            }
          : Reflect.get(target, key),
    });
    const settle = createSettler({
      db: gated,
      log: t.app.services.log,
      policy: { schedule: t.app.config.retrySchedule },
      disableAfterMs: t.app.config.disableAfterMs,
      owner: 'test-sender',
    });
    const record = (eventId: string, result: DeliveryResult) =>
      unwrittenAttempt(acme.id, destination, eventId, result);
    const failing = settle(
      record(first as string, { status: 'retry', error: 'the endpoint answered 500', statusCode: 500 }),
    );
    await sleep(20);
    const succeeding = settle(record(second as string, { status: 'delivered', statusCode: 204 }));
    const winner = await Promise.race([
      succeeding,
      failing.then(() => 'the failure first'),
      new Promise((r) => setTimeout(() => r('held up'), 5000)),
    ]);
    expect(winner).toBe('succeeded');
    open();
    expect(await failing).toBe('retrying');
    const rows = await deliveriesOf(acme.id);
    expect(rows.map((r) => `${r.status}/${r.outcomes.join(',')}`).sort()).toEqual([
      'failed/retry',
      'succeeded/succeeded',
    ]);
  });

  it('removes the attempts of the deliveries that go with a deleted destination or organization', async () => {
    const acme = await t.organization('Attempts follow');
    const kept = await installWebhook(acme.token, { event_types: ['custom.*'] });
    const doomed = await installWebhook(acme.token, { event_types: ['custom.*'] });
    const { sender, handoff } = realSender(acme.id, async () => ({ status: 204, headers: {}, body: '' }));
    try {
      await visits(acme.token, 2);
      await routeUntil('router-attempts-follow', handoff, acme.id, 4);
    } finally {
      await sender.stop();
    }
    // Attempts have no foreign key (a trigger on deliveries stands for it): counted by organization.
    const attempts = async () =>
      (
        await queryRows<{ n: number }>(
          t.app.store.db,
          sql`select count(*)::int as n from delivery_attempts where organization_id = ${acme.id}`,
        )
      )[0]?.n;
    expect(await attempts()).toBe(4);
    const gone = await t.call('DELETE', `/v1/installations/${doomed}`, { token: acme.token });
    expect(gone.statusCode, gone.body).toBe(204);
    expect(await attempts()).toBe(2);
    expect((await deliveriesOf(acme.id)).map((r) => r.installation_id)).toEqual([kept, kept]);
    await t.app.store.db.delete(organizations).where(eq(organizations.id, acme.id));
    expect(await attempts()).toBe(0);
    expect(await deliveriesOf(acme.id)).toEqual([]);
  });
  it('does not wait for the outcomes of a destination that answers slowly: it writes them leased at once', async () => {
    const acme = await t.organization('Slow and quick');
    const quick = await installWebhook(acme.token, { event_types: ['custom.*'] });
    const slow = await installWebhook(acme.token, { event_types: ['custom.*'] }, 'http://127.0.0.1:9/slow');
    // Four times QUICK_MS for the slow one; the quick one answers at once.
    const { sender, handed, handoff } = realSender(acme.id, async (url) => {
      if (url.endsWith('/slow')) await new Promise((r) => setTimeout(r, 4 * QUICK_MS));
      return { status: 204, headers: {}, body: '' };
    });
    try {
      // First the sender learns how each answers; then a second batch goes by.
      await visits(acme.token, 1);
      await routeUntil('router-slow-test-1', handoff, acme.id, 2);
      expect(sender.handoff.quick?.(quick)).toBe(true);
      expect(sender.handoff.quick?.(slow)).toBe(false);
      handed.length = 0;
      await visits(acme.token, 3);
      await routeUntil('router-slow-test-2', handoff, acme.id, 8);
    } finally {
      await sender.stop();
    }
    const states = (id: string) =>
      handed.filter((c) => c.installationId === id).map((c) => c.unwritten?.state);
    expect(states(quick)).toEqual(Array(3).fill('settling'));
    expect(states(slow)).toEqual(Array(3).fill('leasing'));
    // Either way each was delivered once and its row tells so.
    const rows = await deliveriesOf(acme.id);
    expect(rows.map((r) => `${r.status}/${r.attempts}/${r.outcomes.join(',')}`)).toEqual(
      Array(8).fill('succeeded/1/succeeded'),
    );
  });
});
