// Standard Webhooks signatures (https://www.standardwebhooks.com): `whsec_` secrets, HMAC-SHA256
// over "{id}.{timestamp}.{body}", one `v1,<base64>` entry per key that is valid right now, so a
// receiver keeps verifying while a secret rotates.
import { createHmac, randomBytes } from 'node:crypto';

export const SECRET_PREFIX = 'whsec_';
/** How long a rotated-out secret keeps signing, so receivers can switch at their pace. */
export const ROTATION_OVERLAP_MS = 24 * 60 * 60 * 1000;

export function generateSigningSecret(): string {
  return `${SECRET_PREFIX}${randomBytes(32).toString('base64')}`;
}

/** True for `whsec_` + base64 of 24 to 64 bytes, as the spec asks. */
export function isSigningSecret(value: string): boolean {
  if (!value.startsWith(SECRET_PREFIX)) return false;
  const b64 = value.slice(SECRET_PREFIX.length);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return false;
  const bytes = Buffer.from(b64, 'base64').length;
  return bytes >= 24 && bytes <= 64;
}

export function sign(secret: string, id: string, timestamp: number, body: string): string {
  const key = Buffer.from(secret.slice(SECRET_PREFIX.length), 'base64');
  const mac = createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64');
  return `v1,${mac}`;
}

/** The `webhook-signature` header: one entry per valid secret, space-separated. */
export function signatureHeader(
  secrets: readonly string[],
  id: string,
  timestamp: number,
  body: string,
): string {
  return secrets.map((s) => sign(s, id, timestamp, body)).join(' ');
}
