// JSON parsing that keeps Shopify's ids exact. Shopify sends ids as JSON numbers, and many exceed
// 2^53 (its own examples use 820982911946154508): JSON.parse would silently round them. Node 20
// has no JSON.parse source access, so integer literals too large for a double are quoted first.
import { ConnectorError, storablePayload } from '../sdk.ts';

const INTEGER = /^-?(0|[1-9]\d*)$/;

/** Quotes every integer literal outside strings that a double cannot hold exactly. Linear time; meant for valid JSON. */
export function quoteUnsafeIntegers(text: string): string {
  let out = '';
  let copied = 0;
  let i = 0;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      i++;
      while (i < text.length && text.charCodeAt(i) !== 0x22) i += text.charCodeAt(i) === 0x5c /* \ */ ? 2 : 1;
      i++;
    } else if (c === 0x2d /* - */ || (c >= 0x30 && c <= 0x39)) {
      const start = i;
      i++;
      while (i < text.length && /[0-9.eE+-]/.test(text[i] ?? '')) i++;
      const token = text.slice(start, i);
      if (INTEGER.test(token) && !Number.isSafeInteger(Number(token))) {
        out += `${text.slice(copied, start)}"${token}"`;
        copied = i;
      }
    } else {
      i++;
    }
  }
  return copied === 0 ? text : out + text.slice(copied);
}

/** The body as JSON with unsafe integers as decimal strings, or ConnectorError('payload_malformed'). */
export function parseShopifyJson(raw: Buffer): unknown {
  const text = raw.toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text); // validates first: quoting must never turn bad JSON into good
  } catch {
    throw new ConnectorError('payload_malformed', 'body is not valid JSON');
  }
  const quoted = quoteUnsafeIntegers(text);
  return storablePayload(quoted === text ? value : JSON.parse(quoted));
}
