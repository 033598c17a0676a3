// Subscription filters: a small, documented subset of MongoDB's query language evaluated on an
// event's `data`, e.g. `{"total": {"$gte": "100"}, "currency": "EUR"}`. Amounts are exact
// decimal strings in Interchange, so numeric comparisons are exact: "100.10" > 100.1 is false.

export const FILTER_MAX_BYTES = 4096;
const MAX_DEPTH = 6;

export class FilterError extends Error {
  override name = 'FilterError';
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(message);
  }
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type Filter = { [key: string]: Json };
type Matcher = (data: unknown) => boolean;

const COMPARISONS = ['$eq', '$ne', '$gt', '$gte', '$lt', '$lte', '$in', '$nin', '$exists'] as const;
const DECIMAL = /^-?\d+(\.\d+)?$/;

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** Exact comparison of two decimals (numbers or decimal strings); undefined if either is not one. */
function compareDecimal(a: unknown, b: unknown): number | undefined {
  const text = (v: unknown) =>
    typeof v === 'number' && Number.isFinite(v)
      ? String(v).includes('e')
        ? undefined
        : String(v)
      : typeof v === 'string' && DECIMAL.test(v)
        ? v
        : undefined;
  const x = text(a);
  const y = text(b);
  if (x === undefined || y === undefined) return undefined;
  const scale = Math.max(x.split('.')[1]?.length ?? 0, y.split('.')[1]?.length ?? 0);
  const big = (s: string) => {
    const negative = s.startsWith('-');
    const [whole = '0', fraction = ''] = s.replace('-', '').split('.');
    const n = BigInt(whole + fraction.padEnd(scale, '0'));
    return negative ? -n : n;
  };
  const d = big(x) - big(y);
  return d < 0n ? -1 : d > 0n ? 1 : 0;
}

function compare(a: unknown, b: unknown): number | undefined {
  const decimal = compareDecimal(a, b);
  if (decimal !== undefined) return decimal;
  if (typeof a === 'string' && typeof b === 'string') return a < b ? -1 : a > b ? 1 : 0;
  return undefined;
}

function equals(a: unknown, b: unknown): boolean {
  if (compareDecimal(a, b) === 0) return true;
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Every value at a dotted path; arrays on the way are searched element by element (Mongo's rule). */
function valuesAt(data: unknown, path: string[]): unknown[] {
  if (path.length === 0) return [data];
  const [head, ...rest] = path as [string, ...string[]];
  if (Array.isArray(data)) {
    if (/^\d+$/.test(head)) return valuesAt(data[Number(head)], rest);
    return data.flatMap((item) => valuesAt(item, path));
  }
  if (!isObject(data) || !Object.hasOwn(data, head)) return [undefined];
  return valuesAt(data[head], rest);
}

/** A value and, if it is an array, its elements: `{"tags": "vip"}` matches `tags: ["vip"]`. */
const candidates = (values: unknown[]) => values.flatMap((v) => (Array.isArray(v) ? [v, ...v] : [v]));

function compileCondition(field: string, condition: Json, where: string): Matcher {
  const path = field.split('.');
  if (path.some((p) => p === '')) throw new FilterError(where, `"${field}" is not a field path`);
  const operators = isObject(condition) && Object.keys(condition).some((k) => k.startsWith('$'));
  if (!operators) {
    return (data) => candidates(valuesAt(data, path)).some((v) => equals(v, condition));
  }
  const tests = Object.entries(condition as Record<string, Json>).map(([op, operand]): Matcher => {
    const at = `${where}.${op}`;
    const values = (data: unknown) => candidates(valuesAt(data, path));
    const ordered = (accept: (c: number) => boolean): Matcher => {
      if (operand === null || typeof operand === 'object' || typeof operand === 'boolean')
        throw new FilterError(at, `${op} takes a number or a string`);
      return (data) =>
        values(data).some((v) => {
          const c = compare(v, operand);
          return c !== undefined && accept(c);
        });
    };
    switch (op as (typeof COMPARISONS)[number]) {
      case '$eq':
        return (data) => values(data).some((v) => equals(v, operand));
      case '$ne':
        return (data) => !values(data).some((v) => equals(v, operand));
      case '$gt':
        return ordered((c) => c > 0);
      case '$gte':
        return ordered((c) => c >= 0);
      case '$lt':
        return ordered((c) => c < 0);
      case '$lte':
        return ordered((c) => c <= 0);
      case '$in':
      case '$nin': {
        if (!Array.isArray(operand)) throw new FilterError(at, `${op} takes an array`);
        const hit = (data: unknown) => values(data).some((v) => operand.some((o) => equals(v, o)));
        return op === '$in' ? hit : (data) => !hit(data);
      }
      case '$exists': {
        if (typeof operand !== 'boolean') throw new FilterError(at, '$exists takes true or false');
        return (data) => valuesAt(data, path).some((v) => v !== undefined) === operand;
      }
      default:
        throw new FilterError(at, `unknown operator ${op} (use ${COMPARISONS.join(', ')})`);
    }
  });
  return (data) => tests.every((t) => t(data));
}

function compileQuery(query: Json, where: string, depth: number): Matcher {
  if (depth > MAX_DEPTH) throw new FilterError(where, `nested deeper than ${MAX_DEPTH} levels`);
  if (!isObject(query)) throw new FilterError(where, 'must be an object');
  const parts = Object.entries(query as Record<string, Json>).map(([key, value]): Matcher => {
    const at = `${where}.${key}`;
    if (key === '$and' || key === '$or' || key === '$nor') {
      if (!Array.isArray(value) || value.length === 0)
        throw new FilterError(at, `${key} takes a non-empty array of filters`);
      const subs = value.map((v, i) => compileQuery(v, `${at}.${i}`, depth + 1));
      if (key === '$and') return (data) => subs.every((s) => s(data));
      if (key === '$or') return (data) => subs.some((s) => s(data));
      return (data) => !subs.some((s) => s(data));
    }
    if (key === '$not') {
      const sub = compileQuery(value, at, depth + 1);
      return (data) => !sub(data);
    }
    if (key.startsWith('$')) throw new FilterError(at, `unknown operator ${key} (use $and, $or, $nor, $not)`);
    return compileCondition(key, value, at);
  });
  return (data) => parts.every((p) => p(data));
}

/** Checks a filter and returns its matcher; FilterError names the offending part (`filter.total.$gte`). */
export function compileFilter(filter: unknown): Matcher {
  const text = JSON.stringify(filter) ?? '';
  if (text.length > FILTER_MAX_BYTES)
    throw new FilterError('filter', `larger than ${FILTER_MAX_BYTES} bytes`);
  return compileQuery(filter as Json, 'filter', 0);
}
