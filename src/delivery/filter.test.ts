// Subscription filters: the documented semantics (checked against a plain evaluator that reads the
// data again for every condition and compares every value with every operand), and bounded work on
// a 1 MB event however the filter is built.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  compileFilter,
  EVENT_FILTER_WORK_BUDGET,
  EventReading,
  FILTER_MAX_BYTES,
  FILTER_WORK_BUDGET,
  FilterError,
  VALUES_PER_PATH,
} from './filter.ts';

// ---------------------------------------------------------------------------------------------
// The specification: the straightforward evaluator, quadratic and unbounded, for small inputs only.

const DECIMAL = /^-?\d+(\.\d+)?$/;
const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function plainDecimalOrder(a: unknown, b: unknown): number | undefined {
  const text = (v: unknown) =>
    typeof v === 'number' && Number.isFinite(v) && !String(v).includes('e')
      ? String(v)
      : typeof v === 'string' && DECIMAL.test(v)
        ? v
        : undefined;
  const x = text(a);
  const y = text(b);
  if (x === undefined || y === undefined) return undefined;
  const scale = Math.max(x.split('.')[1]?.length ?? 0, y.split('.')[1]?.length ?? 0);
  const big = (s: string) => {
    const [whole = '0', fraction = ''] = s.replace('-', '').split('.');
    const n = BigInt(whole + fraction.padEnd(scale, '0'));
    return s.startsWith('-') ? -n : n;
  };
  const d = big(x) - big(y);
  return d < 0n ? -1 : d > 0n ? 1 : 0;
}

function plainOrder(a: unknown, b: unknown): number | undefined {
  const decimal = plainDecimalOrder(a, b);
  if (decimal !== undefined) return decimal;
  if (typeof a === 'string' && typeof b === 'string') return a < b ? -1 : a > b ? 1 : 0;
  return undefined;
}

const plainEquals = (a: unknown, b: unknown) =>
  plainDecimalOrder(a, b) === 0 || JSON.stringify(a) === JSON.stringify(b);

function plainValuesAt(data: unknown, path: string[]): unknown[] {
  if (path.length === 0) return [data];
  const [head, ...rest] = path as [string, ...string[]];
  if (Array.isArray(data)) {
    if (/^\d+$/.test(head)) return plainValuesAt(data[Number(head)], rest);
    return data.flatMap((item) => plainValuesAt(item, path));
  }
  if (!isObject(data) || !Object.hasOwn(data, head)) return [undefined];
  return plainValuesAt(data[head], rest);
}

function plainMatch(query: Record<string, unknown>, data: unknown): boolean {
  return Object.entries(query).every(([key, value]) => {
    if (key === '$and') return (value as Record<string, unknown>[]).every((q) => plainMatch(q, data));
    if (key === '$or') return (value as Record<string, unknown>[]).some((q) => plainMatch(q, data));
    if (key === '$nor') return !(value as Record<string, unknown>[]).some((q) => plainMatch(q, data));
    if (key === '$not') return !plainMatch(value as Record<string, unknown>, data);
    const raw = plainValuesAt(data, key.split('.'));
    const values = raw.flatMap((v) => (Array.isArray(v) ? [v, ...v] : [v]));
    if (!(isObject(value) && Object.keys(value).some((k) => k.startsWith('$'))))
      return values.some((v) => plainEquals(v, value));
    return Object.entries(value).every(([op, operand]) => {
      const order = (accept: (c: number) => boolean) =>
        values.some((v) => {
          const c = plainOrder(v, operand);
          return c !== undefined && accept(c);
        });
      const anyOf = () => values.some((v) => (operand as unknown[]).some((o) => plainEquals(v, o)));
      if (op === '$eq') return values.some((v) => plainEquals(v, operand));
      if (op === '$ne') return !values.some((v) => plainEquals(v, operand));
      if (op === '$gt') return order((c) => c > 0);
      if (op === '$gte') return order((c) => c >= 0);
      if (op === '$lt') return order((c) => c < 0);
      if (op === '$lte') return order((c) => c <= 0);
      if (op === '$in') return anyOf();
      if (op === '$nin') return !anyOf();
      return raw.some((v) => v !== undefined) === operand;
    });
  });
}

// ---------------------------------------------------------------------------------------------

const matches = (filter: unknown, data: unknown) => compileFilter(filter).evaluate(data).matched;

