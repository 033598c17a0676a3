// Local pacing of a rate-limited destination's requests. The queue books each request a send slot
// (GCRA, database clock), so workers never book more than the limit; but a worker whose event loop
// was held up (a long GC, an embedded database's pause) would find several booked slots past due
// and send them at once. The pacer keeps a destination's requests from this worker at least one
// interval apart, so a late worker catches up at the limit, never above it.

export interface Pacer {
  /** When to send a request of `destination` booked for `slotMs`, at `rate` requests/s (null: no limit). */
  sendAt(destination: string, rate: number | null, slotMs: number, nowMs: number): number;
}

export function createPacer(): Pacer {
  const last = new Map<string, number>();
  return {
    sendAt(destination, rate, slotMs, nowMs) {
      if (!rate) return slotMs;
      const interval = 1000 / rate;
      const previous = last.get(destination);
      const at = Math.max(slotMs, nowMs, previous === undefined ? 0 : previous + interval);
      last.set(destination, at);
      // Forget destinations that have been quiet for a while, so the map stays small.
      if (last.size > 10_000) {
        for (const [id, t] of last) if (t < nowMs - 60_000) last.delete(id);
      }
      return at;
    },
  };
}
