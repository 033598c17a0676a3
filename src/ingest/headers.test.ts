import { describe, expect, it } from 'vitest';
import { isHiddenHeader, keptHeaders } from './headers.ts';

describe('the headers kept of a webhook', () => {
  it('drop every provider signature and credential', () => {
    for (const name of [
      'x-shopify-hmac-sha256',
      'shopify-hmac-sha256',
      'x-wc-webhook-signature',
      'stripe-signature',
      'x-hubspot-signature',
      'x-hubspot-signature-v3',
      'webhook-signature',
      'svix-signature',
      'x-hub-signature-256',
      'x-gitlab-token',
      'x-api-key',
      'authorization',
      'proxy-authorization',
      'cookie',
    ])
      expect(isHiddenHeader(name), name).toBe(true);
  });

  it('keep what explains a delivery', () => {
    const headers = {
      'x-shopify-topic': 'orders/create',
      'x-shopify-event-id': 'e1',
      'x-shopify-hmac-sha256': 'c2ln',
      'x-hubspot-request-timestamp': '1700000000000',
      'content-type': 'application/json',
    };
    expect(keptHeaders(headers)).toEqual({
      'x-shopify-topic': 'orders/create',
      'x-shopify-event-id': 'e1',
      'x-hubspot-request-timestamp': '1700000000000',
      'content-type': 'application/json',
    });
  });
});