describe('filter semantics', () => {
  it('compares amounts exactly, as decimals, whether sent as numbers or strings', () => {
    expect(matches({ total: '100.1' }, { total: 100.1 })).toBe(true);
    expect(matches({ total: { $in: ['100.10', 7] } }, { total: 100.1 })).toBe(true);
    expect(matches({ total: { $gt: 100.1 } }, { total: '100.10' })).toBe(false);
    expect(matches({ total: { $gte: '100' } }, { total: '99.999999999999999999' })).toBe(false);
    expect(matches({ total: { $lt: '-0.5' } }, { total: ['-0.50', '-0.51'] })).toBe(true);
    expect(matches({ n: '12345678901234567890.5' }, { n: '012345678901234567890.50' })).toBe(true);
    // No exponents: 1e21 is not the decimal "1000000000000000000000".
    expect(matches({ n: '1000000000000000000000' }, { n: 1e21 })).toBe(false);
  });

  it('searches arrays, compares strings as text and objects by their JSON', () => {
    expect(matches({ 'items.sku': { $in: ['B'] } }, { items: [{ sku: 'A' }, { sku: 'B' }] })).toBe(true);
    expect(matches({ 'items.1.sku': 'A' }, { items: [{ sku: 'A' }, { sku: 'B' }] })).toBe(false);
    expect(matches({ tags: 'vip' }, { tags: ['new', 'vip'] })).toBe(true);
    expect(matches({ tags: ['new', 'vip'] }, { tags: ['new', 'vip'] })).toBe(true);
    expect(matches({ tags: { $nin: [['vip']] } }, { tags: [['vip'], 'x'] })).toBe(false);
    expect(matches({ name: { $gt: 'M' } }, { name: 'Zoe' })).toBe(true);
    expect(matches({ a: { $gt: '5' } }, { a: 'abc' })).toBe(true);
    expect(matches({ a: { $gt: 5 } }, { a: 'abc' })).toBe(false);
    expect(matches({ a: null }, {})).toBe(false);
    expect(matches({ a: { $exists: false }, b: { $ne: 1 } }, { b: [2] })).toBe(true);
  });

  it('agrees with the plain evaluator on random filters and data', () => {
    const scalar = fc.constantFrom<unknown>(
      0,
      -0,
      1,
      1.1,
      -2.5,
      1e21,
      1e-7,
      '0',
      '-0.0',
      '00',
      '1',
      '1.0',
      '1.10',
      '-2.50',
      '1e21',
      '',
      'a',
      'abc',
      'Z',
      true,
      false,
      null,
    );
    const value = fc.letrec((tie) => ({
      value: fc.oneof(
        { weight: 4, arbitrary: scalar },
        fc.array(tie('value'), { maxLength: 3 }),
        fc.dictionary(fc.constantFrom('a', 'b', '0'), tie('value'), { maxKeys: 2 }),
      ),
    })).value;
    const path = fc.constantFrom('a', 'b', 'a.b', 'a.0', 'b.a.b', 'a.1.a', 'c');
    const operator = fc.oneof(
      fc.tuple(fc.constantFrom('$eq', '$ne'), value),
      fc.tuple(fc.constantFrom('$gt', '$gte', '$lt', '$lte'), fc.oneof(scalar, fc.string({ maxLength: 2 }))),
      fc.tuple(fc.constantFrom('$in', '$nin'), fc.array(value, { maxLength: 4 })),
      fc.tuple(fc.constant('$exists'), fc.boolean()),
    );
    const condition = fc.oneof(
      value,
      fc.array(operator, { minLength: 1, maxLength: 2 }).map((ops) => Object.fromEntries(ops)),
    );
    const query = fc.letrec((tie) => ({
      query: fc.oneof(
        { weight: 3, arbitrary: fc.dictionary(path, condition, { minKeys: 1, maxKeys: 2 }) },
        fc
          .tuple(
            fc.constantFrom('$and', '$or', '$nor'),
            fc.array(tie('query'), { minLength: 1, maxLength: 3 }),
          )
          .map(([op, subs]) => ({ [op]: subs })),
        tie('query').map((sub) => ({ $not: sub })),
      ),
    })).query as fc.Arbitrary<Record<string, unknown>>;
    const data = fc.dictionary(fc.constantFrom('a', 'b', 'c'), value, { maxKeys: 3 });

    fc.assert(
      fc.property(query, data, (filter, event) => {
        let compiled: ReturnType<typeof compileFilter>;
        try {
          compiled = compileFilter(filter);
        } catch (err) {
          if (err instanceof FilterError) return; // nested too deep for the generator's depth
          throw err;
        }
        const evaluation = compiled.evaluate(event);
        expect(evaluation.exhausted).toBe(false);
        expect(evaluation.matched).toBe(plainMatch(filter, event));
      }),
      { numRuns: 10_000 },
    );
  });

  it('names the offending part of an invalid filter', () => {
    const error = (filter: unknown) => {
      try {
        compileFilter(filter);
      } catch (err) {
        return err instanceof FilterError ? `${err.path}: ${err.message}` : String(err);
      }
      return 'valid';
    };
    expect(error({ total: { $regex: 'x' } })).toMatch(/^filter\.total\.\$regex: unknown operator/);
    expect(error({ total: { $gt: [1] } })).toBe('filter.total.$gt: $gt takes a number or a string');
    expect(error({ $or: [{ a: 1 }, { 'a..b': 1 }] })).toBe('filter.$or.1.a..b: "a..b" is not a field path');
    expect(error({ a: { $in: Array(FILTER_MAX_BYTES).fill(0) } })).toBe(
      `filter: larger than ${FILTER_MAX_BYTES} bytes`,
    );
  });
});

