import { describe, expect, it } from 'vitest';
import { scanJsonText } from '../../json-text.ts';
import { parseShopifyJson } from './json.ts';

const quoteUnsafeIntegers = (text: string) => scanJsonText(text, true).text;

describe('scanJsonText quoting unsafe integers', () => {
  it('quotes integers a double cannot hold, and nothing else', () => {
    const text =
      '{"id":820982911946154508,"n":-9007199254740993,"safe":9007199254740991,"small":450789469,' +
      '"f":0.12345678901234567890,"e":1e12345678901234567,"x":12345678901234567.5,' +
      '"s":"820982911946154508","esc":"a \\" 820982911946154508","arr":[820982911946154509]}';
    expect(JSON.parse(quoteUnsafeIntegers(text) as string)).toEqual({
      id: '820982911946154508',
      n: '-9007199254740993',
      safe: 9007199254740991,
      small: 450789469,
      f: Number('0.12345678901234567890'),
      e: Number.POSITIVE_INFINITY,
      x: Number('12345678901234567.5'),
      s: '820982911946154508',
      esc: 'a " 820982911946154508',
      arr: ['820982911946154509'],
    });
  });

  it('leaves text without long integers as it is', () => {
    const text = '{"id":450789469,"total_price":"199.00"}';
    expect(quoteUnsafeIntegers(text)).toBe(text);
  });
});

describe('parseShopifyJson', () => {
  it('refuses bad JSON even where quoting would have mended it', () => {
    expect(() => parseShopifyJson(Buffer.from('{12345678901234567890:1}'))).toThrow(/not valid JSON/);
  });

  it('refuses what the database cannot store', () => {
    expect(() => parseShopifyJson(Buffer.from('{"note":"a\\u0000b"}'))).toThrow(/U\+0000/);
  });
});

describe('parseShopifyJson on bad JSON', () => {
  // Quoting happens before the only parse: none of these may come out valid.
  const bad = [
    '{12345678901234567890:1}',
    '{"a":1, 12345678901234567890 : 2}',
    `{12345678901234567890${' '.repeat(200)}:1}`,
    '["abc 12345678901234567890]',
    '["a\\\n", 12345678901234567890]',
    '{"a": 12345678901234567890 12345678901234567890}',
    '[12345678901234567890',
    '"unclosed 12345678901234567890',
    '{"a":"b\\", "c": 12345678901234567890}',
  ];
  for (const text of bad) {
    it(`refuses ${JSON.stringify(text)}`, () => {
      expect(() => JSON.parse(text)).toThrow();
      expect(() => parseShopifyJson(Buffer.from(text))).toThrow(/not valid JSON/);
    });
  }

  it('keeps big ids exact, nested anywhere', () => {
    expect(
      parseShopifyJson(
        Buffer.from('{"line_items":[{"id":866550311766439020,"q":1}],"key:":12345678901234567890}'),
      ),
    ).toEqual({ line_items: [{ id: '866550311766439020', q: 1 }], 'key:': '12345678901234567890' });
  });
});
