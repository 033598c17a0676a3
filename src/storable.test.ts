// What the database cannot store, found in a value: the same answers as a straightforward walk,
// in one pass that stays cheap on a 1 MB request.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseExact } from './exact-json.ts';
import { scanJsonText } from './json-text.ts';
import { MAX_JSON_DEPTH, unstorable, unstorableJson } from './storable.ts';

const check = (text: string) => unstorableJson(scanJsonText(text), JSON.parse(text));

describe('unstorableJson', () => {
  it('agrees with the walk on what the database refuses', () => {
    const cases = [
      '{"a":"plain","b":[1,2,{"c":"d"}]}',
      '{"a":"x\\u0000y"}',
      '{"k\\u0000":1}',
      '["\\ud800"]',
      '["\\udc00 alone"]',
      '["\\ud83d\\ude00 a pair"]',
      '{"a":"\\u00e9t\\u00e9"}',
      '{"quote":"a \\" { [ not nesting","n":1}',
      `${'['.repeat(MAX_JSON_DEPTH)}${']'.repeat(MAX_JSON_DEPTH)}`,
      `${'['.repeat(MAX_JSON_DEPTH + 1)}${']'.repeat(MAX_JSON_DEPTH + 1)}`,
      `{"a":"${'['.repeat(MAX_JSON_DEPTH + 5)}"}`,
    ];
    for (const text of cases) expect(check(text), text).toEqual(unstorable(JSON.parse(text)));
  });

  it('finds what is wrong, with its path', () => {
    expect(check('{"a":{"b":"x\\u0000"}}')?.path).toBe('a.b');
    expect(check(`${'['.repeat(MAX_JSON_DEPTH + 1)}${']'.repeat(MAX_JSON_DEPTH + 1)}`)?.message).toMatch(
      /nested deeper/,
    );
    expect(check('{"a":"\\ud800"}')?.message).toMatch(/surrogate/);
  });

  it('passes what the database stores', () => {
    expect(check('{"a":"\\u00e9","b":"\\ud83d\\ude00"}')).toBeUndefined();
    expect(check('{"a":"[[[[","b":[]}')).toBeUndefined();
  });
});

/** The straightforward walk: a stack of values, each with its own copy of the path. */
function plainUnstorable(value: unknown): { path: string; message: string } | undefined {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: U+0000 is what this looks for.
  const bad = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
  const stack: Array<{ value: unknown; path: string[] }> = [{ value, path: [] }];
  for (let item = stack.pop(); item; item = stack.pop()) {
    const { value: v, path } = item;
    if (typeof v === 'string') {
      if (bad.test(v)) return { path: path.join('.'), message: 'contains U+0000 or an unpaired surrogate' };
      continue;
    }
    if (v === null || typeof v !== 'object') continue;
    if (path.length >= MAX_JSON_DEPTH)
      return { path: path.join('.'), message: `is nested deeper than ${MAX_JSON_DEPTH} levels` };
    for (const [key, child] of Object.entries(v)) {
      if (bad.test(key))
        return { path: path.join('.'), message: 'has a key with U+0000 or an unpaired surrogate' };
      stack.push({ value: child, path: [...path, key] });
    }
  }
  return undefined;
}

describe('unstorable', () => {
  it('names the same problem as the straightforward walk, however many there are', () => {
    const text = fc.oneof(
      fc.constantFrom('ok', 'x\u0000y', '\ud800', 'a\udc00', '\ud83d\ude00', ''),
      fc.string({ maxLength: 3 }),
    );
    const json = fc.letrec((tie) => ({
      value: fc.oneof(
        { depthSize: 'small', withCrossShrink: true },
        text,
        fc.integer(),
        fc.constant(null),
        fc.array(tie('value'), { maxLength: 4 }),
        fc.dictionary(text, tie('value'), { maxKeys: 4 }),
      ),
    })).value;
    fc.assert(
      fc.property(json, fc.nat(MAX_JSON_DEPTH + 2), (value, depth) => {
        let nested: unknown = value;
        for (let i = 0; i < depth; i++) nested = i % 2 ? [nested] : { k: nested };
        expect(unstorable(nested)).toEqual(plainUnstorable(nested));
      }),
      { numRuns: 2000 },
    );
  });

  it('walks a 1 MB array of small objects and finds what is wrong in it', () => {
    const items = Array.from({ length: 70_000 }, (_, i) => ({ i: i % 10, s: 'x' }));
    const body = { type: 'custom.big', data: { items } };
    expect(JSON.stringify(body).length).toBeGreaterThan(1_000_000);
    expect(unstorable(body)).toBeUndefined();
    expect(unstorable(body)).toEqual(plainUnstorable(body));
    (items[12_345] as { s: string }).s = 'x\u0000';
    expect(unstorable(body)).toEqual({
      path: 'data.items.12345.s',
      message: 'contains U+0000 or an unpaired surrogate',
    });
    expect(unstorable(body)).toEqual(plainUnstorable(body));
  });

  it('checks a 1 MB array of numbers read exactly in milliseconds (a generous bound: the walk with a path per value took 0.6 to 0.9 s)', () => {
    const body = parseExact(`{"type":"custom.big","data":{"a":[${Array(500_000).fill(1).join(',')}]}}`);
    unstorable(body);
    const started = performance.now();
    expect(unstorable(body)).toBeUndefined();
    expect(performance.now() - started).toBeLessThan(250);
  });

  it('takes a number read exactly as a value, not as a level of nesting', () => {
    const deepest = (inner: string) => `${'['.repeat(MAX_JSON_DEPTH)}${inner}${']'.repeat(MAX_JSON_DEPTH)}`;
    expect(unstorable(parseExact(deepest('"text"')))).toBeUndefined();
    expect(unstorable(parseExact(deepest('1e400')))).toBeUndefined();
    expect(unstorable(parseExact(deepest('[]')))?.message).toMatch(/nested deeper/);
  });
});
