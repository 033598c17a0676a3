// What one organization's destinations may cost the hub: subscription filters built to stall the
// worker (issue #19's bombs, routed for real while /healthz and another organization's delivery
// are watched), and how many destinations it may have.
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../src/store/db.ts';
import { startTestApp, type TestApp } from './helpers/app.ts';
import { type Receiver, startReceiver } from './helpers/receiver.ts';

const FAST = {
  INTERCHANGE_EGRESS_ALLOW: '127.0.0.1/32',
  INTERCHANGE_RETRY_SCHEDULE: '100ms,100ms',
  INTERCHANGE_DELIVERY_TIMEOUT: '2s',
  INTERCHANGE_DELIVERY_LEASE: '4s',
  // Small, so that the limit is reached quickly (the filter tests use at most four per organization).
  INTERCHANGE_MAX_DESTINATIONS: '5',
};

let t: TestApp;
const receivers: Receiver[] = [];

beforeAll(async () => {
  t = await startTestApp(FAST);
  t.app.startWorker();
});
afterAll(async () => {
  await Promise.all(receivers.map((r) => r.close()));
  await t?.close();
});

async function receiver(): Promise<Receiver> {
  const r = await startReceiver();
  receivers.push(r);
  return r;
}

async function destination(
  token: string,
  url: string,
  subscription: Record<string, unknown>,
): Promise<string> {
  const res = await t.call('POST', '/v1/installations', {
    token,
    body: { connector: 'webhook', config: { url }, subscription },
  });
  expect(res.statusCode, res.body).toBe(201);
  return res.json().id as string;
}

async function send(token: string, type: string, data: Record<string, unknown>): Promise<string> {
  const res = await t.call('POST', '/v1/events', { token, body: { type, data } });
  expect(res.statusCode, res.body.slice(0, 300)).toBe(201);
  return res.json().id as string;
}

/**
 * Calls /healthz back to back until `done` resolves; the longest time between two answers, ms
 * (a blocked event loop delays the call in flight or the timer before the next one).
 */
async function longestHealthzGap(done: Promise<void>): Promise<number> {
  let finished = false;
  void done.finally(() => {
    finished = true;
  });
  let longest = 0;
  let last = performance.now();
  while (!finished) {
    const res = await t.call('GET', '/healthz');
    expect(res.statusCode).toBe(200);
    longest = Math.max(longest, performance.now() - last);
    last = performance.now();
    await new Promise((r) => setTimeout(r, 10));
  }
  return longest;
}

describe('subscription filters built to stall the worker', () => {
  it('cost milliseconds: /healthz answers and another organization gets its events meanwhile', async () => {
    const attacker = await t.organization('Attacker');
    const victim = await t.organization('Victim');
    const bombed = await receiver();
    const normal = await receiver();
    const bombs = [
      { a: { $in: Array(2000).fill(0) } },
      { $or: Array.from({ length: 199 }, () => ({ a: 0 })) },
      { $or: Array.from({ length: 127 }, () => ({ a: { $gt: 5 } })) },
    ];
    for (const filter of bombs)
      await destination(attacker.token, bombed.url, { event_types: ['custom.bomb'], filter });
    // Filters still work: this one matches every bomb event.
    await destination(attacker.token, normal.url, { event_types: ['custom.bomb'], filter: { a: 1 } });
    await destination(victim.token, normal.url, { event_types: ['custom.ping'] });

    // The event (1,200 ones, 2.4 KB), with /healthz called back to back from before it is
    // sent until another organization's event, sent after it, is delivered.
    let stop = () => {};
    const watching = longestHealthzGap(new Promise<void>((resolve) => (stop = resolve)));
    const small = await send(attacker.token, 'custom.bomb', { a: Array(1200).fill(1) });
    const ping = await send(victim.token, 'custom.ping', { n: 1 });
    // At least once: a retried delivery may come twice.
    const ids = () => [...new Set(normal.received.map((r) => r.json.id))].sort();
    await normal.until(() => ids().length >= 2, 30_000);
    stop();
    // A generous bound: the plain evaluator held the event loop for 3 to 5 s.
    expect(await watching).toBeLessThan(1000);
    // An event of about 1 MB (not timed: storing and sending it takes its own time here).
    const large = await send(attacker.token, 'custom.bomb', { a: Array(520_000).fill(1) });
    await normal.until(() => ids().length >= 3, 30_000);
    expect(ids()).toEqual([small, ping, large].sort());
    await new Promise((r) => setTimeout(r, 300));
    expect(bombed.received).toEqual([]);
  });

  it('does not match once its work budget is used, and says so in the metrics and the log', async () => {
    const org = await t.organization('Greedy');
    const r = await receiver();
    // Eleven paths through a long array read 10,000 values each: more than the budget.
    const filter = {
      $or: [...'bcdefghijkl'.split('').map((c) => ({ [`a.${c}`]: 1 })), { z: { $exists: false } }],
    };
    const greedy = await destination(org.token, r.url, { event_types: ['custom.big'], filter });
    const plain = await destination(org.token, r.url, { event_types: ['custom.big'] });
    const big = await send(org.token, 'custom.big', { a: Array(200_000).fill(0) });
    const tiny = await send(org.token, 'custom.big', { a: [0] });
    await r.until((got) => got.length >= 3);
    await new Promise((resolve) => setTimeout(resolve, 300));
    // The plain destination gets both; the greedy one only the small event, which its filter matches.
    const byDestination = async (id: string) =>
      (await t.call('GET', `/v1/deliveries?destination=${id}`, { token: org.token }))
        .json()
        .data.map((d: { event_id: string }) => d.event_id);
    expect((await byDestination(plain)).sort()).toEqual([big, tiny].sort());
    expect(await byDestination(greedy)).toEqual([tiny]);
    expect((await t.call('GET', '/metrics')).body).toMatch(
      /^interchange_filter_budget_exhausted_total [1-9]/m,
    );
    const warning = t
      .logs()
      .split('\n')
      .find((line) => line.includes('work budget') && line.includes(greedy));
    expect(warning).toContain(big);
  });
});

