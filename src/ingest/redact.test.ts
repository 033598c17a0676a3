// Privacy redaction on a real database (PGlite, or PostgreSQL with DATABASE_URL): a customer's
// events across several chunks scrubbed and their raw bodies dropped, with the bodies of refused
// requests that name them, nothing of anyone else's touched; a shop's redaction takes every event
// and body of the installation; a stop between chunks keeps what was done.
import { eq, inArray } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../../test/helpers/database.ts';
import { openStore, type Store } from '../store/db.ts';
import { migrate } from '../store/migrate.ts';
import { events, inboundRequests, organizations } from '../store/schema.ts';
import { redact, scrub } from './redact.ts';

let database: TestDatabase;
let store: Store;

beforeAll(async () => {
  database = await createTestDatabase();
  store = await openStore(database.options);
  await migrate(store);
  await store.db.insert(organizations).values([
    { id: 'org_1', name: 'Acme' },
    { id: 'org_2', name: 'Globex' },
  ]);
});

afterAll(async () => {
  await store?.close();
  await database?.drop();
});

let n = 0;

/** A raw request of `installation` with this body (accepted, or refused after verification). */
async function request(
  id: string,
  org: string,
  installation: string,
  body: string,
  refusedWith?: string,
): Promise<void> {
  await store.db.insert(inboundRequests).values({
    id,
    organizationId: org,
    installationId: installation,
    receivedAt: new Date(),
    method: 'POST',
    path: `/hooks/${installation}`,
    headers: {},
    body: Buffer.from(body),
    bodySize: body.length,
    status: refusedWith ? 'rejected' : 'accepted',
    errorCode: refusedWith ?? null,
  });
}

/** An order of `customer` with its raw request; returns the event id. */
async function order(org: string, installation: string, customer: string): Promise<string> {
  const i = n++;
  const id = `evt_${String(i).padStart(4, '0')}`;
  const email = `${customer}@example.com`;
  await request(`req_${i}`, org, installation, JSON.stringify({ customer: { id: customer, email } }));
  await store.db.insert(events).values({
    id,
    organizationId: org,
    installationId: installation,
    source: `/installations/${installation}`,
    type: 'order.created',
    time: new Date(),
    partitionKey: 'shop',
    topic: 'order-events',
    data: {
      order_id: String(i),
      total: '10.00',
      products: [{ name: 'Tee', price: '10.00', quantity: 1 }],
      customer: { customer_id: customer, email, first_name: 'Ann', last_name: customer },
      shipping_address: { city: 'Berlin' },
    },
    rawRequestId: `req_${i}`,
  });
  return id;
}

/** A request refused after verification (no event) whose body names `customer`; returns its id. */
async function refused(org: string, installation: string, customer: string): Promise<string> {
  const id = `req_refused_${n++}`;
  const body = `{"customer":{"id":"${customer}","email":"${customer}@example.com"`;
  await request(id, org, installation, body, 'payload_malformed');
  return id;
}

async function bodiesKept(ids: string[]): Promise<boolean[]> {
  const rows = await store.db
    .select({ id: inboundRequests.id, body: inboundRequests.body })
    .from(inboundRequests)
    .where(inArray(inboundRequests.id, ids))
    .orderBy(inboundRequests.id);
  return ids.map((id) => rows.find((r) => r.id === id)?.body !== null);
}

async function read(ids: string[]) {
  const rows = await store.db
    .select({ id: events.id, data: events.data, body: inboundRequests.body })
    .from(events)
    .innerJoin(inboundRequests, eq(inboundRequests.id, events.rawRequestId))
    .where(inArray(events.id, ids))
    .orderBy(events.id);
  return rows.map((r) => ({ id: r.id, data: r.data as Record<string, unknown>, body: r.body }));
}

