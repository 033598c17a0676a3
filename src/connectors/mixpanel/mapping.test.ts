import { describe, expect, it } from 'vitest';
import { canonicalCustomer, canonicalOrder, canonicalRefund, item } from './fixtures.ts';
import {
  amountToNumber,
  insertId,
  type Mapped,
  type MixpanelEvent,
  mapItem,
  type ProfileUpdate,
} from './mapping.ts';

const OFF = { productEvents: false };

function events(mapped: Mapped): MixpanelEvent[] {
  if (mapped.kind !== 'events') throw new Error(`expected events, got ${JSON.stringify(mapped)}`);
  return mapped.events;
}

function profile(mapped: Mapped): ProfileUpdate {
  if (mapped.kind !== 'profile') throw new Error(`expected a profile, got ${JSON.stringify(mapped)}`);
  return mapped.profile;
}

describe('order.created → Order Completed', () => {
  it('carries the Segment v2 properties with amounts as the exact numbers of the decimal strings', () => {
    const [completed, ...rest] = events(mapItem(item('order.created', canonicalOrder()), OFF));
    expect(rest).toEqual([]);
    expect(completed?.event).toBe('Order Completed');
    expect(completed?.properties).toMatchObject({
      time: Date.parse('2024-05-01T14:00:05.000Z'),
      distinct_id: 'shopify:207119551',
      order_id: '820982911946154508',
      order_number: '1001',
      total: 245.92,
      revenue: 228.98,
      tax: 11.94,
      shipping: 5,
      discount: 10,
      coupon: 'SPRING10',
      currency: 'USD',
      products: [
        {
          product_id: '632910392',
          sku: 'IPOD2008PINK',
          name: 'IPod Nano - 8GB - Pink',
          price: 199,
          quantity: 1,
        },
        {
          product_id: '921728736',
          sku: 'COAT-RED-M',
          name: 'Red Leather Coat - M',
          price: 19.99,
          quantity: 2,
        },
      ],
    });
  });

  it('leaves out absent values rather than sending nulls', () => {
    const order = canonicalOrder({ coupon: null, tax: null, fulfillment_status: null });
    const [completed] = events(mapItem(item('order.created', order), OFF));
    expect(completed?.properties).not.toHaveProperty('coupon');
    expect(completed?.properties).not.toHaveProperty('tax');
    expect(JSON.stringify(completed)).not.toContain('null');
  });

  it('uses the organization user id as distinct_id when the hub knows the customer', () => {
    const [completed] = events(mapItem(item('order.created', canonicalOrder(), { userid: 'usr_42' }), OFF));
    expect(completed?.properties.distinct_id).toBe('usr_42');
  });

  it('uses the bare customer id for events sent to the API (no source connector)', () => {
    const api = item('order.created', canonicalOrder(), { sourceConnector: null });
    expect(events(mapItem(api, OFF))[0]?.properties.distinct_id).toBe('207119551');
  });

  it('sends the empty distinct_id for an order without a customer', () => {
    const guest = item('order.created', canonicalOrder({ customer: null }));
    expect(events(mapItem(guest, OFF))[0]?.properties.distinct_id).toBe('');
  });

  it('adds one Product Purchased per line item when asked', () => {
    const mapped = events(mapItem(item('order.created', canonicalOrder()), { productEvents: true }));
    expect(mapped.map((e) => e.event)).toEqual(['Order Completed', 'Product Purchased', 'Product Purchased']);
    expect(mapped[2]?.properties).toMatchObject({
      order_id: '820982911946154508',
      currency: 'USD',
      product_id: '921728736',
      price: 19.99,
      quantity: 2,
      distinct_id: 'shopify:207119551',
    });
  });

  it('keeps array properties under Mixpanel’s 255-element limit', () => {
    const line = canonicalOrder().products[1];
    if (!line) throw new Error('fixture has two lines');
    const big = canonicalOrder({ products: Array.from({ length: 300 }, () => line) });
    const products = events(mapItem(item('order.created', big), OFF))[0]?.properties.products;
    expect(products).toHaveLength(254);
  });
});

