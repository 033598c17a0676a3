// What a subscription filter reads from an event's data (see filter.ts): the values along one field
// path, read once per evaluation and summed up for the operators, so that every condition on that
// path is a lookup. Every step is charged to the evaluation's work budget, and a path reads at most
// VALUES_PER_PATH values, so the cost of a filter is bounded whatever the size of the data.

/** Values read along one field path per evaluation (in document order); later ones are not examined. */
export const VALUES_PER_PATH = 10_000;

/** Thrown when an evaluation has used its whole work budget, or the event's (`budget` says which). */
export class BudgetExhausted extends Error {
  override name = 'BudgetExhausted';
  constructor(readonly budget: WorkBudget) {
    super(`filter work budget of ${budget.limit} used up`);
  }
}

/** Units of work an evaluation may spend: a value read, a condition checked, 256 characters of a string read. */
export class WorkBudget {
  used = 0;
  /** `shared`: a budget this one's work also counts against (the event's, see EventReading). */
  constructor(
    readonly limit: number,
    private readonly shared?: WorkBudget,
  ) {}

  /** Charges work about to be done; refuses it (BudgetExhausted) if that would exceed a limit. */
  spend(units: number): void {
    if (this.used + units > this.limit) throw new BudgetExhausted(this);
    this.shared?.spend(units);
    this.used += units;
  }

  /**
   * Charges work done once already, for another evaluation that shares `shared` (values another
   * filter read): to this budget only, as if it had done it, so that whether a filter fits its own
   * budget does not depend on the other filters.
   */
  spendDone(units: number): void {
    if (this.used + units > this.limit) throw new BudgetExhausted(this);
    this.used += units;
  }
}

/** A decimal in canonical form: no leading zeros in `whole`, no trailing zeros in `fraction`, zero unsigned. */
export interface Decimal {
  negative: boolean;
  whole: string;
  fraction: string;
}

const DECIMAL = /^-?\d+(\.\d+)?$/;

/**
 * A number written without exponent, or a string of digits with an optional sign and fraction, as
 * a Decimal; undefined for anything else (`1e21`, `"12,5"`, `true`). Amounts are decimal strings,
 * so `"100.10"`, `100.1` and `"100.1"` are one value.
 */
export function decimalOf(value: unknown): Decimal | undefined {
  const text = typeof value === 'number' ? (Number.isFinite(value) ? String(value) : undefined) : value;
  if (typeof text !== 'string' || !DECIMAL.test(text)) return undefined;
  const negative = text.startsWith('-');
  const [whole = '0', fraction = ''] = (negative ? text.slice(1) : text).split('.');
  const canonical = { whole: whole.replace(/^0+(?=\d)/, ''), fraction: fraction.replace(/0+$/, '') };
  const zero = canonical.whole === '0' && canonical.fraction === '';
  return { negative: negative && !zero, ...canonical };
}

/** Exact order of two decimals: -1, 0 or 1. */
export function compareDecimals(a: Decimal, b: Decimal): number {
  if (a.negative !== b.negative) return a.negative ? -1 : 1;
  const magnitude =
    a.whole.length !== b.whole.length
      ? a.whole.length - b.whole.length
      : a.whole !== b.whole
        ? compareText(a.whole, b.whole)
        : compareText(a.fraction, b.fraction);
  const order = Math.sign(magnitude);
  return a.negative ? -order : order;
}

const compareNumbers = (a: number, b: number): number => a - b;

/** Order of two strings by UTF-16 code units, as `<` compares them. */
export const compareText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

const isComposite = (v: unknown): v is object => typeof v === 'object' && v !== null;

/**
 * The key under which two values are equal exactly when the filter's equality says so: decimals by
 * their value, everything else by its JSON text. Prefixes keep the kinds apart (the string `"true"`
 * is not `true`). undefined (a missing field) has none: it equals nothing.
 */
export function equalityKey(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  const decimal = decimalOf(value);
  if (decimal) return decimalKey(decimal);
  if (typeof value === 'string') return `s:${value}`;
  return `j:${JSON.stringify(value) ?? 'null'}`;
}

const decimalKey = (d: Decimal) => `d:${d.negative ? '-' : ''}${d.whole}.${d.fraction}`;

/** What conditions on a path need read from its values (fixed when the filter is compiled). */
export interface PathNeeds {
  /** $eq $ne $in $nin or a plain value. */
  equality: boolean;
  /** $gt $gte $lt $lte. */
  order: boolean;
  /** JSON texts of the objects and arrays conditions compare with: only these can equal one in the data. */
  composites: string[];
}

/** The values along one path, summed up for the operators. */
export interface PathValues {
  /** Some value is present ($exists). */
  present: boolean;
  /** Equality keys of the values and of the elements of array values. */
  keys: Set<string>;
  /**
   * Extremes of the numbers written without exponent, of the decimal strings, of the other strings,
   * and of all strings. Numbers keep their order as decimals (a number's text is the shortest that
   * reads back as it), so they are compared as numbers and made decimals only when tested.
   */
  number: Extremes<number>;
  decimal: Extremes<Decimal>;
  text: Extremes<string>;
  string: Extremes<string>;
}

export interface Extremes<T> {
  min?: T | undefined;
  max?: T | undefined;
}

