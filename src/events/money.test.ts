import { describe, expect, it } from 'vitest';
import { currencyExponent, fromMinorUnits, ISO_4217, normalizeAmount, toMinorUnits } from './money.ts';

describe('ISO 4217 minor units (Shopify, WooCommerce)', () => {
  it('reads ISK and UGX as zero-decimal, MGA, HUF and TWD as two-decimal, KWD as three', () => {
    expect(fromMinorUnits(500, 'ISK', ISO_4217)).toBe('500');
    expect(fromMinorUnits(5000, 'UGX', ISO_4217)).toBe('5000');
    expect(fromMinorUnits(5000, 'MGA', ISO_4217)).toBe('50.00');
    expect(fromMinorUnits(5000, 'HUF', ISO_4217)).toBe('50.00');
    expect(fromMinorUnits(5000, 'TWD', ISO_4217)).toBe('50.00');
    expect(fromMinorUnits(1234, 'KWD', ISO_4217)).toBe('1.234');
    expect(fromMinorUnits(12345, 'CLF', ISO_4217)).toBe('1.2345');
    expect(fromMinorUnits(-5, 'USD', ISO_4217)).toBe('-0.05');
  });

  it('turns decimal strings into minor units and back, refusing more precision than the currency has', () => {
    expect(toMinorUnits('19.9', 'USD', ISO_4217)).toBe(1990n);
    expect(toMinorUnits('500', 'ISK', ISO_4217)).toBe(500n);
    expect(toMinorUnits('500.00', 'ISK', ISO_4217)).toBe(500n);
    expect(() => toMinorUnits('500.5', 'ISK', ISO_4217)).toThrow(
      /more decimals than ISK allows \(ISO 4217\)/,
    );
    expect(normalizeAmount('20', 'USD')).toBe('20.00');
    expect(normalizeAmount('1.2', 'KWD')).toBe('1.200');
    expect(currencyExponent('jpy')).toBe(0);
  });
});
