// The retry policy: when a failed delivery is tried again, and when it is given up. The default
// schedule is Svix's (immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h), each delay
// jittered by ±20 % so that a recovering endpoint is not hit by every retry at the same instant.

export const DEFAULT_RETRY_SCHEDULE = '5s,5m,30m,2h,5h,10h,10h';
export const JITTER = 0.2;
/** Retry-After is honoured up to this long; a longer one is capped (the schedule still ends). */
export const MAX_RETRY_AFTER_MS = 60 * 60 * 1000;

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "250ms", "5s", "5m", "2h", "5d" → milliseconds; undefined when it is not such a duration. */
export function parseDuration(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(text.trim());
  if (!match) return undefined;
  return Math.round(Number(match[1]) * (UNITS[match[2] as string] as number));
}

/** "5s,5m,30m" → [5000, 300000, 1800000]; undefined when any part is not a duration. */
export function parseSchedule(text: string): number[] | undefined {
  const parts = text.split(',').map(parseDuration);
  return parts.every((p) => p !== undefined) && parts.length > 0 ? (parts as number[]) : undefined;
}

export interface RetryPolicy {
  /** Delays before retry 1, 2, …; a delivery gets 1 + schedule.length attempts in a round. */
  schedule: readonly number[];
  random?: () => number;
}

/**
 * After the `roundAttempts`-th failed attempt of a round: the delay before the next attempt, or
 * undefined when the schedule is exhausted (the delivery is dead). A Retry-After the receiver sent
 * replaces the scheduled delay, within bounds.
 */
export function nextDelay(
  policy: RetryPolicy,
  roundAttempts: number,
  retryAfterMs?: number,
): number | undefined {
  const scheduled = policy.schedule[roundAttempts - 1];
  if (scheduled === undefined) return undefined;
  if (retryAfterMs !== undefined) return Math.min(Math.max(0, retryAfterMs), MAX_RETRY_AFTER_MS);
  const random = policy.random ?? Math.random;
  return Math.round(scheduled * (1 - JITTER + 2 * JITTER * random()));
}