function widen<T>(extremes: Extremes<T>, value: T, compare: (a: T, b: T) => number): void {
  if (extremes.min === undefined || compare(value, extremes.min) < 0) extremes.min = value;
  if (extremes.max === undefined || compare(value, extremes.max) > 0) extremes.max = value;
}

/**
 * Reads the values at `path` in `data`, as MongoDB does: an array on the way is searched element
 * by element unless the segment is an index, and an array value also offers each of its elements
 * (`{"tags": "vip"}` matches `tags: ["vip"]`). Stops after VALUES_PER_PATH values.
 */
export function readPath(
  data: unknown,
  path: readonly string[],
  needs: PathNeeds,
  budget: WorkBudget,
): PathValues {
  const values: PathValues = {
    present: false,
    keys: new Set(),
    number: {},
    decimal: {},
    text: {},
    string: {},
  };
  let read = 0;
  /** Counts one value read; false once the path has read its share. */
  const take = (): boolean => {
    if (read >= VALUES_PER_PATH) return false;
    read++;
    budget.spend(1);
    return true;
  };

  const offer = (value: unknown): void => {
    if (!needs.equality && !needs.order) return;
    if (typeof value === 'number' && Number.isInteger(value) && Math.abs(value) < 1e21) {
      // The common case, without parsing: an integer's text is its canonical decimal.
      if (needs.equality) values.keys.add(`d:${value}.`);
      if (needs.order) widen(values.number, value, compareNumbers);
      return;
    }
    if (typeof value === 'string') budget.spend(value.length >>> 8);
    const decimal = typeof value === 'number' || typeof value === 'string' ? decimalOf(value) : undefined;
    if (needs.equality) {
      const key = isComposite(value)
        ? compositeKey(value, needs.composites, budget)
        : decimal
          ? decimalKey(decimal)
          : equalityKey(value);
      if (key !== undefined) values.keys.add(key);
    }
    if (needs.order) {
      if (typeof value === 'number') {
        if (decimal) widen(values.number, value, compareNumbers);
      } else if (typeof value === 'string') {
        if (decimal) widen(values.decimal, decimal, compareDecimals);
        else widen(values.text, value, compareText);
        widen(values.string, value, compareText);
      }
    }
  };

  const found = (value: unknown): void => {
    if (value !== undefined) values.present = true;
    offer(value);
    if (Array.isArray(value)) {
      for (const element of value) {
        if (!take()) return;
        offer(element);
      }
    }
  };

  // Depth first, in document order, without recursion (the data may be nested deeply); an array
  // searched element by element is a cursor, so a long one costs only the elements read.
  type Step = { node: unknown; at: number } | { array: unknown[]; index: number; at: number };
  const pending: Step[] = [{ node: data, at: 0 }];
  while (pending.length > 0) {
    const step = pending[pending.length - 1] as Step;
    if ('array' in step) {
      if (step.index < step.array.length) pending.push({ node: step.array[step.index++], at: step.at });
      else pending.pop();
      continue;
    }
    pending.pop();
    if (!take()) break;
    const { node, at } = step;
    const segment = path[at];
    if (segment === undefined) found(node);
    else if (Array.isArray(node)) {
      if (/^\d+$/.test(segment)) pending.push({ node: node[Number(segment)], at: at + 1 });
      else pending.push({ array: node, index: 0, at });
    } else if (isObject(node) && Object.hasOwn(node, segment)) {
      pending.push({ node: node[segment], at: at + 1 });
    } else {
      found(undefined);
    }
  }
  return values;
}

/**
 * `j:` and the JSON text of an object or array, if that text is one of `operands` (the JSON texts
 * of the filter's objects and arrays at this path); undefined otherwise. The text is written piece
 * by piece and given up as soon as no operand starts with it, so a large value costs little.
 */
function compositeKey(value: object, operands: readonly string[], budget: WorkBudget): string | undefined {
  if (operands.length === 0) return undefined;
  const text: TextInProgress = { alive: operands, length: 0, budget };
  if (!serialize(text, value)) return undefined;
  const equal = text.alive.find((t) => t.length === text.length);
  return equal === undefined ? undefined : `j:${equal}`;
}

/** A JSON text being written against the operands it may still equal. */
interface TextInProgress {
  alive: readonly string[];
  length: number;
  budget: WorkBudget;
}

function write(text: TextInProgress, piece: string): boolean {
  text.budget.spend(1 + text.alive.length);
  text.alive = text.alive.filter((operand) => operand.startsWith(piece, text.length));
  text.length += piece.length;
  return text.alive.length > 0;
}

/** Writes JSON.stringify's text of `value` piece by piece; false once no operand can equal it. */
function serialize(text: TextInProgress, value: unknown): boolean {
  if (Array.isArray(value)) {
    if (!write(text, '[')) return false;
    for (let i = 0; i < value.length; i++) {
      if (i > 0 && !write(text, ',')) return false;
      if (!serialize(text, value[i] === undefined ? null : value[i])) return false;
    }
    return write(text, ']');
  }
  if (isObject(value)) {
    if (!write(text, '{')) return false;
    let first = true;
    for (const key in value) {
      const item = value[key];
      if (!Object.hasOwn(value, key) || item === undefined) continue;
      if (!write(text, `${first ? '' : ','}${JSON.stringify(key)}:`) || !serialize(text, item)) return false;
      first = false;
    }
    return write(text, '}');
  }
  return write(text, JSON.stringify(value) ?? 'null');
}
