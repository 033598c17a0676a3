// WooCommerce (source): orders, customers and products from a store's webhooks. Each webhook is
// created in WooCommerce → Settings → Advanced → Webhooks with this installation's URL and secret.
import { z } from 'zod';
import { defineConnector, header, type InboundRequest } from '../sdk.ts';
import { normalizeWoo, wooDedupeKey } from './normalize.ts';
import { isWooPing, verifyWooSignature } from './verify.ts';

function hostOf(url: string | undefined): string | undefined {
  if (!url) return undefined;
  try {
    return new URL(url).host.toLowerCase() || undefined;
  } catch {
    return undefined;
  }
}

/** The store's host: the configured site URL's, else the X-WC-Webhook-Source header's. */
function storeHost(req: InboundRequest, siteUrl: string | undefined, installationId: string): string {
  return hostOf(siteUrl) ?? hostOf(header(req, 'x-wc-webhook-source')) ?? `woocommerce:${installationId}`;
}

export default defineConnector({
  id: 'woocommerce',
  name: 'WooCommerce',
  category: 'ecommerce',
  description: 'Receives WooCommerce webhooks: orders, customers and products.',
  config: z.object({
    siteUrl: z.url().describe('The store address, e.g. https://shop.example.com'),
  }),
  secrets: z.object({
    webhookSecret: z.string().min(1).describe("The secret entered in the WooCommerce webhook's settings"),
  }),
  inbound: {
    isHandshake: isWooPing,
    verify: (req, ctx) => verifyWooSignature(req, ctx.secrets.webhookSecret),
    dedupeKey: (req, payload) => wooDedupeKey(req, payload),
    partitionKey: (req, _payload, ctx) => storeHost(req, ctx.config.siteUrl, ctx.installationId),
    account: (req, _payload, ctx) => storeHost(req, ctx.config.siteUrl, ctx.installationId),
    normalize: (req, payload, ctx) => normalizeWoo(req, payload, ctx.installationId),
  },
});