describe('redact', () => {
  it("scrubs one customer's events chunk by chunk and drops their bodies, nobody else's", async () => {
    const hers: string[] = [];
    const others: string[] = [];
    for (let i = 0; i < 7; i++) {
      hers.push(await order('org_1', 'ins_a', 'c-1'));
      if (i % 3 === 0) others.push(await order('org_1', 'ins_a', 'c-2'));
    }
    // The same customer id in another installation, and in another organization.
    others.push(await order('org_1', 'ins_b', 'c-1'), await order('org_2', 'ins_a', 'c-1'));
    // Refused requests (no events): hers goes; another customer's, and hers elsewhere, stay.
    const refusedHers = await refused('org_1', 'ins_a', 'c-1');
    const refusedKept = [
      await refused('org_1', 'ins_a', 'c-2'),
      await refused('org_1', 'ins_b', 'c-1'),
      await refused('org_2', 'ins_a', 'c-1'),
    ];

    const done = await redact(
      store.db,
      { organizationId: 'org_1', installationId: 'ins_a', customerId: 'c-1', all: false },
      { chunk: 3 },
    );
    expect(done).toBe(7);
    for (const row of await read(hers)) {
      expect(row.body).toBeNull();
      expect(row.data.customer).toEqual({
        customer_id: 'c-1',
        email: null,
        first_name: null,
        last_name: null,
      });
      expect(row.data.shipping_address).toBeNull();
      // Ids, amounts and product names stay.
      expect(row.data).toMatchObject({ total: '10.00', products: [{ name: 'Tee', price: '10.00' }] });
    }
    for (const row of await read(others)) {
      expect(row.body).not.toBeNull();
      expect((row.data.customer as { email: string }).email).toMatch(/@example\.com$/);
    }
    expect(await bodiesKept([refusedHers, ...refusedKept])).toEqual([false, true, true, true]);
  });

  it("scrubs every event of the installation for the shop's redaction", async () => {
    const shop = [await order('org_1', 'ins_s', 'c-7'), await order('org_1', 'ins_s', 'c-8')];
    const kept = await order('org_1', 'ins_t', 'c-7');
    const refusedShop = await refused('org_1', 'ins_s', 'c-9');
    const refusedElsewhere = await refused('org_1', 'ins_t', 'c-9');
    const target = { organizationId: 'org_1', installationId: 'ins_s', customerId: null, all: true };
    expect(await redact(store.db, target, { chunk: 1 })).toBe(2);
    expect(await bodiesKept([refusedShop, refusedElsewhere])).toEqual([false, true]);
    expect((await read(shop)).map((r) => [r.body, (r.data.customer as { email: unknown }).email])).toEqual([
      [null, null],
      [null, null],
    ]);
    expect((await read([kept]))[0]?.body).not.toBeNull();
  });

  it('stops between chunks when told, keeping the chunks done', async () => {
    const ids = [await order('org_1', 'ins_x', 'c-9'), await order('org_1', 'ins_x', 'c-9')];
    const stop = new AbortController();
    const target = { organizationId: 'org_1', installationId: 'ins_x', customerId: 'c-9', all: false };
    // The stop comes during the first chunk (with its first statement): that chunk is finished,
    // the next one never starts.
    const stopping = new Proxy(store.db, {
      get(db, key, receiver) {
        if (key === 'execute')
          return async (...args: Parameters<typeof db.execute>) => {
            const result = await db.execute(...args);
            stop.abort(new Error('stopping'));
            return result;
          };
        return Reflect.get(db, key, receiver);
      },
    });
    await expect(redact(stopping, target, { chunk: 1, signal: stop.signal })).rejects.toThrow('stopping');
    expect((await read(ids)).map((r) => r.body === null)).toEqual([true, false]);
  });
});

describe('scrub', () => {
  it('nulls personal fields and addresses at any depth, keeping product names', () => {
    expect(
      scrub({
        email: 'a@b.c',
        customer: { name: 'Ann', phone: '1' },
        products: [{ name: 'Tee' }],
        billing_address: { city: 'X' },
      }),
    ).toEqual({
      email: null,
      customer: { name: null, phone: null },
      products: [{ name: 'Tee' }],
      billing_address: null,
    });
  });
});
