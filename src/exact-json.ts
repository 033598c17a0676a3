// JSON whose numbers keep the text they were sent as. JSON.parse makes every number a double:
// 1e400 becomes Infinity (stringified as null), 123456789012345678901234567890 is rounded, and
// 0.1000000000000000055511151231257827 reads back as 0.1. A value parsed here holds each number
// as a `LosslessNumber` (its text), and `stringifyExact` writes that text back unchanged.
import {
  compareLosslessNumber,
  getUnsafeNumberReason,
  isLosslessNumber,
  type LosslessNumber,
  parse,
  stringify,
  UnsafeNumberReason,
} from 'lossless-json';

/**
 * `text` parsed with every number kept as its text. A repeated key takes its last value, as
 * JSON.parse does; `__proto__` is an ordinary own key. The parser recurses once per level of
 * nesting: check the depth first (`scanJsonText`) for text that may nest deeply.
 */
export function parseExact(text: string): unknown {
  return parse(text, null, { onDuplicateKey: ({ newValue }) => newValue });
}

/** JSON text of a value from `parseExact` (or any JSON value), each number written as it was read. */
export function stringifyExact(value: unknown): string {
  return stringify(value) ?? 'null';
}

export interface InexactNumber {
  /** Dotted path of the number ('' for the value itself). */
  path: string;
  /** The number as it was sent. */
  text: string;
  /** What a double would make of it. */
  message: string;
}

const CHANGES: Record<UnsafeNumberReason, string> = {
  [UnsafeNumberReason.overflow]: 'is too large for a double (it would become null)',
  [UnsafeNumberReason.underflow]: 'is too small for a double (it would become 0)',
  [UnsafeNumberReason.truncate_integer]: 'is an integer beyond 2^53 (a double would round it)',
  [UnsafeNumberReason.truncate_float]: 'has more digits than a double holds (it would be rounded)',
};

/**
 * A value from `parseExact` with its numbers as doubles, when every one of them is a double's
 * exactly (`1.50` and `1e2` are; `1e400` is not); else the first that is not. Canonical event
 * data, whose schemas take JavaScript numbers, goes through here. The path of the number is built
 * only when there is one, on the way back out.
 */
export function toDoubles(value: unknown): { value: unknown } | { inexact: InexactNumber } {
  const converted = doubles(value);
  if (!(converted instanceof InexactAt)) return { value: converted };
  const { keysOutward, text, message } = converted;
  return { inexact: { path: keysOutward.reverse().join('.'), text, message } };
}

/** The first inexact number found, with the keys from it out to the root (innermost first). */
class InexactAt {
  readonly keysOutward: string[] = [];
  constructor(
    readonly text: string,
    readonly message: string,
  ) {}
}

function doubles(value: unknown): unknown {
  if (isLosslessNumber(value)) {
    const text = (value as LosslessNumber).value;
    const reason = getUnsafeNumberReason(text);
    return reason ? new InexactAt(text, CHANGES[reason]) : Number(text);
  }
  if (Array.isArray(value)) {
    const out: unknown[] = new Array(value.length);
    for (let i = 0; i < value.length; i++) {
      const converted = doubles(value[i]);
      if (converted instanceof InexactAt) return outward(converted, String(i));
      out[i] = converted;
    }
    return out;
  }
  if (value !== null && typeof value === 'object') {
    const entries: [string, unknown][] = [];
    for (const [key, item] of Object.entries(value)) {
      const converted = doubles(item);
      if (converted instanceof InexactAt) return outward(converted, key);
      entries.push([key, converted]);
    }
    return Object.fromEntries(entries);
  }
  return value;
}

function outward(found: InexactAt, key: string): InexactAt {
  found.keysOutward.push(key);
  return found;
}

/**
 * Whether two values from `parseExact` are the same JSON: objects whatever their key order,
 * numbers by their exact decimal value (`1.50` is `1.5`, `1e2` is `100`).
 */
export function sameJson(a: unknown, b: unknown): boolean {
  if (isLosslessNumber(a) || isLosslessNumber(b)) {
    return (
      isLosslessNumber(a) &&
      isLosslessNumber(b) &&
      compareLosslessNumber(a as LosslessNumber, b as LosslessNumber) === 0
    );
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    return (
      Array.isArray(a) &&
      Array.isArray(b) &&
      a.length === b.length &&
      a.every((item, i) => sameJson(item, b[i]))
    );
  }
  if (a !== null && b !== null && typeof a === 'object' && typeof b === 'object') {
    const keys = Object.keys(a);
    return (
      keys.length === Object.keys(b).length &&
      keys.every(
        (key) =>
          Object.hasOwn(b, key) &&
          sameJson((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key]),
      )
    );
  }
  return a === b;
}