describe('filter work on a 1 MB event', () => {
  // The attacks of issue #19: each took 5 to 14 s of event loop on the plain evaluator.
  const ones = { a: Array.from({ length: 550_000 }, () => 1) };
  const bombs = {
    '$in of 2,000 zeros': { a: { $in: Array(2000).fill(0) } },
    '$or of 199 equalities': { $or: Array.from({ length: 199 }, () => ({ a: 0 })) },
    '$or of 127 $gt': { $or: Array.from({ length: 127 }, () => ({ a: { $gt: 5 } })) },
  };

  it('is about 1.1 MB of data, and each filter fits the size limit', () => {
    expect(JSON.stringify(ones).length).toBeGreaterThan(1_100_000);
    for (const filter of Object.values(bombs))
      expect(JSON.stringify(filter).length).toBeLessThanOrEqual(4096);
  });

  it.each(Object.entries(bombs))(
    '%s: reads the path once, up to its cap, and stays within the budget',
    (_, filter) => {
      const evaluation = compileFilter(filter).evaluate(ones);
      expect(evaluation).toMatchObject({ matched: false, exhausted: false });
      // One reading of `a` (its first VALUES_PER_PATH values), then a lookup per condition.
      expect(evaluation.work).toBeGreaterThan(VALUES_PER_PATH);
      expect(evaluation.work).toBeLessThan(VALUES_PER_PATH + 1000);
    },
  );

  it('examines the first VALUES_PER_PATH values of a path, in document order', () => {
    const at = (index: number) => ({ a: Array.from({ length: 50_000 }, (_, i) => (i === index ? 7 : 0)) });
    const filter = compileFilter({ a: { $in: [7] } });
    expect(filter.evaluate(at(VALUES_PER_PATH - 100)).matched).toBe(true);
    expect(filter.evaluate(at(VALUES_PER_PATH + 100)).matched).toBe(false);
    const unlike = compileFilter({ a: { $nin: [7] } });
    expect(unlike.evaluate(at(VALUES_PER_PATH + 100)).matched).toBe(true);
  });

  it('does not match once the budget is used, and says so, the same way every time', () => {
    // Each path through the array reads VALUES_PER_PATH values: the twelfth cannot be afforded,
    // though its condition would hold.
    const letters = 'bcdefghijkl'.split('');
    const filter = compileFilter({
      $or: [...letters.map((c) => ({ [`a.${c}`]: 1 })), { 'a.z': { $exists: false } }],
    });
    const first = filter.evaluate(ones);
    expect(first).toEqual({ matched: false, work: first.work, exhausted: 'filter' });
    expect(first.work).toBeLessThanOrEqual(FILTER_WORK_BUDGET);
    expect(filter.evaluate(ones)).toEqual(first);
    // The same filter on a small event matches.
    expect(filter.evaluate({ a: [0] })).toEqual({
      matched: true,
      work: expect.any(Number),
      exhausted: false,
    });
  });

  it('charges long strings and large objects by their size', () => {
    const text = 'x'.repeat(1_000_000);
    const byText = compileFilter({ a: { $nin: ['y', 'z'] }, b: { $gt: 'a' } }).evaluate({ a: text, b: text });
    expect(byText.matched).toBe(true);
    expect(byText.work).toBeGreaterThan(2 * (1_000_000 >>> 8));
    expect(byText.work).toBeLessThanOrEqual(FILTER_WORK_BUDGET);
    // An object or array is written out only while some operand starts the same way: the 1 MB
    // array itself costs one step, each element a few.
    const nested = { a: Array.from({ length: 2000 }, (_, i) => ({ id: i, tags: ['t', 't', 't'] })) };
    const byObject = compileFilter({ a: { $in: [{ id: 1999, tags: ['t', 't', 't'] }, { id: 1 }] } }).evaluate(
      nested,
    );
    expect(byObject).toMatchObject({ matched: true, exhausted: false });
    expect(byObject.work).toBeLessThan(2000 * 20);
  });

  it("takes milliseconds on the issue's own 2.4 KB event (a generous bound: the plain evaluator took 5 s)", () => {
    const small = { a: Array.from({ length: 1200 }, () => 1) };
    const started = performance.now();
    expect(compileFilter(bombs['$in of 2,000 zeros']).evaluate(small).matched).toBe(false);
    expect(performance.now() - started).toBeLessThan(1000);
  });
});

