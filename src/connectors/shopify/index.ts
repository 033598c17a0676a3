// Shopify: receives a shop's webhooks (orders, refunds, customers, products, app and compliance
// topics), verifies Shopify's HMAC and turns each into one canonical event (any other topic into a
// raw provider event). Topics, settings and checks: docs/connectors/shopify.md.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { ConnectorError, contentKey, defineConnector, type InboundRequest } from '../sdk.ts';
import { shopDomainOf, shopifyHeader } from './headers.ts';
import { parseShopifyJson } from './json.ts';
import { normalizeShopify, SHOPIFY_TOPIC_TYPES } from './normalize.ts';

const config = z.object({
  shopDomain: z
    .string()
    .trim()
    .toLowerCase()
    .regex(/^[a-z0-9][a-z0-9-]*\.myshopify\.com$/, 'the shop’s permanent domain, e.g. example.myshopify.com')
    .describe('The shop’s permanent *.myshopify.com domain'),
});

const secrets = z.object({
  clientSecret: z.string().min(1).describe('The app’s client secret: Shopify signs webhooks with it'),
});

const isoTime = z.iso.datetime({ offset: true });

/** `base64(HMAC-SHA256(client secret, raw body))`, compared in constant time. */
function signatureMatches(req: InboundRequest, secret: string, given: string): boolean {
  const expected = Buffer.from(createHmac('sha256', secret).update(req.rawBody).digest('base64'));
  const received = Buffer.from(given);
  return received.length === expected.length && timingSafeEqual(received, expected);
}

/** Topics that happen once per resource (its creation, its final deletion). */
const ONCE = new Set([
  'orders/create',
  'refunds/create',
  'customers/create',
  'customers/delete',
  'products/create',
  'products/delete',
]);

function topicOf(req: InboundRequest): string {
  return shopifyHeader(req, 'topic') ?? '';
}

export default defineConnector({
  id: 'shopify',
  name: 'Shopify',
  category: 'ecommerce',
  description: 'Orders, refunds, customers, products and compliance webhooks from a Shopify shop.',
  config,
  secrets,
  requiredSecrets: ['clientSecret'],
  // Shopify calls one URL for every shop (POST /hooks/shopify): the shop domain finds the installation.
  routeKeyOf: (cfg) => cfg.shopDomain,
  inbound: {
    topics: SHOPIFY_TOPIC_TYPES,
    verify(req, ctx) {
      const secret = ctx.secrets.clientSecret;
      if (!secret)
        throw new ConnectorError('secret_missing', 'the installation has no Shopify client secret');
      const given = shopifyHeader(req, 'hmac');
      if (!given) throw new ConnectorError('signature_invalid', 'X-Shopify-Hmac-Sha256 header is missing');
      if (!signatureMatches(req, secret, given)) {
        throw new ConnectorError('signature_invalid', 'X-Shopify-Hmac-Sha256 does not match the body');
      }
      // A valid HMAC proves the request is from Shopify for this app, not for this shop: an app's
      // secret signs the webhooks of every shop that installed it.
      if (shopDomainOf(req) !== ctx.config.shopDomain) {
        throw new ConnectorError(
          'signature_invalid',
          'X-Shopify-Shop-Domain is not this installation’s shop',
        );
      }
    },
    parse: (req) => parseShopifyJson(req.rawBody),
    routeKey: (req) => shopDomainOf(req),
    // Shopify advises de-duplicating on X-Shopify-Event-Id, but no header is signed: a signed body
    // posted again with a new event id would be a new event. The key is what the event says
    // instead (`contentKey`): a retry resends the same body, and the extra delivery a further
    // subscription to the topic gets is the same event (the same canonical data, whatever its API
    // version). One event can fire several topics (orders/create and orders/paid): the topic is
    // in the key. A creation or deletion is keyed by the resource alone: it happens once.
    dedupeKey: (req, _payload, ctx, drafts) => {
      const topic = topicOf(req);
      return `${ctx.config.shopDomain}:${topic}:${contentKey(drafts, { once: ONCE.has(topic) })}`;
    },
    partitionKey: (_req, _payload, ctx) => ctx.config.shopDomain,
    account: (_req, _payload, ctx) => ctx.config.shopDomain,
    normalize(req, payload, ctx) {
      const triggeredAt = shopifyHeader(req, 'triggeredAt');
      return normalizeShopify(shopifyHeader(req, 'topic'), payload, {
        installationId: ctx.installationId,
        shopDomain: ctx.config.shopDomain,
        triggeredAt: triggeredAt && isoTime.safeParse(triggeredAt).success ? triggeredAt : undefined,
      });
    },
  },
});
