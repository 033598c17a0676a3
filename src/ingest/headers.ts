// Which of a webhook's headers the hub stores and shows. Credentials are never kept, and neither
// are the provider's signatures: Shopify and WooCommerce sign only the body, so a stored body with
// its signature, read back through the API, would be a webhook anyone could post again.

/** Credentials by their exact (lower-case) name. */
const CREDENTIALS = new Set(['authorization', 'proxy-authorization', 'cookie', 'set-cookie']);

/**
 * Names that say they carry a signature or a secret: `x-shopify-hmac-sha256`,
 * `x-wc-webhook-signature`, `stripe-signature`, `x-hubspot-signature-v3`, `webhook-signature`,
 * `x-hub-signature-256`, `x-api-key`, `x-gitlab-token` …
 */
const SECRET_PARTS = /signature|hmac|secret|token|password|api-key|apikey/;

/** True for a header the hub neither stores nor returns. Names are lower case. */
export function isHiddenHeader(name: string): boolean {
  return CREDENTIALS.has(name) || SECRET_PARTS.test(name);
}

/**
 * The headers without credentials and signatures: what is stored of a webhook, and what the API
 * answers of one (rows stored before signatures were dropped are filtered when read).
 */
export function keptHeaders(headers: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !isHiddenHeader(name)));
}