describe('$insert_id', () => {
  it('is the same on every retry, distinct per derived event and per canonical event, ≤ 36 of [A-Za-z0-9-]', () => {
    const delivery = item('order.created', canonicalOrder());
    const first = events(mapItem(delivery, { productEvents: true })).map((e) => e.properties.$insert_id);
    const retried = events(mapItem({ ...delivery, attempt: 2 }, { productEvents: true })).map(
      (e) => e.properties.$insert_id,
    );
    expect(retried).toEqual(first);
    expect(new Set(first).size).toBe(3);
    for (const id of first) expect(id).toMatch(/^[A-Za-z0-9-]{1,36}$/);
    const other = events(mapItem(item('order.created', canonicalOrder()), OFF))[0]?.properties.$insert_id;
    expect(first).not.toContain(other);
    expect(insertId('evt', 0)).toBe(insertId('evt', 0));
    expect(insertId('evt', 0)).not.toBe(insertId('evt', 1));
  });
});

describe('refunds → Order Refunded', () => {
  it('maps refund.created with the refunded amount; without a known user it has no distinct_id', () => {
    const [refunded] = events(mapItem(item('refund.created', canonicalRefund()), OFF));
    expect(refunded?.event).toBe('Order Refunded');
    expect(refunded?.properties).toMatchObject({
      order_id: '820982911946154508',
      refund_id: '509562969',
      total: 19.99,
      currency: 'USD',
      reason: 'Item arrived damaged',
      distinct_id: '',
      products: [{ product_id: '921728736', price: 19.99, quantity: 1 }],
    });
    const known = events(mapItem(item('refund.created', canonicalRefund(), { userid: 'usr_42' }), OFF));
    expect(known[0]?.properties.distinct_id).toBe('usr_42');
  });

  it('sends a refund of a customer who is no known user to the same distinct_id as the order', () => {
    const refund = canonicalRefund({ customer_id: '207119551' });
    const [refunded] = events(mapItem(item('refund.created', refund), OFF));
    const [completed] = events(mapItem(item('order.created', canonicalOrder()), OFF));
    expect(refunded?.properties.distinct_id).toBe('shopify:207119551');
    expect(refunded?.properties.distinct_id).toBe(completed?.properties.distinct_id);
  });

  it('maps order.refunded with the order’s total and customer', () => {
    const [refunded] = events(mapItem(item('order.refunded', canonicalOrder()), OFF));
    expect(refunded?.event).toBe('Order Refunded');
    expect(refunded?.properties).toMatchObject({
      order_id: '820982911946154508',
      total: 245.92,
      currency: 'USD',
    });
    expect(refunded?.properties.distinct_id).toBe('shopify:207119551');
  });
});

describe('customers → profile updates', () => {
  it('sets Mixpanel’s reserved profile properties from the canonical customer', () => {
    const update = profile(mapItem(item('customer.updated', canonicalCustomer()), OFF));
    expect(update).toEqual({
      $distinct_id: 'shopify:207119551',
      $set: {
        $email: 'bob.norman@example.com',
        $first_name: 'Bob',
        $last_name: 'Norman',
        $name: 'Bob Norman',
        $city: 'Louisville',
        $region: 'Kentucky',
        $country_code: 'US',
        $created: '2024-04-30T18:22:10-04:00',
        accepts_marketing: true,
        shopify_customer_id: '207119551',
      },
    });
    const known = profile(mapItem(item('customer.created', canonicalCustomer(), { userid: 'usr_42' }), OFF));
    expect(known.$distinct_id).toBe('usr_42');
  });
});

describe('what cannot be mapped', () => {
  it('refuses data that is not the canonical record and types it does not map', () => {
    expect(mapItem(item('order.created', { order_id: 1 }), OFF)).toMatchObject({ kind: 'invalid' });
    expect(mapItem(item('order.created', canonicalOrder({ total: '19,99' })), OFF)).toMatchObject({
      kind: 'invalid',
    });
    expect(mapItem(item('product.created', {}), OFF)).toMatchObject({ kind: 'invalid' });
    expect(mapItem(item('order.created', canonicalOrder(), { time: 'yesterday' }), OFF)).toMatchObject({
      kind: 'invalid',
    });
  });

  it('converts only exact decimal strings', () => {
    expect(amountToNumber('19.99')).toBe(19.99);
    expect(amountToNumber('0.10')).toBe(0.1);
    expect(amountToNumber('-5')).toBe(-5);
    expect(() => amountToNumber('1e3')).toThrow(RangeError);
    expect(() => amountToNumber('')).toThrow(RangeError);
  });
});
