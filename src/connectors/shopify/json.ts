// JSON parsing that keeps Shopify's ids exact. Shopify sends ids as JSON numbers, and many exceed
// 2^53 (its own examples use 820982911946154508): JSON.parse would silently round them. Node 20
// has no JSON.parse source access, so integer literals too large for a double are quoted first
// (the SDK's `parseExactJson`, which raw provider events of every connector use too).
import { parseExactJson } from '../sdk.ts';

/** The body as JSON with unsafe integers as decimal strings, or ConnectorError('payload_malformed'). */
export const parseShopifyJson: (raw: Buffer) => unknown = parseExactJson;
