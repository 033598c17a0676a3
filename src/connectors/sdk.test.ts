import { describe, expect, it } from 'vitest';
import { isProviderEventType, providerEventType, topicOf } from '../events/types.ts';
import { ConnectorError, contentKey, RAW_EVENT_MAX_BYTES, rawEvent } from './sdk.ts';

describe('raw provider events', () => {
  it('are named after the provider topic', () => {
    expect(providerEventType('shopify', 'inventory_levels/update')).toBe('shopify.inventory_levels.update');
    expect(providerEventType('stripe', 'checkout.session.completed')).toBe(
      'stripe.checkout.session.completed',
    );
    expect(providerEventType('hubspot', 'deal.propertyChange')).toBe('hubspot.deal.property_change');
    expect(providerEventType('woocommerce', 'action.woocommerce-order')).toBe(
      'woocommerce.action.woocommerce_order',
    );
    for (const bad of ['', 'a//b', 'a.b.c.d.e.f.g', `x.${'y'.repeat(100)}`])
      expect(providerEventType('shopify', bad), bad).toBeUndefined();
    expect(topicOf('shopify.inventory_levels.update')).toBe('provider-events');
    expect(isProviderEventType('custom.cart')).toBe(false);
  });

  it('carry the payload, or only its size past the bound', () => {
    const small = rawEvent('shopify', 'carts/create', { id: 1 });
    expect(small).toEqual({ type: 'shopify.carts.create', data: { id: 1 } });
    const big = rawEvent('shopify', 'carts/create', { note: 'x'.repeat(RAW_EVENT_MAX_BYTES) });
    expect(big.data).toEqual({ payload_omitted: true, payload_bytes: RAW_EVENT_MAX_BYTES + 11 });
    expect(() => rawEvent('shopify', 'carts/create', [1])).toThrow(ConnectorError);
  });
});

describe('contentKey', () => {
  const draft = (data: unknown) => ({ type: 'order.updated' as const, subject: 'orders/1', data });
  it('is the subject for what happens once, else the subject and a digest of the data', () => {
    expect(contentKey([draft({ a: 1 })], { once: true })).toBe('orders/1');
    expect(contentKey([draft({ a: 1 })])).toBe(contentKey([draft({ a: 1 })]));
    expect(contentKey([draft({ a: 1 })])).not.toBe(contentKey([draft({ a: 2 })]));
  });
});
