// What the database can store of a JSON value: PostgreSQL's text and jsonb take no U+0000, jsonb
// no unpaired UTF-16 surrogate, and a value nested very deep overflows the serializers on its way
// in. Checked where input enters (API requests, provider payloads), so such input is a 400.

import { isLosslessNumber } from 'lossless-json';
import type { JsonTextFacts } from './json-text.ts';

export const MAX_JSON_DEPTH = 64;

// biome-ignore lint/suspicious/noControlCharactersInRegex: U+0000 is what this looks for.
const UNSTORABLE_TEXT = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

export interface Unstorable {
  /** Dotted path of the offending key or value ('' for the value itself). */
  path: string;
  message: string;
}

const BAD_TEXT = 'contains U+0000 or an unpaired surrogate';
const BAD_KEY = 'has a key with U+0000 or an unpaired surrogate';
const TOO_DEEP = `is nested deeper than ${MAX_JSON_DEPTH} levels`;

/** A problem found, with the keys from the offending value out to the root (innermost first). */
interface Found {
  message: string;
  keysOutward: string[];
}

/**
 * Why the value cannot be stored, or undefined when it can. One pass that allocates nothing per
 * value: the path is built only for a problem, on the way back out. The walk recurses, but never
 * below MAX_JSON_DEPTH (deeper is itself the problem), so any depth is safe to check. With several
 * problems, the one named is a bad key of an object before anything inside it; otherwise the last
 * in document order (values are searched last to first).
 */
export function unstorable(value: unknown): Unstorable | undefined {
  const found = search(value, 0);
  return found && { path: found.keysOutward.reverse().join('.'), message: found.message };
}

function search(value: unknown, depth: number): Found | undefined {
  if (typeof value === 'string')
    return UNSTORABLE_TEXT.test(value) ? { message: BAD_TEXT, keysOutward: [] } : undefined;
  // A number read exactly (src/exact-json.ts) is an object holding its digits: a value, not nesting.
  if (value === null || typeof value !== 'object' || isLosslessNumber(value)) return undefined;
  if (depth >= MAX_JSON_DEPTH) return { message: TOO_DEEP, keysOutward: [] };
  if (Array.isArray(value)) {
    for (let i = value.length - 1; i >= 0; i--) {
      const found = search(value[i], depth + 1);
      if (found) return outward(found, String(i));
    }
    return undefined;
  }
  const keys = Object.keys(value);
  for (const key of keys) if (UNSTORABLE_TEXT.test(key)) return { message: BAD_KEY, keysOutward: [] };
  for (let i = keys.length - 1; i >= 0; i--) {
    const key = keys[i] as string;
    const found = search((value as Record<string, unknown>)[key], depth + 1);
    if (found) return outward(found, key);
  }
  return undefined;
}

function outward(found: Found, key: string): Found {
  found.keysOutward.push(key);
  return found;
}

/**
 * `unstorable` for a value parsed from JSON text, cheaper: the text's facts (`scanJsonText`) say
 * whether the value can be refused at all, and the value is walked only then (to name the path).
 */
export function unstorableJson(facts: JsonTextFacts, value: unknown): Unstorable | undefined {
  return facts.maxDepth > MAX_JSON_DEPTH || facts.escapes ? unstorable(value) : undefined;
}
