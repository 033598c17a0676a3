// The customer of an earlier event (a refund's order), read from the stored events, on PGlite or
// PostgreSQL: the latest event of that subject in the installation, however many events came after.
import { v7 as uuidv7 } from 'uuid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../../test/helpers/database.ts';
import { openStore, type Store } from '../store/db.ts';
import { migrate } from '../store/migrate.ts';
import { events, organizations } from '../store/schema.ts';
import { createCustomerLookup } from './customer-of.ts';

let database: TestDatabase;
let store: Store;

const row = (installationId: string, subject: string, data: Record<string, unknown>) => ({
  id: uuidv7(),
  organizationId: 'org_1',
  installationId,
  source: `/installations/${installationId}`,
  type: 'order.updated',
  subject,
  time: new Date(),
  partitionKey: 'acme.myshopify.com',
  topic: 'order-events',
  data,
});

async function stored(installationId: string, subject: string, data: Record<string, unknown>) {
  await store.db.insert(events).values(row(installationId, subject, data));
}

beforeAll(async () => {
  database = await createTestDatabase();
  store = await openStore(database.options);
  await migrate(store);
  await store.db.insert(organizations).values({ id: 'org_1', name: 'Acme' });
  await stored('ins_shop', 'orders/1001', { order_id: '1001', customer: { customer_id: '7302' } });
  await stored('ins_shop', 'orders/1001', { order_id: '1001', customer: { customer_id: '7303' } });
  await stored('ins_stripe', 'payment_intents/pi_1', { payment_id: 'pi_1', customer_id: 'cus_9' });
  await stored('ins_shop', 'orders/1002', { order_id: '1002', customer: null });
  // The same order number in another shop of the organization, later: not ins_shop's order.
  await stored('ins_shop_2', 'orders/1001', { order_id: '1001', customer: { customer_id: '9999' } });
  for (let i = 0; i < 3; i++) await stored('ins_shop', `products/${i}`, { product_id: String(i) });
});

afterAll(async () => {
  await store?.close();
  await database?.drop();
});

describe('the customer of an earlier event', () => {
  it("reads the latest event of the subject: an order's customer, a payment's customer_id", async () => {
    const customerOf = createCustomerLookup(store.db);
    expect(await customerOf('org_1', 'ins_shop', 'orders/1001')).toBe('7303');
    expect(await customerOf('org_1', 'ins_stripe', 'payment_intents/pi_1')).toBe('cus_9');
  });

  it('finds none for a guest order, an unknown subject, another installation or organization', async () => {
    const customerOf = createCustomerLookup(store.db);
    expect(await customerOf('org_1', 'ins_shop', 'orders/1002')).toBeNull();
    expect(await customerOf('org_1', 'ins_shop', 'orders/9999')).toBeNull();
    expect(await customerOf('org_1', 'ins_other', 'orders/1001')).toBeNull();
    expect(await customerOf('org_2', 'ins_shop', 'orders/1001')).toBeNull();
  });

  it('reads the newest event of the installation, not a later one of another installation', async () => {
    const customerOf = createCustomerLookup(store.db);
    expect(await customerOf('org_1', 'ins_shop', 'orders/1001')).toBe('7303');
    expect(await customerOf('org_1', 'ins_shop_2', 'orders/1001')).toBe('9999');
  });

  it('finds the customer of an order with more than 20,000 later events of the installation', async () => {
    await stored('ins_busy', 'orders/2001', { order_id: '2001', customer: { customer_id: '4242' } });
    const later = Array.from({ length: 20_001 }, (_, i) =>
      row('ins_busy', `products/${i}`, { product_id: String(i) }),
    );
    for (let i = 0; i < later.length; i += 2_000) {
      await store.db.insert(events).values(later.slice(i, i + 2_000));
    }
    expect(await createCustomerLookup(store.db)('org_1', 'ins_busy', 'orders/2001')).toBe('4242');
  }, 60_000);
});
