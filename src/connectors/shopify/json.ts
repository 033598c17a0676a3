// JSON parsing that keeps Shopify's ids exact. Shopify sends ids as JSON numbers, and many exceed
// 2^53 (its own examples use 820982911946154508): JSON.parse would silently round them. Node 20
// has no JSON.parse source access, so integer literals too large for a double are quoted first.
import { scanJsonText } from '../../json-text.ts';
import { ConnectorError, storablePayload } from '../sdk.ts';

/**
 * The body as JSON with unsafe integers as decimal strings, or ConnectorError('payload_malformed').
 * Parsed once, after quoting, which keeps bad JSON bad (see `scanJsonText`).
 */
export function parseShopifyJson(raw: Buffer): unknown {
  const facts = scanJsonText(raw.toString('utf8'), true);
  let value: unknown;
  try {
    if (facts.text === undefined) throw new Error('a number as an object key');
    value = JSON.parse(facts.text);
  } catch {
    throw new ConnectorError('payload_malformed', 'body is not valid JSON');
  }
  return storablePayload(value, facts);
}
