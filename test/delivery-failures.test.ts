// How delivery copes with endpoints that fail, over real HTTP: a long run of failures disables an
// endpoint while a success resets the clock, Retry-After pauses an endpoint, receivers that hang,
// drip, reset or answer huge or invalid bodies stall nobody else and crash nothing, and neither
// does a destination whose stored rate limit is absurd.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { startTestApp, type TestApp } from './helpers/app.ts';
import { type Receiver, startReceiver } from './helpers/receiver.ts';

let t: TestApp;
let org: Awaited<ReturnType<TestApp['organization']>>;
const receivers: Receiver[] = [];

beforeAll(async () => {
  t = await startTestApp({
    INTERCHANGE_EGRESS_ALLOW: '127.0.0.1/32',
    INTERCHANGE_RETRY_SCHEDULE: '150ms,150ms,150ms,150ms,150ms,150ms,150ms,150ms,150ms,150ms',
    INTERCHANGE_DISABLE_AFTER: '1s',
    INTERCHANGE_DELIVERY_TIMEOUT: '1s',
    INTERCHANGE_DELIVERY_LEASE: '5s',
  });
  t.app.startWorker();
});
beforeEach(async () => {
  org = await t.organization('Acme');
});
afterAll(async () => {
  for (const r of receivers) await r.close();
  await t?.close();
});

async function receiver() {
  const r = await startReceiver();
  receivers.push(r);
  return r;
}

async function endpoint(url: string, eventTypes = ['custom.*'], options: object = {}, token = org.token) {
  const res = await t.call('POST', '/v1/installations', {
    token,
    body: { connector: 'webhook', config: { url }, subscription: { event_types: eventTypes, ...options } },
  });
  expect(res.statusCode, res.body).toBe(201);
  return res.json().id as string;
}

async function send(type: string, data: Record<string, unknown> = {}) {
  const res = await t.call('POST', '/v1/events', { token: org.token, body: { type, data } });
  expect(res.statusCode, res.body).toBe(201);
  return res.json().id as string;
}

async function installation(id: string) {
  return (await t.call('GET', `/v1/installations/${id}`, { token: org.token })).json();
}

it('disables an endpoint that fails without a break for longer than the limit', async () => {
  const r = await receiver();
  r.answer = () => 500;
  const id = await endpoint(r.url);
  await send('custom.fail');
  const deadline = Date.now() + 15_000;
  while ((await installation(id)).status !== 'disabled' && Date.now() < deadline) {
    await new Promise((res) => setTimeout(res, 50));
  }
  expect(await installation(id)).toMatchObject({ status: 'disabled', disabled_reason: 'failing' });
  const disabled = (await t.call('GET', '/v1/events?type=endpoint.disabled', { token: org.token })).json()
    .data;
  expect(disabled.map((e: { data: { destination_id: string } }) => e.data.destination_id)).toContain(id);
  // It failed for at least the limit before it was disabled.
  const first = r.received[0]?.at as number;
  const last = r.received.at(-1)?.at as number;
  expect(last - first).toBeGreaterThanOrEqual(900);
});

it('keeps an endpoint whose failures are broken by successes', async () => {
  const r = await receiver();
  // Every other request fails: never a second of failures without a success.
  r.answer = (req) => (req.n % 2 === 1 ? 500 : 200);
  const id = await endpoint(r.url);
  for (let n = 0; n < 6; n++) {
    await send('custom.flaky', { n });
    await new Promise((res) => setTimeout(res, 250));
  }
  await r.until(
    (got) => new Set(got.filter((x) => x.n % 2 === 0).map((x) => x.headers['webhook-id'])).size === 6,
  );
  expect((await installation(id)).status).toBe('active');
});

it('pauses an endpoint that answers 429 for as long as Retry-After asks', async () => {
  const r = await receiver();
  r.answer = (req) => (req.n === 1 ? { status: 429, headers: { 'retry-after': '1' } } : 200);
  await endpoint(r.url);
  await send('custom.slow', { n: 1 });
  await r.until((got) => got.length === 1);
  await send('custom.slow', { n: 2 });
  await r.until((got) => got.length === 3);
  // Nothing reached the endpoint during the pause, not even the second event.
  expect((r.received[1]?.at as number) - (r.received[0]?.at as number)).toBeGreaterThanOrEqual(950);
});

