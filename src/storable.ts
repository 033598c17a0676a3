// What the database can store of a JSON value: PostgreSQL's text and jsonb take no U+0000, jsonb
// no unpaired UTF-16 surrogate, and a value nested very deep overflows the serializers on its way
// in. Checked where input enters (API requests, provider payloads), so such input is a 400.

import type { JsonTextFacts } from './json-text.ts';

export const MAX_JSON_DEPTH = 64;

// biome-ignore lint/suspicious/noControlCharactersInRegex: U+0000 is what this looks for.
const UNSTORABLE_TEXT = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

export interface Unstorable {
  /** Dotted path of the offending key or value ('' for the value itself). */
  path: string;
  message: string;
}

/** Why the value cannot be stored, or undefined when it can. Iterative: any depth is safe to check. */
export function unstorable(value: unknown): Unstorable | undefined {
  const stack: Array<{ value: unknown; path: string[] }> = [{ value, path: [] }];
  for (let item = stack.pop(); item; item = stack.pop()) {
    const { value: v, path } = item;
    if (typeof v === 'string') {
      if (UNSTORABLE_TEXT.test(v))
        return { path: path.join('.'), message: 'contains U+0000 or an unpaired surrogate' };
      continue;
    }
    if (v === null || typeof v !== 'object') continue;
    if (path.length >= MAX_JSON_DEPTH)
      return { path: path.join('.'), message: `is nested deeper than ${MAX_JSON_DEPTH} levels` };
    for (const [key, child] of Object.entries(v)) {
      if (UNSTORABLE_TEXT.test(key))
        return { path: path.join('.'), message: 'has a key with U+0000 or an unpaired surrogate' };
      stack.push({ value: child, path: [...path, key] });
    }
  }
  return undefined;
}

/**
 * `unstorable` for a value parsed from JSON text, cheaper: the text's facts (`scanJsonText`) say
 * whether the value can be refused at all, and the value is walked only then (to name the path).
 */
export function unstorableJson(facts: JsonTextFacts, value: unknown): Unstorable | undefined {
  return facts.maxDepth > MAX_JSON_DEPTH || facts.escapes ? unstorable(value) : undefined;
}
