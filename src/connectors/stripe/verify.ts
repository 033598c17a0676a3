// Stripe-Signature verification with the official SDK (`stripe.webhooks.constructEvent`), its
// errors mapped to ConnectorError codes. The static `Stripe.webhooks` needs no API key and makes
// no network call.
import Stripe from 'stripe';
import { ConnectorError, header, type InboundRequest } from '../sdk.ts';

/** Stripe's own default: a signed timestamp older than this is a replay. */
export const TOLERANCE_SECONDS = 300;

/** True when a signature error would remain with the age check off (tolerance 0 skips it). */
function signatureFails(body: Buffer, signature: string, secret: string): boolean {
  try {
    Stripe.webhooks.constructEvent(body, signature, secret, 0);
    return false;
  } catch (err) {
    // Anything but a signature error is thrown after the signature was checked (JSON parsing).
    return err instanceof Stripe.errors.StripeSignatureVerificationError;
  }
}

/**
 * Throws ConnectorError unless the request carries a valid, recent Stripe signature:
 * secret_missing (no whsec_ secret), signature_invalid (no header, wrong secret, changed body),
 * timestamp_stale (valid signature, `t=` older than 300 s when received).
 */
export function verifyStripeSignature(req: InboundRequest, secret: string | undefined): void {
  if (!secret)
    throw new ConnectorError(
      'secret_missing',
      'the installation has no Stripe webhook signing secret (whsec_...)',
    );
  const signature = header(req, 'stripe-signature');
  if (!signature) throw new ConnectorError('signature_invalid', 'no Stripe-Signature header');
  try {
    Stripe.webhooks.constructEvent(
      req.rawBody,
      signature,
      secret,
      TOLERANCE_SECONDS,
      undefined,
      req.receivedAt.getTime(),
    );
  } catch (err) {
    if (!(err instanceof Stripe.errors.StripeSignatureVerificationError)) {
      // The SDK parses the body only once the signature matched: authentic, but not a snapshot
      // event it can read (not JSON, or a v2 "thin" event notification).
      throw new ConnectorError('payload_malformed', 'the body is not a Stripe snapshot event');
    }
    // The SDK throws one error class for both a bad signature and an old timestamp (and checks the
    // signature first); rather than match on its message, check the signature alone once more.
    if (signatureFails(req.rawBody, signature, secret)) {
      throw new ConnectorError(
        'signature_invalid',
        'Stripe-Signature does not match the body and the secret',
      );
    }
    throw new ConnectorError(
      'timestamp_stale',
      `Stripe-Signature timestamp is more than ${TOLERANCE_SECONDS} s old`,
    );
  }
}
