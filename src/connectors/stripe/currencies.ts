// Stripe's minor units (docs.stripe.com/currencies, "Minor units in API amounts"): API amounts are
// integers in the currency's smallest unit, which Stripe does not always define as ISO 4217 does.
// Where they differ (ISK, MGA), Stripe's amounts must be read with this table, not ISO's.
import type { MinorUnits } from '../../events/money.ts';

/**
 * Stripe's zero-decimal currencies: an amount of 500 is 500 of the currency. MGA is on this list
 * though ISO gives it two decimals. UGX is too; its special case concerns payouts only.
 */
export const STRIPE_ZERO_DECIMAL = [
  'BIF',
  'CLP',
  'DJF',
  'GNF',
  'JPY',
  'KMF',
  'KRW',
  'MGA',
  'PYG',
  'RWF',
  'UGX',
  'VND',
  'VUV',
  'XAF',
  'XOF',
  'XPF',
] as const;

/** Stripe's three-decimal currencies: 1230 is 1.230 (Stripe requires the last digit to be 0). */
export const STRIPE_THREE_DECIMAL = ['BHD', 'JOD', 'KWD', 'OMR', 'TND'] as const;

const ZERO = new Set<string>(STRIPE_ZERO_DECIMAL);
const THREE = new Set<string>(STRIPE_THREE_DECIMAL);

/**
 * Every other currency is two-decimal at Stripe, including its special cases: ISK stays
 * two-decimal in the API for backward compatibility (50000 is 500 kr; amounts are multiples of
 * 100), and HUF and TWD are charged in two-decimal amounts (they are zero-decimal for payouts).
 */
export const STRIPE_MINOR_UNITS: MinorUnits = {
  name: 'Stripe',
  exponent(currency) {
    const code = currency.toUpperCase();
    if (ZERO.has(code)) return 0;
    return THREE.has(code) ? 3 : 2;
  },
};
