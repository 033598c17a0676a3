// WooCommerce webhook authenticity: X-WC-Webhook-Signature is base64(HMAC-SHA256(secret, raw
// body)), compared in constant time. The unsigned creation ping is recognized by shape only.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { ConnectorError, header, type InboundRequest } from '../sdk.ts';

/**
 * The ping WooCommerce sends when a webhook is saved: form-encoded `webhook_id=<id>`, none of the
 * X-WC-Webhook-* headers, and it wants a 200. Anything else, even close, is not a handshake.
 */
export function isWooPing(req: InboundRequest): boolean {
  if (Object.keys(req.headers).some((name) => name.startsWith('x-wc-webhook-'))) return false;
  if (req.rawBody.length > 64) return false;
  return /^webhook_id=\d{1,20}$/.test(req.rawBody.toString('latin1'));
}

export function verifyWooSignature(req: InboundRequest, secret: string | undefined): void {
  if (!secret)
    throw new ConnectorError('secret_missing', 'the installation has no WooCommerce webhook secret');
  const signature = header(req, 'x-wc-webhook-signature');
  if (!signature) throw new ConnectorError('signature_invalid', 'no X-WC-Webhook-Signature header');
  const expected = Buffer.from(createHmac('sha256', secret).update(req.rawBody).digest('base64'), 'utf8');
  const given = Buffer.from(signature.trim(), 'utf8');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    throw new ConnectorError(
      'signature_invalid',
      'X-WC-Webhook-Signature does not match the body and the secret',
    );
  }
}
