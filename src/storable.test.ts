import { describe, expect, it } from 'vitest';
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