it('lets no misbehaving receiver stall a healthy endpoint or the worker', async () => {
  const bad: Server[] = [];
  const serve = async (handler: Parameters<typeof createServer>[1]) => {
    const server = createServer(handler);
    bad.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  };
  const urls = [
    // Headers and then a body that drips forever.
    await serve((_req, res) => {
      res.writeHead(200);
      const drip = setInterval(() => res.write('.'), 50);
      res.on('close', () => clearInterval(drip));
    }),
    // 50 MB of body.
    await serve((_req, res) => {
      res.writeHead(500);
      const chunk = Buffer.alloc(64 * 1024, 120);
      let sent = 0;
      const pump = () => {
        while (sent < 50 * 1024 * 1024 && res.write(chunk)) sent += chunk.length;
        if (sent < 50 * 1024 * 1024) res.once('drain', pump);
        else res.end();
      };
      pump();
    }),
    // The connection reset before any answer.
    await serve((req) => req.socket.destroy()),
    // Invalid UTF-8.
    await serve((_req, res) => res.writeHead(400).end(Buffer.from([0xff, 0xfe, 0xc3, 0x28]))),
  ];
  try {
    const good = await receiver();
    const badIds: string[] = [];
    for (const url of urls) badIds.push(await endpoint(url));
    const goodId = await endpoint(good.url);
    const sent: string[] = [];
    for (let n = 0; n < 10; n++) sent.push(await send('custom.mixed', { n }));
    await good.until((got) => got.length === 10, 10_000);
    expect(new Set(good.received.map((x) => x.headers['webhook-id']))).toEqual(new Set(sent));
    // The receiver has them all; the hub settles each just after its answer.
    let statuses: string[] = [];
    for (const deadline = Date.now() + 10_000; Date.now() < deadline; ) {
      const page = (
        await t.call('GET', `/v1/deliveries?destination=${goodId}&limit=100`, { token: org.token })
      ).json().data as Array<{ status: string }>;
      statuses = page.map((d) => d.status);
      if (statuses.length === 10 && statuses.every((x) => x === 'succeeded')) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(statuses).toEqual(Array(10).fill('succeeded'));
    // Every bad endpoint's attempts end and are recorded with a reason (the drip cut by the time
    // limit, the reset, the 50 MB and the invalid bytes read no further than the excerpt).
    for (const id of badIds) {
      const deadline = Date.now() + 15_000;
      let errors: string[] = [];
      while (errors.length === 0 && Date.now() < deadline) {
        const page = (
          await t.call('GET', `/v1/deliveries?destination=${id}&limit=100`, { token: org.token })
        ).json().data as Array<{ last_error: string | null }>;
        errors = page.flatMap((d) => (d.last_error ? [d.last_error] : []));
        if (errors.length === 0) await new Promise((r) => setTimeout(r, 50));
      }
      expect(errors.length, `attempts to ${id} recorded`).toBeGreaterThan(0);
    }
    expect((await t.call('GET', '/healthz')).statusCode).toBe(200);
  } finally {
    for (const s of bad) {
      s.closeAllConnections();
      s.close();
    }
  }
});

it("keeps sending other organizations' rate-limited and ordered deliveries past a destination whose stored rate limit is absurd", async () => {
  // Written straight into the database, as a row stored before the API checked the range would be:
  // one request per 1e300 seconds.
  const absurd = await receiver();
  const absurdId = await endpoint(absurd.url, ['custom.*'], { rate_limit: 5 });
  await t.app.store.db.execute(
    sql`update installations set destination = jsonb_set(destination, '{rateLimit}', '1e-300'::jsonb)
        where id = ${absurdId}`,
  );
  await send('custom.absurd', { n: 0 });

  const globex = await t.organization('Globex');
  const [limited, ordered] = [await receiver(), await receiver()];
  await endpoint(limited.url, ['custom.*'], { rate_limit: 50 }, globex.token);
  await endpoint(ordered.url, ['custom.*'], { ordered: true }, globex.token);
  const sent: string[] = [];
  for (let n = 0; n < 3; n++) {
    const res = await t.call('POST', '/v1/events', {
      token: globex.token,
      body: { type: 'custom.other', data: { n } },
    });
    expect(res.statusCode, res.body).toBe(201);
    sent.push(res.json().id as string);
  }
  await limited.until((got) => got.length >= 3, 10_000);
  // It is sent at the least rate the API accepts: its first request goes at once.
  await absurd.until((got) => got.length === 1, 10_000);
  await ordered.until((got) => got.length >= 3, 10_000);
  expect(limited.received.map((x) => x.json.id).sort()).toEqual([...sent].sort());
  expect(ordered.received.map((x) => x.json.id)).toEqual(sent);
});

it('passes over a rate-limited destination whose slots cannot be booked, logged and counted, and sends the others', async () => {
  const [broken, healthy] = [await receiver(), await receiver()];
  const brokenId = await endpoint(broken.url, ['custom.*'], { rate_limit: 50 });
  const db = t.app.store.db;
  // Its state row cannot be written, as a database error would have it.
  await db.execute(
    sql.raw(`create function refuse_state_of_broken() returns trigger language plpgsql as $$
      begin
        if new.installation_id = '${brokenId}' then raise exception 'refused'; end if;
        return new;
      end $$`),
  );
  await db.execute(
    sql`create trigger refuse_state_of_broken before insert or update on destination_state
        for each row execute function refuse_state_of_broken()`,
  );
  try {
    await send('custom.broken');
    const globex = await t.organization('Globex');
    await endpoint(healthy.url, ['custom.*'], { rate_limit: 50, ordered: true }, globex.token);
    for (let n = 0; n < 3; n++) {
      const res = await t.call('POST', '/v1/events', {
        token: globex.token,
        body: { type: 'custom.healthy', data: { n } },
      });
      expect(res.statusCode, res.body).toBe(201);
    }
    await healthy.until((got) => got.length === 3, 10_000);
    expect(broken.received).toHaveLength(0);
    const logged = t
      .logs()
      .split('\n')
      .filter((line) => line.includes('could not book send slots'));
    expect(logged.length).toBeGreaterThan(0);
    expect(logged[0]).toContain(brokenId);
    expect((await t.call('GET', '/metrics')).body).toMatch(
      /interchange_delivery_claim_failures_total\{scope="destination"\} [1-9]/,
    );
  } finally {
    await db.execute(sql`drop trigger refuse_state_of_broken on destination_state`);
  }
});