describe("the filters of one event's destinations", () => {
  const ones = { a: Array.from({ length: 550_000 }, () => 1) };
  const bombs = [
    { a: { $in: Array(2000).fill(0) } },
    { $or: Array.from({ length: 199 }, () => ({ a: 0 })) },
    { $or: Array.from({ length: 127 }, () => ({ a: { $gt: 5 } })) },
  ];
  /** Nine paths through the array, its own: about 90,000 units, within a filter's budget. */
  const spreading = (d: number) => ({ $or: Array.from({ length: 9 }, (_, p) => ({ [`a.d${d}p${p}`]: 1 })) });

  it('share one budget: 100 costly filters on a 1 MB event do at most its work, the first ones in full', () => {
    const filters = [...bombs, ...Array.from({ length: 97 }, (_, d) => spreading(d))].map(compileFilter);
    const outcomes = (event: EventReading) => filters.map((f) => f.evaluateOn(event));
    const event = new EventReading(ones);
    const first = outcomes(event);
    expect(event.work).toBeLessThanOrEqual(EVENT_FILTER_WORK_BUDGET);
    // In order: every filter evaluated in full until the event's budget runs out, none after.
    const cut = first.findIndex((e) => e.exhausted);
    expect(cut).toBeGreaterThan(bombs.length + 5);
    expect(first.slice(0, cut).every((e) => e.exhausted === false && !e.matched)).toBe(true);
    expect(first.slice(cut).every((e) => e.exhausted === 'event' && !e.matched)).toBe(true);
    // The same every time; and a filter that would match, evaluated after, does not.
    const again = new EventReading(ones);
    expect(outcomes(again)).toEqual(first);
    expect(compileFilter({ a: 1 }).evaluateOn(again)).toMatchObject({ matched: false, exhausted: 'event' });
    expect(compileFilter({ a: 1 }).evaluate(ones)).toMatchObject({ matched: true, exhausted: false });
  });

  it('read a path once for all of them, each charged as if it had read it alone', () => {
    const filter = compileFilter(bombs[0]);
    const alone = filter.evaluate(ones);
    const event = new EventReading(ones);
    const shared = Array.from({ length: 100 }, () => filter.evaluateOn(event));
    expect(shared.every((e) => e.work === alone.work && !e.matched && !e.exhausted)).toBe(true);
    // One reading of `a` (VALUES_PER_PATH values) and a lookup per filter.
    expect(event.work).toBeLessThan(VALUES_PER_PATH + 100 * 10);
    // A filter past its own budget alone is past it with others too: the same outcome either way.
    const greedy = compileFilter({ $or: 'bcdefghijkl'.split('').map((c) => ({ [`a.${c}`]: 1 })) });
    const withOthers = new EventReading(ones);
    compileFilter({ $or: 'bcdefghij'.split('').map((c) => ({ [`a.${c}`]: 1 })) }).evaluateOn(withOthers);
    expect(greedy.evaluateOn(withOthers)).toEqual(greedy.evaluate(ones));
    expect(greedy.evaluate(ones).exhausted).toBe('filter');
  });
});
