import { describe, expect, it } from 'vitest';
import { createPacer } from './pacer.ts';

describe('pacer', () => {
  it('sends slots that came due together one interval apart', () => {
    const pacer = createPacer();
    // Five slots booked 200 ms apart (5/s), found 2 s late: they go out 200 ms apart from now.
    const now = 10_000;
    const at = [0, 200, 400, 600, 800].map((slot) => pacer.sendAt('ins_a', 5, 7_000 + slot, now));
    expect(at).toEqual([10_000, 10_200, 10_400, 10_600, 10_800]);
  });

  it('keeps slots that are on time, and paces each destination on its own', () => {
    const pacer = createPacer();
    expect(pacer.sendAt('ins_a', 10, 1_000, 900)).toBe(1_000);
    expect(pacer.sendAt('ins_a', 10, 1_100, 950)).toBe(1_100);
    expect(pacer.sendAt('ins_b', 10, 1_000, 950)).toBe(1_000);
    // A later slot than the pacing asks for is kept as booked.
    expect(pacer.sendAt('ins_a', 10, 5_000, 1_000)).toBe(5_000);
  });

  it('leaves unlimited destinations alone', () => {
    const pacer = createPacer();
    expect([1, 2, 3].map(() => pacer.sendAt('ins_u', null, 500, 1_000))).toEqual([500, 500, 500]);
  });
});
