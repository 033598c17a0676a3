// Subscription filters: a small, documented subset of MongoDB's query language evaluated on an
// event's `data`, e.g. `{"total": {"$gte": "100"}, "currency": "EUR"}`. Amounts are exact
// decimal strings in Interchange, so numeric comparisons are exact: "100.10" > 100.1 is false.
//
// Evaluation costs at most FILTER_WORK_BUDGET units of work, whatever the data: the values at each
// field path are read once per event (at most VALUES_PER_PATH of them) and summed up, so a
// condition is a lookup ($in: a set of its operands against the set of the values; $gt: the
// largest value). The filters of all an event's destinations share EVENT_FILTER_WORK_BUDGET and
// the values they read (`EventReading`). A filter that would need more work does not match
// (`exhausted`).
import {
  BudgetExhausted,
  compareDecimals,
  compareText,
  type Decimal,
  decimalOf,
  type Extremes,
  equalityKey,
  type PathNeeds,
  type PathValues,
  readPath,
  WorkBudget,
} from './filter-values.ts';

export { VALUES_PER_PATH } from './filter-values.ts';

export const FILTER_MAX_BYTES = 4096;
/** Work one evaluation may do: a value read, a condition checked, 256 characters of a string read. */
export const FILTER_WORK_BUDGET = 100_000;
/**
 * Work the filters of all the destinations of one event may do on it together: ten evaluations'
 * worth, so that an organization's many destinations cost an event no more than ten costly filters.
 */
export const EVENT_FILTER_WORK_BUDGET = 10 * FILTER_WORK_BUDGET;
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

/** The outcome of one evaluation; `work` never exceeds the budget. */
export interface FilterEvaluation {
  matched: boolean;
  /** Units of work spent (see FILTER_WORK_BUDGET). */
  work: number;
  /**
   * A budget ran out, the filter's own (`filter`) or the one its event's filters share (`event`):
   * the filter did not match, whatever the rest of the data holds.
   */
  exhausted: false | 'filter' | 'event';
}

export interface CompiledFilter {
  /** On `data` alone, with a reading of its own. */
  evaluate(data: unknown): FilterEvaluation;
  /** On an event that other filters read too: sharing its budget and the values they read. */
  evaluateOn(event: EventReading): FilterEvaluation;
}

const COMPARISONS = ['$eq', '$ne', '$gt', '$gte', '$lt', '$lte', '$in', '$nin', '$exists'] as const;

/** $gt and $gte hold when the largest comparable value passes; $lt and $lte, the smallest. */
const ORDERED = {
  $gt: { side: 'max', accept: (c: number) => c > 0 },
  $gte: { side: 'max', accept: (c: number) => c >= 0 },
  $lt: { side: 'min', accept: (c: number) => c < 0 },
  $lte: { side: 'min', accept: (c: number) => c <= 0 },
} as const;

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

interface FieldPath {
  /** Its place among the filter's paths. */
  index: number;
  segments: readonly string[];
  needs: PathNeeds;
  /** The path and its needs as one string: paths of any filter with the same key read the same values. */
  key: string;
}

/**
 * One event's data as the filters of its destinations read it: the work budget they share, and
 * the values of each path, read once by the first filter that needs them and then looked up by the
 * others. The event's budget is charged for the reading once; each filter's own budget, for every
 * reading it uses, as if it had read the values itself. Make one per event, for all its destinations.
 */
export class EventReading {
  readonly budget: WorkBudget;
  private paths: Map<string, { values: PathValues; cost: number }> | undefined;

  constructor(
    readonly data: unknown,
    limit = EVENT_FILTER_WORK_BUDGET,
  ) {
    this.budget = new WorkBudget(limit);
  }

  /** Units of work every filter together has spent on the event (never more than its budget). */
  get work(): number {
    return this.budget.used;
  }

