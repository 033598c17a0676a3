// /v1/events: custom events from the organization's own systems (idempotent by id), listing
// with filters and cursor, reading, replay, and tenant isolation.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from './helpers/app.ts';

let t: TestApp;
let acme: Awaited<ReturnType<TestApp['organization']>>;
let globex: Awaited<ReturnType<TestApp['organization']>>;

beforeAll(async () => {
  t = await startTestApp();
  acme = await t.organization('Acme');
  globex = await t.organization('Globex');
});
afterAll(() => t?.close());

const send = (token: string, body: unknown) => t.call('POST', '/v1/events', { token, body });

describe('custom events', () => {
  it('stores a custom event once per id and appends it to custom-events', async () => {
    const body = {
      type: 'custom.cart.abandoned',
      subject: 'carts/42',
      id: 'cart-42-abandoned',
      data: { cart_id: '42', value: '19.99' },
    };
    const first = await send(acme.token, body);
    expect(first.statusCode, first.body).toBe(201);
    const event = first.json();
    expect(event).toMatchObject({
      specversion: '1.0',
      type: 'custom.cart.abandoned',
      subject: 'carts/42',
      organization: acme.id,
      partitionkey: 'carts/42',
      data: { cart_id: '42', value: '19.99' },
    });
    expect(event.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(event.source).toBe(`/api-clients/${acme.client.clientId}`);

    // The same event again (its data's keys in another order) is a replay: the stored event.
    const again = await send(acme.token, { ...body, data: { value: '19.99', cart_id: '42' } });
    expect(again.statusCode).toBe(200);
    expect(again.body).toBe(first.body);
    // Another event under the same id is refused, whatever differs, and nothing is stored.
    for (const changed of [
      { data: { cart_id: '42', value: '19.98' } },
      { data: { cart_id: '42', value: '19.99', extra: null } },
      { type: 'custom.cart.recovered' },
      { subject: 'carts/43' },
      { partition_key: 'elsewhere' },
      { time: '2020-01-01T00:00:00.000Z' },
    ]) {
      const conflict = await send(acme.token, { ...body, ...changed });
      expect(conflict.statusCode, JSON.stringify(changed)).toBe(409);
      expect(conflict.json().error).toMatchObject({
        code: 'event_id_conflict',
        details: [{ path: 'body.id', message: `the first event is ${event.id}` }],
      });
      expect(conflict.json().error.message).toContain(Object.keys(changed)[0]);
    }

    const list = await t.call('GET', '/v1/events?type=custom.*', { token: acme.token });
    expect(list.json().data.filter((e: { id: string }) => e.id === event.id)).toHaveLength(1);

    const entries = await t.app.store.db.query.logEntries.findMany({
      where: (l, { eq }) => eq(l.eventId, event.id),
    });
    expect(entries.map((e) => e.topic)).toEqual(['custom-events']);

    // The same id in another organization is another event.
    const other = await send(globex.token, body);
    expect(other.statusCode).toBe(201);
    expect(other.json().id).not.toBe(event.id);
  });

  it('gives data back as it was sent: key order, big and exact numbers, unicode', async () => {
    const data = {
      zeta: 1,
      alpha: { y: '2', b: [3, { d: 4, c: 5 }] },
      amount: '12345678901234567.89',
      name: 'Zoë 🛒',
      note: 'a "quoted" \\ line\u2028break\n\ttab',
    };
    const sent = await send(acme.token, { type: 'custom.order.noted', data });
    expect(sent.statusCode, sent.body).toBe(201);
    const read = await t.call('GET', `/v1/events/${sent.json().id}`, { token: acme.token });
    expect(read.statusCode).toBe(200);
    // Compared as text: the stored value keeps the order it was written in (jsonb would sort keys).
    expect(JSON.stringify(read.json().data)).toBe(JSON.stringify(data));
    // The listing splices the stored text into its body: the same envelope, byte for byte.
    const listed = await t.call('GET', '/v1/events?type=custom.order.*', { token: acme.token });
    expect(listed.headers['content-type']).toBe('application/json; charset=utf-8');
    const [item] = listed.json().data;
    expect(JSON.stringify(item)).toBe(JSON.stringify(read.json()).replace(/,"request":null}$/, '}'));
    expect(listed.body).toContain(`"data":${JSON.stringify(data)}}`);
  });

  it('keeps the numbers of custom data exactly as sent: answer, read, listing', async () => {
    const org = await t.organization('Numbers');
    // Each as JSON text: JSON.parse would make them Infinity (stored as null), round the integer,
    // and read the long decimal as 0.1.
    const numbers =
      '{"huge":1e400,"big":123456789012345678901234567890,"long":0.1000000000000000055511151231257827,"plain":[1.50,-0,2E-3]}';
    const res = await t.call('POST', '/v1/events', {
      token: org.token,
      headers: { 'content-type': 'application/json' },
      body: `{"type":"custom.measured","id":"m-1","data":${numbers}}`,
    });
    expect(res.statusCode, res.body).toBe(201);
    expect(res.body).toContain(`"data":${numbers}}`);
    const read = await t.call('GET', `/v1/events/${res.json().id}`, { token: org.token });
    expect(read.body).toContain(`"data":${numbers},"request":null}`);
    const listed = await t.call('GET', '/v1/events', { token: org.token });
    expect(listed.body).toContain(`"data":${numbers}}`);
    // The replay of the same id answers the stored text too.
    const again = await t.call('POST', '/v1/events', {
      token: org.token,
      headers: { 'content-type': 'application/json' },
      body: `{"type":"custom.measured","id":"m-1","data":${numbers}}`,
    });
    expect(again.statusCode, again.body).toBe(200);
    expect(again.body).toBe(res.body);
  });

  it('refuses a number a double would change in canonical data (its schema takes doubles)', async () => {
    const org = await t.organization('Canonical numbers');
    const order = (quantity: string) =>
      `{"type":"order.created","data":{"order_id":"1","total":"10.00","revenue":"10.00","currency":"EUR",` +
      `"external_ids":{},"products":[{"product_id":"p","name":"P","price":"10.00","quantity":${quantity}}]}}`;
    for (const [quantity, message] of [
      ['123456789012345678901234567890', 'is an integer beyond 2^53'],
      ['1e400', 'is too large for a double'],
      ['1.0000000000000000000001', 'has more digits than a double holds'],
    ]) {
      const res = await t.call('POST', '/v1/events', {
        token: org.token,
        headers: { 'content-type': 'application/json' },
        body: order(quantity as string),
      });
      expect(res.statusCode, res.body).toBe(400);
      expect(res.json().error).toMatchObject({
        code: 'number_not_exact',
        details: [{ path: 'body.data.products.0.quantity' }],
      });
      expect(res.json().error.message).toContain(`${quantity} ${message}`);
    }
    // A number a double holds exactly is taken, whatever its spelling.
    const ok = await t.call('POST', '/v1/events', {
      token: org.token,
      headers: { 'content-type': 'application/json' },
      body: order('2.0e0'),
    });
    expect(ok.statusCode, ok.body).toBe(201);
    expect(ok.json().data.products[0].quantity).toBe(2);
    expect((await t.call('GET', '/v1/events', { token: org.token })).json().data).toHaveLength(1);
  });

  it('lists each envelope as GET /v1/events/:id gives it, byte for byte, whatever its fields hold', async () => {
    const org = await t.organization('Envelopes');
    const user = (
      await t.call('POST', '/v1/users', { token: org.token, body: { email: 'e@example.com' } })
    ).json();
    const tricky = 'a "q" \\ /\u0001\u001f\b\f\n\r\t\u007f\u2028 ü 🛒';
    const sent = [
      // The listing's text is built by the database: escapes, nulls and times must come out as
      // JSON.stringify writes them.
      { type: 'custom.a', subject: tricky, partition_key: tricky, user_id: user.id, data: { s: tricky } },
      { type: 'custom.b', time: '2026-03-04T05:06:07.089Z', data: {} },
      { type: 'custom.c', time: '0999-12-31T23:59:59.999Z', data: { n: null } },
    ];
    const ids: string[] = [];
    for (const body of sent) {
      const res = await send(org.token, body);
      expect(res.statusCode, res.body).toBe(201);
      ids.push(res.json().id);
    }
    const listed = await t.call('GET', '/v1/events', { token: org.token });
    const items = listed.body.slice('{"data":['.length, listed.body.indexOf('],"has_more"'));
    const read = await Promise.all(
      ids.map(async (id) => (await t.call('GET', `/v1/events/${id}`, { token: org.token })).json()),
    );
    expect(items).toBe(read.map(({ request: _, ...event }) => JSON.stringify(event)).join(','));
    expect(read[0]).toMatchObject({ subject: tricky, partitionkey: tricky, userid: user.id });
    expect(read.map((e) => e.time)).toEqual([
      expect.any(String),
      '2026-03-04T05:06:07.089Z',
      '0999-12-31T23:59:59.999Z',
    ]);
  });

  it('validates canonical types against their schema and attaches a known user', async () => {
    const user = (
      await t.call('POST', '/v1/users', { token: acme.token, body: { email: 'u@example.com' } })
    ).json();
    const bad = await send(acme.token, { type: 'order.created', data: { order_id: '1' } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.code).toBe('validation_failed');
    expect(bad.json().error.details.map((d: { path: string }) => d.path)).toContain('body.data.total');

    const good = await send(acme.token, {
      type: 'order.created',
      user_id: user.id,
      data: {
        order_id: '1',
        total: '10.00',
        revenue: '10.00',
        currency: 'EUR',
        products: [],
        external_ids: {},
      },
    });
    expect(good.statusCode, good.body).toBe(201);
    expect(good.json()).toMatchObject({ userid: user.id, partitionkey: acme.id });
    const foreignUser = await send(globex.token, { type: 'custom.x', user_id: user.id, data: {} });
    expect(foreignUser.statusCode).toBe(404);
  });

  it('rejects unknown types and malformed bodies, storing nothing', async () => {
    const org = await t.organization('Strict');
    for (const body of [
      { type: 'order.exploded', data: {} },
      { type: 'Custom.Bad', data: {} },
      { type: 'custom.ok', data: 'not an object' },
      { type: 'custom.ok', data: {}, extra: 1 },
      { data: {} },
    ]) {
      const res = await send(org.token, body);
      expect(res.statusCode, JSON.stringify(body)).toBe(400);
      expect(res.json().error.code).toBe('validation_failed');
    }
    // The body's data is read by a parser of its own (numbers as sent); it refuses what the API's
    // usual parser refuses.
    for (const [body, code] of <Array<[string, string]>>[
      ['{"type":"custom.ok","data":{"__proto__":{"admin":true}}}', 'invalid_json'],
      ['{"type":"custom.ok","data":{"a":{"constructor":{"prototype":{}}}}}', 'invalid_json'],
      ['{"type":"custom.ok","data":{"a":1', 'invalid_json'],
      [`{"type":"custom.ok","data":{"a":${'['.repeat(5000)}${']'.repeat(5000)}}}`, 'validation_failed'],
    ]) {
      const res = await t.call('POST', '/v1/events', {
        token: org.token,
        headers: { 'content-type': 'application/json' },
        body,
      });
      expect(res.statusCode, body.slice(0, 80)).toBe(400);
      expect(res.json().error.code).toBe(code);
    }
    expect((await t.call('GET', '/v1/events', { token: org.token })).json().data).toEqual([]);
  });
});

describe('listing, reading and replaying', () => {
  it('filters by type prefix and time, pages with a cursor, and reads one event', async () => {
    const org = await t.organization('Lister');
    const ids: string[] = [];
    for (let i = 0; i < 5; i++)
      ids.push((await send(org.token, { type: `custom.kind${i % 2}`, data: { i } })).json().id);
    const page1 = (await t.call('GET', '/v1/events?limit=2', { token: org.token })).json();
    expect(page1.data.map((e: { id: string }) => e.id)).toEqual(ids.slice(0, 2));
    const page2 = (
      await t.call('GET', `/v1/events?limit=2&cursor=${page1.next_cursor}`, { token: org.token })
    ).json();
    expect(page2.data.map((e: { id: string }) => e.id)).toEqual(ids.slice(2, 4));

    const kind0 = (await t.call('GET', '/v1/events?type=custom.kind0', { token: org.token })).json();
    expect(kind0.data).toHaveLength(3);
    const future = (
      await t.call('GET', `/v1/events?since=${encodeURIComponent('2999-01-01T00:00:00Z')}`, {
        token: org.token,
      })
    ).json();
    expect(future.data).toEqual([]);
    const list = async (query: string) =>
      (await t.call('GET', `/v1/events?${query}`, { token: org.token }))
        .json()
        .data.map((e: { id: string }) => e.id);
    expect(await list('type=custom.*')).toEqual(ids);
    expect(await list('type=custom.kind1')).toEqual([ids[1], ids[3]]);
    expect(await list('type=order.*')).toEqual([]);
    expect(await list(`until=${encodeURIComponent('2000-01-01T00:00:00Z')}`)).toEqual([]);
    // Every filter at once, and a cursor: each combination is a statement of its own.
    const all = `type=custom.*&since=${encodeURIComponent('2000-01-01T00:00:00Z')}&until=${encodeURIComponent('2999-01-01T00:00:00Z')}`;
    expect(await list(all)).toEqual(ids);
    expect(await list(`${all}&limit=2&cursor=${page1.next_cursor}`)).toEqual(ids.slice(2, 4));
    const bad = await t.call('GET', '/v1/events?type=DROP TABLE', { token: org.token });
    expect(bad.statusCode).toBe(400);

    const one = await t.call('GET', `/v1/events/${ids[0]}`, { token: org.token });
    expect(one.statusCode).toBe(200);
    expect(one.json()).toMatchObject({ id: ids[0], type: 'custom.kind0', request: null });
  });

  it('takes a family name alone for its family: type=order lists order.*', async () => {
    const org = await t.organization('Families');
    const order = {
      order_id: '1',
      total: '10.00',
      revenue: '10.00',
      currency: 'EUR',
      products: [],
      external_ids: {},
    };
    const ids: string[] = [];
    for (const [type, data] of [
      ['order.created', order],
      ['custom.order.noted', {}],
      ['order.paid', order],
    ] as const) {
      const res = await send(org.token, { type, data });
      expect(res.statusCode, res.body).toBe(201);
      ids.push(res.json().id);
    }
    const list = async (type: string) =>
      (await t.call('GET', `/v1/events?type=${type}`, { token: org.token }))
        .json()
        .data.map((e: { id: string }) => e.id);
    expect(await list('order')).toEqual([ids[0], ids[2]]);
    expect(await list('order')).toEqual(await list('order.*'));
    expect(await list('custom')).toEqual([ids[1]]);
    expect(await list('invoice')).toEqual([]);
    // With a dot it is an exact type: custom.order is one, not the custom.order family.
    expect(await list('custom.order')).toEqual([]);
    expect(await list('custom.order.*')).toEqual([ids[1]]);
  });

  it('filters by exact subject, with the other filters and a cursor', async () => {
    const org = await t.organization('Subjects');
    const ids: string[] = [];
    for (const [type, subject] of [
      ['custom.noted', 'orders/1'],
      ['custom.noted', 'orders/2'],
      ['custom.paid', 'orders/1'],
      ['custom.noted', undefined],
      ['custom.noted', 'orders/1'],
    ] as const)
      ids.push((await send(org.token, { type, subject, data: {} })).json().id);
    const other = await t.organization('Other subjects');
    await send(other.token, { type: 'custom.noted', subject: 'orders/1', data: {} });
    const list = async (query: string) =>
      (await t.call('GET', `/v1/events?${query}`, { token: org.token }))
        .json()
        .data.map((e: { id: string }) => e.id);
    expect(await list('subject=orders/1')).toEqual([ids[0], ids[2], ids[4]]);
    expect(await list('subject=orders/1&type=custom.noted')).toEqual([ids[0], ids[4]]);
    expect(await list('subject=orders')).toEqual([]);
    const page1 = (await t.call('GET', '/v1/events?subject=orders/1&limit=1', { token: org.token })).json();
    expect(await list(`subject=orders/1&limit=5&cursor=${page1.next_cursor}`)).toEqual([ids[2], ids[4]]);
    const since = `since=${encodeURIComponent('2000-01-01T00:00:00Z')}`;
    expect(await list(`subject=orders/2&${since}`)).toEqual([ids[1]]);
  });

  it('lists a time range by time, then id, page after page', async () => {
    const org = await t.organization('Timeline');
    // Sent in this order, with times out of it (and two at the same instant).
    const times = [
      '2026-03-01T00:00:05Z',
      '2026-03-01T00:00:01Z',
      '2026-03-01T00:00:03Z',
      '2026-03-01T00:00:03Z',
      '2026-02-01T00:00:00Z',
      '2026-03-01T00:00:02Z',
    ];
    const sent: { id: string; time: string }[] = [];
    for (const [i, time] of times.entries()) {
      const res = await send(org.token, { type: `custom.tick${i % 2}`, data: { i }, time });
      sent.push({ id: res.json().id, time });
    }
    const byTime = sent
      .filter((e) => e.time >= '2026-03-01T00:00:00Z')
      .sort((a, b) => (a.time === b.time ? (a.id < b.id ? -1 : 1) : a.time < b.time ? -1 : 1))
      .map((e) => e.id);
    const since = `since=${encodeURIComponent('2026-03-01T00:00:00Z')}`;
    const pages: string[] = [];
    let cursor = '';
    for (let n = 0; n < 10; n++) {
      const page = (
        await t.call('GET', `/v1/events?${since}&limit=2${cursor ? `&cursor=${cursor}` : ''}`, {
          token: org.token,
        })
      ).json();
      pages.push(...page.data.map((e: { id: string }) => e.id));
      if (!page.has_more) break;
      cursor = page.next_cursor;
    }
    expect(pages).toEqual(byTime);
    // Unfiltered, the order stored (by id); `until` and a type narrow the range.
    const ids = async (query: string) =>
      (await t.call('GET', `/v1/events?${query}`, { token: org.token }))
        .json()
        .data.map((e: { id: string }) => e.id);
    expect(await ids('limit=100')).toEqual(sent.map((e) => e.id));
    expect(await ids(`until=${encodeURIComponent('2026-03-01T00:00:03Z')}`)).toEqual([
      sent[4]?.id,
      sent[1]?.id,
      sent[5]?.id,
    ]);
    expect(await ids(`${since}&type=custom.tick0`)).toEqual(
      byTime.filter((id) => [0, 2, 4].includes(sent.findIndex((e) => e.id === id))),
    );
  });

  it('replays an event into its topic again', async () => {
    const event = (await send(acme.token, { type: 'custom.replayed', data: {} })).json();
    const res = await t.call('POST', `/v1/events/${event.id}/replay`, { token: acme.token });
    expect(res.statusCode, res.body).toBe(202);
    expect(res.json()).toMatchObject({ event_id: event.id, topic: 'custom-events' });
    const entries = await t.app.store.db.query.logEntries.findMany({
      where: (l, { eq }) => eq(l.eventId, event.id),
    });
    expect(entries.map((e) => e.replay).sort()).toEqual([false, true]);
    expect(entries[0]?.partition).toBe(entries[1]?.partition);
  });

  it("answers 404 for another organization's event on every route", async () => {
    const event = (await send(acme.token, { type: 'custom.secret', data: { secret: 'acme-only' } })).json();
    for (const [method, url] of [
      ['GET', `/v1/events/${event.id}`],
      ['POST', `/v1/events/${event.id}/replay`],
    ] as const) {
      const res = await t.call(method, url, { token: globex.token });
      expect(res.statusCode).toBe(404);
      expect(res.json().error.code).toBe('event_not_found');
    }
    const list = await t.call('GET', '/v1/events?limit=100', { token: globex.token });
    expect(list.body).not.toContain('acme-only');
  });
});
