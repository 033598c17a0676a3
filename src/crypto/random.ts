// Generated credentials and their at-rest form.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** A client secret: 32 random bytes behind a prefix that secret scanners can match. */
export function newClientSecret(): string {
  return `ics_${randomBytes(32).toString('base64url')}`;
}

/**
 * Client secrets are 256-bit random values, so a fast hash is enough: there is nothing to brute
 * force that a slow KDF would protect (the practice of GitHub and Stripe for API keys).
 */
export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

export function secretMatches(secret: string, storedHash: string): boolean {
  const a = Buffer.from(hashSecret(secret), 'hex');
  const b = Buffer.from(storedHash, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}
