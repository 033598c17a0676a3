// Money is exact: amounts are decimal strings in the currency's major unit ("19.99", "1000",
// "0.500"), never floats. Providers that count in minor units (Stripe: 1999) are converted with
// the currency's ISO 4217 exponent; arithmetic, where needed, is done on BigInt minor units.
import { z } from 'zod';

/** Currencies whose minor unit is not 1/100 (ISO 4217; Stripe's zero-decimal list agrees). */
const EXPONENTS: Record<string, number> = {
  BIF: 0,
  CLP: 0,
  DJF: 0,
  GNF: 0,
  ISK: 0,
  JPY: 0,
  KMF: 0,
  KRW: 0,
  PYG: 0,
  RWF: 0,
  UGX: 0,
  UYI: 0,
  VND: 0,
  VUV: 0,
  XAF: 0,
  XOF: 0,
  XPF: 0,
  BHD: 3,
  IQD: 3,
  JOD: 3,
  KWD: 3,
  LYD: 3,
  OMR: 3,
  TND: 3,
};

export function currencyExponent(currency: string): number {
  return EXPONENTS[currency.toUpperCase()] ?? 2;
}

export const amountSchema = z
  .string()
  .regex(/^-?\d+(\.\d+)?$/, 'an exact decimal amount as a string, e.g. "19.99"')
  .describe('exact decimal amount in the major unit, as a string');

export const currencySchema = z
  .string()
  .regex(/^[A-Z]{3}$/, 'an ISO 4217 code in upper case, e.g. EUR')
  .describe('ISO 4217 currency code');

/** 1999, "usd" → "19.99"; 500, "jpy" → "500". */
export function fromMinorUnits(minor: number | bigint, currency: string): string {
  const exp = currencyExponent(currency);
  const value = BigInt(minor);
  const negative = value < 0n;
  const digits = (negative ? -value : value).toString().padStart(exp + 1, '0');
  const whole = exp === 0 ? digits : digits.slice(0, -exp);
  const fraction = exp === 0 ? '' : `.${digits.slice(-exp)}`;
  return `${negative ? '-' : ''}${whole}${fraction}`;
}

/** "19.99", "usd" → 1999n. Rejects amounts more precise than the currency allows. */
export function toMinorUnits(amount: string, currency: string): bigint {
  const exp = currencyExponent(currency);
  const match = /^(-?)(\d+)(?:\.(\d+))?$/.exec(amount);
  if (!match) throw new RangeError(`not a decimal amount: ${amount}`);
  const [, sign, whole, fraction = ''] = match;
  const trimmed = fraction.replace(/0+$/, '');
  if (trimmed.length > exp) throw new RangeError(`${amount} has more decimals than ${currency} allows`);
  const value = BigInt(`${whole}${fraction.padEnd(exp, '0').slice(0, exp)}`);
  return sign === '-' ? -value : value;
}

/** Normalizes a provider's decimal string ("19.9", "20") to the currency's precision ("19.90", "20.00"). */
export function normalizeAmount(amount: string, currency: string): string {
  return fromMinorUnits(toMinorUnits(amount, currency), currency);
}
