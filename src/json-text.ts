// One pass over JSON text, before it is parsed: how deep it nests, whether it has `\u` escapes,
// and, when asked, the text with every integer literal a double cannot hold exactly quoted as a
// string (Shopify's ids exceed 2^53). Strings are skipped with native searches, so the pass costs
// little next to JSON.parse.

export interface JsonTextFacts {
  /** The text with unsafe integers quoted (or as it was); undefined when one stands as an object key. */
  text: string | undefined;
  maxDepth: number;
  /** A `\u` escape: the only way JSON text decoded from UTF-8 can hold U+0000 or a lone surrogate. */
  escapes: boolean;
}

const isDigit = (c: number) => c >= 0x30 && c <= 0x39;
const isNumberChar = (c: number) =>
  isDigit(c) || c === 0x2e || c === 0x65 || c === 0x45 || c === 0x2b || c === 0x2d;
const isSpace = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

/** Index of the quote that closes the string opened at `open`, or the text's length when none does. */
function stringEnd(text: string, open: number): number {
  let j = open;
  for (;;) {
    j = text.indexOf('"', j + 1);
    if (j === -1) return text.length;
    let backslashes = 0;
    while (text.charCodeAt(j - 1 - backslashes) === 0x5c) backslashes++;
    if (backslashes % 2 === 0) return j;
  }
}

/**
 * Reads `text` once. With `quoteUnsafeIntegers`, integer literals of 16 digits or more that a
 * double cannot hold become strings. Quoting never turns bad JSON into good: a string may stand
 * wherever a number may except as an object key, which is reported (`text` undefined), and an
 * unclosed string stays unclosed.
 */
export function scanJsonText(text: string, quoteUnsafeIntegers = false): JsonTextFacts {
  let depth = 0;
  let maxDepth = 0;
  let out = '';
  let copied = 0;
  let key = false;
  const length = text.length;
  for (let i = 0; i < length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      i = stringEnd(text, i);
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (++depth > maxDepth) maxDepth = depth;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      depth--;
    } else if (isDigit(c) || c === 0x2d /* - */) {
      let j = i + 1;
      while (j < length && isDigit(text.charCodeAt(j))) j++;
      if (j < length && isNumberChar(text.charCodeAt(j))) {
        // A fraction or an exponent: not an integer, whatever its length.
        while (j < length && isNumberChar(text.charCodeAt(j))) j++;
      } else if (quoteUnsafeIntegers && j - i >= 16) {
        const token = text.slice(i, j);
        if (!Number.isSafeInteger(Number(token))) {
          out += `${text.slice(copied, i)}"${token}"`;
          copied = j;
          let k = j;
          while (k < length && isSpace(text.charCodeAt(k))) k++;
          if (text.charCodeAt(k) === 0x3a /* : */) key = true;
        }
      }
      i = j - 1;
    }
  }
  return {
    text: key ? undefined : copied === 0 ? text : out + text.slice(copied),
    maxDepth,
    escapes: text.includes('\\u'),
  };
}
