// WooCommerce money → exact decimal strings. Amounts come as decimal strings at the store's
// configured precision, which may exceed the currency's (a USD store set to 3 decimals sends
// "10.125"): such an amount is kept as sent rather than rounded, since rounding would change money
// and refusing it would count as a failed delivery (WooCommerce disables a webhook after 5).
// Line item prices are JSON numbers (doubles, e.g. 10/3); those are rounded to the currency.
import { currencyExponent, normalizeAmount } from '../../events/money.ts';
import { ConnectorError } from '../sdk.ts';

const DECIMAL = /^(-?)(\d+)(?:\.(\d+))?$/;

function invalid(field: string): ConnectorError {
  return new ConnectorError('payload_invalid', `${field}: not a decimal amount`);
}

/** The amount at the currency's precision ("20" → "20.00") when that loses nothing, else as sent. */
function atPrecision(text: string, currency: string | null): string {
  if (currency === null) return text;
  try {
    return normalizeAmount(text, currency);
  } catch {
    return text; // more decimals than the currency has: exact beats tidy
  }
}

/** A WooCommerce decimal string, validated and exact. */
export function exactAmount(value: string, currency: string | null, field: string): string {
  const text = value.trim();
  if (!DECIMAL.test(text)) throw invalid(field);
  return atPrecision(text, currency);
}

/**
 * A double rounded half away from zero to the currency's minor unit. It rounds the shortest
 * decimal that reads back as the double (what String(n) prints), so 1.005 → "1.01", where
 * (1.005).toFixed(2) gives "1.00" from the binary value 1.00499999….
 */
export function amountFromNumber(value: number, currency: string, field: string): string {
  if (!Number.isFinite(value)) throw invalid(field);
  const shortest = String(value);
  const text = /e/i.test(shortest) ? value.toFixed(20) : shortest;
  const match = DECIMAL.exec(text);
  if (!match) throw invalid(field);
  const [, sign = '', whole = '0', fraction = ''] = match;
  const exp = currencyExponent(currency);
  let minor = BigInt(`${whole}${fraction.padEnd(exp, '0').slice(0, exp)}`);
  if ((fraction[exp] ?? '0') >= '5') minor += 1n;
  const digits = minor.toString().padStart(exp + 1, '0');
  const body = exp === 0 ? digits : `${digits.slice(0, -exp)}.${digits.slice(-exp)}`;
  return minor === 0n ? body : `${sign}${body}`;
}

/** Splits an exact decimal into an integer of `scale` decimals. */
function scaled(text: string, scale: number): bigint {
  const match = DECIMAL.exec(text);
  if (!match) throw new RangeError(`not a decimal: ${text}`);
  const [, sign, whole = '0', fraction = ''] = match;
  const value = BigInt(`${whole}${fraction.padEnd(scale, '0')}`);
  return sign === '-' ? -value : value;
}

const decimals = (text: string): number => text.split('.')[1]?.length ?? 0;

/** `minuend − each subtrahend`, exactly (BigInt at the finest precision among them). */
export function subtractAmounts(minuend: string, subtrahends: string[], currency: string): string {
  const scale = Math.max(decimals(minuend), ...subtrahends.map(decimals));
  const value = subtrahends.reduce((acc, s) => acc - scaled(s, scale), scaled(minuend, scale));
  const negative = value < 0n;
  const digits = (negative ? -value : value).toString().padStart(scale + 1, '0');
  const text = scale === 0 ? digits : `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
  return atPrecision(`${negative ? '-' : ''}${text}`, currency);
}