  values(path: FieldPath, budget: WorkBudget): PathValues {
    this.paths ??= new Map();
    const known = this.paths.get(path.key);
    if (known) {
      budget.spendDone(known.cost);
      return known.values;
    }
    const before = budget.used;
    const values = readPath(this.data, path.segments, path.needs, budget);
    this.paths.set(path.key, { values, cost: budget.used - before });
    return values;
  }
}

/**
 * One evaluation: the event's reading, the filter's own budget (which also charges the event's),
 * and the values of each path it has used, charged to it once.
 */
class Reading {
  private readonly used: Array<PathValues | undefined> = [];
  constructor(
    private readonly event: EventReading,
    readonly budget: WorkBudget,
  ) {}

  values(path: FieldPath): PathValues {
    const known = this.used[path.index];
    if (known) return known;
    const values = this.event.values(path, this.budget);
    this.used[path.index] = values;
    return values;
  }
}

type Condition = (reading: Reading) => boolean;

/** The field paths a filter names, each once, with what its conditions need. */
class FieldPaths {
  private readonly byName = new Map<string, FieldPath>();

  of(field: string, where: string): FieldPath {
    const known = this.byName.get(field);
    if (known) return known;
    const segments = field.split('.');
    if (segments.some((p) => p === '')) throw new FilterError(where, `"${field}" is not a field path`);
    const path = {
      index: this.byName.size,
      segments,
      needs: { equality: false, order: false, composites: [] },
      key: '',
    };
    this.byName.set(field, path);
    return path;
  }

  /** Once every condition has said what it needs: each path's key. */
  seal(): void {
    for (const path of this.byName.values()) {
      const { equality, order, composites } = path.needs;
      path.key = JSON.stringify([path.segments, equality, order, [...composites].sort()]);
    }
  }
}

/** Prepares equality with `operands`: their keys, and the path's values keyed to compare with them. */
function equalityKeys(path: FieldPath, operands: Json[]): Set<string> {
  path.needs.equality = true;
  for (const operand of operands) {
    const text = typeof operand === 'object' && operand !== null ? JSON.stringify(operand) : undefined;
    if (text !== undefined && !path.needs.composites.includes(text)) path.needs.composites.push(text);
  }
  return new Set(operands.map((o) => equalityKey(o) as string));
}

/** Whether some value of the path equals one of `keys` (the smaller set is walked). */
function someEqual(reading: Reading, path: FieldPath, keys: Set<string>): boolean {
  const values = reading.values(path).keys;
  const [few, many] = values.size < keys.size ? [values, keys] : [keys, values];
  reading.budget.spend(1 + few.size);
  for (const key of few) if (many.has(key)) return true;
  return false;
}

const asDecimals = (numbers: Extremes<number>): Extremes<Decimal> => ({
  min: decimalOf(numbers.min),
  max: decimalOf(numbers.max),
});

function ordered(path: FieldPath, op: keyof typeof ORDERED, operand: Json, at: string): Condition {
  if (operand === null || typeof operand === 'object' || typeof operand === 'boolean')
    throw new FilterError(at, `${op} takes a number or a string`);
  path.needs.order = true;
  const { side, accept } = ORDERED[op];
  const passes = <T>(extremes: Extremes<T>, bound: T, compare: (a: T, b: T) => number) => {
    const value = extremes[side];
    return value !== undefined && accept(compare(value, bound));
  };
  const decimal: Decimal | undefined = decimalOf(operand);
  // A decimal compares with decimals by value, and a decimal string also with other strings as
  // text; any other string compares with every string as text; a number with an exponent, with nothing.
  return (reading) => {
    reading.budget.spend(1);
    const values = reading.values(path);
    if (decimal) {
      return (
        passes(asDecimals(values.number), decimal, compareDecimals) ||
        passes(values.decimal, decimal, compareDecimals) ||
        (typeof operand === 'string' && passes(values.text, operand, compareText))
      );
    }
    return typeof operand === 'string' && passes(values.string, operand, compareText);
  };
}

