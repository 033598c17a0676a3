// The sender's side of the router's hand-over (`Handoff.room`): the router waits while a busy
// destination keeps answering, and stops waiting for one that has gone silent; meanwhile the
// queue is still claimed from. Slots are taken with `reserve` and given back with `adopt`, as the
// router does; nothing is really sent (the HTTP client only records what it was asked).
import { sql } from 'drizzle-orm';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../../test/helpers/app.ts';
import { connectorById } from '../connectors/catalog.ts';
import { newId } from '../ids.ts';
import { CLAIM_WHILE_ROUTING_MS, CONGESTED_MS, type Sender, STALL_MS, startSender } from './sender.ts';

describe("the sender's room for the router", () => {
  let t: TestApp;
  let sender: Sender;
  const requested: string[] = [];
  beforeAll(async () => {
    t = await startTestApp({ INTERCHANGE_EGRESS_ALLOW: '127.0.0.1/32' });
    const { store, services, config } = t.app;
    sender = startSender({
      db: store.db,
      log: services.log,
      installations: services.installations,
      catalog: connectorById,
      http: (url) => {
        requested.push(url);
        return Promise.reject(new Error('nothing is sent in these tests'));
      },
      logger: pino({ level: 'silent' }),
      policy: { schedule: config.retrySchedule },
      disableAfterMs: config.disableAfterMs,
      timeoutMs: 1000,
      leaseMs: 60_000,
      perDestination: 8,
    });
  });
  afterAll(async () => {
    await sender?.stop();
    await t?.close();
  });

  const one = (id: string, n: number) => new Map([[id, n]]);

  it('answers at once while there is room, and when the wait is over', async () => {
    await expect(sender.handoff.room(one('ins_free', 5), 1000)).resolves.toEqual(new Set(['ins_free']));
    const granted = sender.handoff.reserve(one('ins_full', 8));
    expect(granted).toEqual(one('ins_full', 8));
    await expect(sender.handoff.room(one('ins_full', 5), 0)).resolves.toEqual(new Set());
    sender.handoff.adopt([], granted);
  });

  it('waits while a busy destination answers, until it has room for a fair share', async () => {
    const granted = sender.handoff.reserve(one('ins_busy', 8));
    let answer: ReadonlySet<string> | undefined;
    const waiting = sender.handoff.room(one('ins_busy', 5), 10_000).then((a) => {
      answer = a;
    });
    // Half of what one destination may have under way is a fair share: three answers are not enough.
    sender.handoff.adopt([], one('ins_busy', 3));
    await new Promise((r) => setTimeout(r, STALL_MS / 2));
    expect(answer).toBeUndefined();
    sender.handoff.adopt([], one('ins_busy', 1));
    await waiting;
    expect(answer).toEqual(new Set(['ins_busy']));
    sender.handoff.adopt([], one('ins_busy', (granted.get('ins_busy') ?? 0) - 4));
  });

  it('stops waiting for a destination that answers nothing, and passes it over for a while', async () => {
    const granted = sender.handoff.reserve(one('ins_silent', 8));
    // Without that, each wait would last its minute, far beyond the test's time limit.
    await expect(sender.handoff.room(one('ins_silent', 5), 60_000)).resolves.toEqual(new Set());
    // Congested now: not waited for, not worth waiting for.
    await expect(sender.handoff.room(one('ins_silent', 5), 60_000)).resolves.toEqual(new Set());
    sender.handoff.adopt([], granted);
    // Once it has room again, it is worth waiting for after CONGESTED_MS at most.
    await new Promise((r) => setTimeout(r, CONGESTED_MS + 50));
    await expect(sender.handoff.room(one('ins_silent', 5), 1000)).resolves.toEqual(new Set(['ins_silent']));
  });

  it('still claims waiting deliveries while the router waits for room', async () => {
    const org = await t.organization('Waiting');
    const installed = await t.call('POST', '/v1/installations', {
      token: org.token,
      body: {
        connector: 'webhook',
        config: { url: 'http://127.0.0.1:9/waiting' },
        subscription: { event_types: ['custom.*'] },
      },
    });
    expect(installed.statusCode, installed.body).toBe(201);
    const event = await t.call('POST', '/v1/events', {
      token: org.token,
      body: { type: 'custom.visit', data: { n: 1 } },
    });
    expect(event.statusCode, event.body).toBe(201);
    // A delivery waiting in the queue (no router runs here), for any worker to claim.
    await t.app.store.db.execute(
      sql`insert into deliveries (id, organization_id, event_id, installation_id)
          values (${newId('delivery')}, ${org.id}, ${event.json().id}, ${installed.json().id})`,
    );
    // Meanwhile a router waits on a destination that keeps answering but never has room enough.
    const busy = 'ins_keeps_answering';
    sender.handoff.reserve(one(busy, 8));
    let waiting = true;
    const waits = (async () => {
      while (waiting) await sender.handoff.room(one(busy, 8), 60_000);
    })();
    const answering = setInterval(() => {
      sender.handoff.adopt([], one(busy, 1));
      sender.handoff.reserve(one(busy, 1));
    }, STALL_MS / 4);
    try {
      const deadline = Date.now() + 4 * CLAIM_WHILE_ROUTING_MS;
      while (!requested.some((url) => url.endsWith('/waiting')) && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
      expect(requested.filter((url) => url.endsWith('/waiting'))).not.toHaveLength(0);
    } finally {
      clearInterval(answering);
      waiting = false;
      sender.handoff.adopt([], one(busy, 8));
      await waits;
    }
  });
});
