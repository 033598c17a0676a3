// Shopify's webhook headers. Classic webhooks send `X-Shopify-<Name>`; the newer Events delivery
// drops the `X-` prefix (`Shopify-<Name>`). Every read accepts both spellings.
import { header, type InboundRequest } from '../sdk.ts';

const SUFFIXES = {
  topic: 'topic',
  hmac: 'hmac-sha256',
  shopDomain: 'shop-domain',
  apiVersion: 'api-version',
  webhookId: 'webhook-id',
  eventId: 'event-id',
  triggeredAt: 'triggered-at',
} as const;

export type ShopifyHeader = keyof typeof SUFFIXES;

export function shopifyHeader(req: InboundRequest, name: ShopifyHeader): string | undefined {
  const suffix = SUFFIXES[name];
  const value = header(req, `x-shopify-${suffix}`, `shopify-${suffix}`)?.trim();
  return value === '' ? undefined : value;
}

/** The shop the request says it is for, lower-cased like the installation's `shopDomain`. */
export function shopDomainOf(req: InboundRequest): string | undefined {
  return shopifyHeader(req, 'shopDomain')?.toLowerCase();
}