function compileCondition(field: string, condition: Json, where: string, paths: FieldPaths): Condition {
  const path = paths.of(field, where);
  const operators = isObject(condition) && Object.keys(condition).some((k) => k.startsWith('$'));
  if (!operators) {
    const keys = equalityKeys(path, [condition]);
    return (reading) => someEqual(reading, path, keys);
  }
  const tests = Object.entries(condition as Record<string, Json>).map(([op, operand]): Condition => {
    const at = `${where}.${op}`;
    switch (op as (typeof COMPARISONS)[number]) {
      case '$eq':
      case '$ne': {
        const keys = equalityKeys(path, [operand]);
        return op === '$eq'
          ? (reading) => someEqual(reading, path, keys)
          : (reading) => !someEqual(reading, path, keys);
      }
      case '$gt':
      case '$gte':
      case '$lt':
      case '$lte':
        return ordered(path, op as keyof typeof ORDERED, operand, at);
      case '$in':
      case '$nin': {
        if (!Array.isArray(operand)) throw new FilterError(at, `${op} takes an array`);
        const keys = equalityKeys(path, operand);
        return op === '$in'
          ? (reading) => someEqual(reading, path, keys)
          : (reading) => !someEqual(reading, path, keys);
      }
      case '$exists': {
        if (typeof operand !== 'boolean') throw new FilterError(at, '$exists takes true or false');
        return (reading) => {
          reading.budget.spend(1);
          return reading.values(path).present === operand;
        };
      }
      default:
        throw new FilterError(at, `unknown operator ${op} (use ${COMPARISONS.join(', ')})`);
    }
  });
  return (reading) => tests.every((t) => t(reading));
}

function compileQuery(query: Json, where: string, depth: number, paths: FieldPaths): Condition {
  if (depth > MAX_DEPTH) throw new FilterError(where, `nested deeper than ${MAX_DEPTH} levels`);
  if (!isObject(query)) throw new FilterError(where, 'must be an object');
  const parts = Object.entries(query as Record<string, Json>).map(([key, value]): Condition => {
    const at = `${where}.${key}`;
    if (key === '$and' || key === '$or' || key === '$nor') {
      if (!Array.isArray(value) || value.length === 0)
        throw new FilterError(at, `${key} takes a non-empty array of filters`);
      const subs = value.map((v, i) => compileQuery(v, `${at}.${i}`, depth + 1, paths));
      if (key === '$and') return (reading) => subs.every((s) => s(reading));
      if (key === '$or') return (reading) => subs.some((s) => s(reading));
      return (reading) => !subs.some((s) => s(reading));
    }
    if (key === '$not') {
      const sub = compileQuery(value, at, depth + 1, paths);
      return (reading) => !sub(reading);
    }
    if (key.startsWith('$')) throw new FilterError(at, `unknown operator ${key} (use $and, $or, $nor, $not)`);
    return compileCondition(key, value, at, paths);
  });
  return (reading) => parts.every((p) => p(reading));
}

/** Checks a filter and returns its evaluator; FilterError names the offending part (`filter.total.$gte`). */
export function compileFilter(filter: unknown): CompiledFilter {
  const text = JSON.stringify(filter) ?? '';
  if (text.length > FILTER_MAX_BYTES)
    throw new FilterError('filter', `larger than ${FILTER_MAX_BYTES} bytes`);
  const paths = new FieldPaths();
  const condition = compileQuery(filter as Json, 'filter', 0, paths);
  paths.seal();
  const evaluateOn = (event: EventReading): FilterEvaluation => {
    const budget = new WorkBudget(FILTER_WORK_BUDGET, event.budget);
    try {
      const matched = condition(new Reading(event, budget));
      return { matched, work: budget.used, exhausted: false };
    } catch (err) {
      if (!(err instanceof BudgetExhausted)) throw err;
      return { matched: false, work: budget.used, exhausted: err.budget === budget ? 'filter' : 'event' };
    }
  };
  return { evaluate: (data) => evaluateOn(new EventReading(data)), evaluateOn };
}