describe('destinations per organization', () => {
  const webhook = (n: number) => ({ connector: 'webhook', config: { url: `http://127.0.0.1:9/${n}` } });
  const create = (token: string, body: Record<string, unknown>) =>
    t.call('POST', '/v1/installations', { token, body });
  const countOf = async (organizationId: string) =>
    (
      await queryRows<{ n: number }>(
        t.app.store.db,
        sql`select count(*)::int as n from installations where organization_id = ${organizationId} and destination is not null`,
      )
    )[0]?.n;

  it('are at most INTERCHANGE_MAX_DESTINATIONS: one more is 409 destination_limit_reached', async () => {
    const org = await t.organization('Many');
    const ids: string[] = [];
    for (let n = 0; n < 4; n++) ids.push((await create(org.token, webhook(n))).json().id);
    const mixpanel = await create(org.token, {
      connector: 'mixpanel',
      config: { region: 'eu', host: 'http://127.0.0.1:9', auth: 'project_token' },
      secrets: { projectToken: 'tok' },
    });
    expect(mixpanel.statusCode, mixpanel.body).toBe(201);
    const refused = await create(org.token, webhook(5));
    expect(refused.statusCode).toBe(409);
    expect(refused.json().error.code).toBe('destination_limit_reached');
    expect(await countOf(org.id)).toBe(5);
    // Sources do not count, nor do other organizations' destinations.
    const stripe = await create(org.token, { connector: 'stripe', secrets: { webhookSecret: 'whsec_x' } });
    expect(stripe.statusCode, stripe.body).toBe(201);
    const other = await t.organization('Other');
    expect((await create(other.token, webhook(0))).statusCode).toBe(201);

    // A disabled destination still counts (it can be recovered); a deleted or uninstalled one does not.
    const db = t.app.store.db;
    await queryRows(db, sql`update installations set status = 'disabled' where id = ${ids[0]}`);
    expect((await create(org.token, webhook(6))).statusCode).toBe(409);
    expect((await t.call('DELETE', `/v1/installations/${ids[1]}`, { token: org.token })).statusCode).toBe(
      204,
    );
    expect((await create(org.token, webhook(7))).statusCode).toBe(201);
    await queryRows(db, sql`update installations set status = 'uninstalled' where id = ${ids[2]}`);
    expect((await create(org.token, webhook(8))).statusCode).toBe(201);
    expect((await create(org.token, webhook(9))).statusCode).toBe(409);
  });

  it('holds against concurrent creates', async () => {
    const org = await t.organization('Racing');
    const answers = await Promise.all(Array.from({ length: 12 }, (_, n) => create(org.token, webhook(n))));
    const statuses = answers.map((a) => a.statusCode).sort();
    expect(statuses).toEqual([...Array(5).fill(201), ...Array(7).fill(409)]);
    expect(await countOf(org.id)).toBe(5);
  });
});
