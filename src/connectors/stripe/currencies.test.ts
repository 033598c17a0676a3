import { describe, expect, it } from 'vitest';
import { fromMinorUnits } from '../../events/money.ts';
import { STRIPE_MINOR_UNITS, STRIPE_THREE_DECIMAL, type STRIPE_ZERO_DECIMAL } from './currencies.ts';

const stripe = (minor: number, currency: string) => fromMinorUnits(minor, currency, STRIPE_MINOR_UNITS);

describe("Stripe's minor units (docs.stripe.com/currencies)", () => {
  // MGA is zero-decimal at Stripe but two-decimal in ISO 4217: its canonical amount keeps ISO's
  // precision ("5000.00"), the value Stripe meant (5000 ariary).
  const zeroDecimal: Record<(typeof STRIPE_ZERO_DECIMAL)[number], string> = {
    BIF: '5000',
    CLP: '5000',
    DJF: '5000',
    GNF: '5000',
    JPY: '5000',
    KMF: '5000',
    KRW: '5000',
    MGA: '5000.00',
    PYG: '5000',
    RWF: '5000',
    UGX: '5000',
    VND: '5000',
    VUV: '5000',
    XAF: '5000',
    XOF: '5000',
    XPF: '5000',
  };
  for (const [currency, expected] of Object.entries(zeroDecimal)) {
    it(`reads ${currency} as zero-decimal: 5000 is ${expected}`, () => {
      expect(stripe(5000, currency)).toBe(expected);
      expect(stripe(5000, currency.toLowerCase())).toBe(expected);
    });
  }

  for (const currency of STRIPE_THREE_DECIMAL) {
    it(`reads ${currency} as three-decimal: 5120 is 5.120`, () => {
      expect(stripe(5120, currency.toLowerCase())).toBe('5.120');
    });
  }

  it('reads ISK as two-decimal (kept for backward compatibility): 50000 is 500 kr', () => {
    expect(stripe(50000, 'isk')).toBe('500');
    // A fractional amount from before Stripe refused them keeps its digits rather than being rounded.
    expect(stripe(50050, 'isk')).toBe('500.50');
  });

  it('reads HUF and TWD as two-decimal (zero-decimal only for payouts): 5000 is 50.00', () => {
    expect(stripe(5000, 'huf')).toBe('50.00');
    expect(stripe(5000, 'twd')).toBe('50.00');
  });

  it('reads every other currency as two-decimal', () => {
    expect(stripe(1999, 'usd')).toBe('19.99');
    expect(stripe(1999, 'eur')).toBe('19.99');
  });
});
