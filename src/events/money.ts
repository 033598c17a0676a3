// Money is exact: amounts are decimal strings in the currency's major unit ("19.99", "1000",
// "0.500"), never floats, at the currency's ISO 4217 precision. Providers that count in minor
// units (Stripe: 1999) say how many minor units make a major one in each currency: their table
// (a `MinorUnits`) is passed explicitly, since it is not always ISO's (Stripe counts ISK in
// hundredths, ISO in whole krónur). Arithmetic, where needed, is done on BigInt minor units.
import { z } from 'zod';

/** Currencies whose ISO 4217 minor unit is not 1/100: the exponent of ten of a major unit. */
const ISO_EXPONENTS: Record<string, number> = {
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
  CLF: 4,
  UYW: 4,
};

/** The ISO 4217 exponent of a currency: 2 for USD, 0 for JPY and ISK, 3 for KWD. */
export function currencyExponent(currency: string): number {
  return ISO_EXPONENTS[currency.toUpperCase()] ?? 2;
}

/** How a provider counts minor units: for each currency, how many decimal places they stand for. */
export interface MinorUnits {
  /** Whose convention this is, for messages ("ISO 4217", "Stripe"). */
  readonly name: string;
  exponent(currency: string): number;
}

/** ISO 4217's minor units: what Shopify and WooCommerce amounts follow. */
export const ISO_4217: MinorUnits = { name: 'ISO 4217', exponent: currencyExponent };

export const amountSchema = z
  .string()
  .regex(/^-?\d+(\.\d+)?$/, 'an exact decimal amount as a string, e.g. "19.99"')
  .describe('exact decimal amount in the major unit, as a string');

export const currencySchema = z
  .string()
  .regex(/^[A-Z]{3}$/, 'an ISO 4217 code in upper case, e.g. EUR')
  .describe('ISO 4217 currency code');

/** `value` × 10^-scale as a decimal string: 1999n, 2 → "19.99". */
function decimal(value: bigint, scale: number): string {
  const negative = value < 0n;
  const digits = (negative ? -value : value).toString().padStart(scale + 1, '0');
  const whole = scale === 0 ? digits : digits.slice(0, -scale);
  const fraction = scale === 0 ? '' : `.${digits.slice(-scale)}`;
  return `${negative ? '-' : ''}${whole}${fraction}`;
}

/**
 * Minor units counted the way `units` counts them → the canonical amount, at the currency's ISO
 * precision; an amount finer than that (a fractional ISK amount from before Stripe refused them)
 * keeps its digits rather than being rounded.
 *
 * @example
 * fromMinorUnits(1999, 'USD', ISO_4217)           // "19.99"
 * fromMinorUnits(50000, 'ISK', STRIPE_MINOR_UNITS) // "500" (Stripe counts ISK in hundredths)
 * fromMinorUnits(5000, 'MGA', STRIPE_MINOR_UNITS)  // "5000.00" (zero-decimal at Stripe, two at ISO)
 */
export function fromMinorUnits(minor: number | bigint, currency: string, units: MinorUnits): string {
  const from = units.exponent(currency);
  const to = currencyExponent(currency);
  const value = BigInt(minor);
  if (to >= from) return decimal(value * 10n ** BigInt(to - from), to);
  const factor = 10n ** BigInt(from - to);
  return value % factor === 0n ? decimal(value / factor, to) : decimal(value, from);
}

/** "19.99", "USD" → 1999n in `units`' minor units. Rejects amounts more precise than they allow. */
export function toMinorUnits(amount: string, currency: string, units: MinorUnits): bigint {
  const exp = units.exponent(currency);
  const match = /^(-?)(\d+)(?:\.(\d+))?$/.exec(amount);
  if (!match) throw new RangeError(`not a decimal amount: ${amount}`);
  const [, sign, whole, fraction = ''] = match;
  const trimmed = fraction.replace(/0+$/, '');
  if (trimmed.length > exp)
    throw new RangeError(`${amount} has more decimals than ${currency} allows (${units.name})`);
  const value = BigInt(`${whole}${fraction.padEnd(exp, '0').slice(0, exp)}`);
  return sign === '-' ? -value : value;
}

/** Normalizes a decimal string ("19.9", "20") to the currency's ISO precision ("19.90", "20.00"). */
export function normalizeAmount(amount: string, currency: string): string {
  return fromMinorUnits(toMinorUnits(amount, currency, ISO_4217), currency, ISO_4217);
}
