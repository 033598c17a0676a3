// HubSpot request signature v3: X-HubSpot-Signature-v3 is
// base64(HMAC-SHA256(app client secret, method + URI + raw body + X-HubSpot-Request-Timestamp)),
// the timestamp in epoch milliseconds; requests older than 5 minutes are replays.
// (The older X-HubSpot-Signature v1/v2 headers have no timestamp and are ignored.)
import { createHmac, timingSafeEqual } from 'node:crypto';
import { ConnectorError, header, type InboundRequest } from '../sdk.ts';

export const MAX_AGE_MS = 5 * 60 * 1000;

const DECODED: Record<string, string> = {
  '%3A': ':',
  '%2F': '/',
  '%3F': '?',
  '%40': '@',
  '%21': '!',
  '%24': '$',
  '%27': "'",
  '%28': '(',
  '%29': ')',
  '%2A': '*',
  '%2C': ',',
  '%3B': ';',
};
const ENCODED = /%(3A|2F|3F|40|21|24|27|28|29|2A|2C|3B)/gi;

/**
 * The request URI as HubSpot signs it. HubSpot's "Validating requests" guide (v3 section,
 * developers.hubspot.com/docs/apps/legacy-apps/authentication/validating-requests) has the
 * receiver decode exactly these twelve escapes in the full URI before hashing — %3A : %2F /
 * %3F ? %40 @ %21 ! %24 $ %27 ' %28 ( %29 ) %2A * %2C , %3B ; — and nothing else: %20, %25, %2B,
 * %26, %3D stay encoded. One pass, so "%253A" stays "%253A" (no double decoding).
 */
export function hubspotSignedUri(uri: string): string {
  return uri.replace(ENCODED, (encoded) => DECODED[encoded.toUpperCase()] ?? encoded);
}

function sign(secret: string, method: string, uri: string, body: Buffer, timestamp: string): Buffer {
  const hmac = createHmac('sha256', secret);
  hmac.update(`${method.toUpperCase()}${uri}`, 'utf8');
  hmac.update(body); // the raw bytes, never a re-encoded string
  hmac.update(timestamp, 'utf8');
  return Buffer.from(hmac.digest('base64'), 'utf8');
}

export function verifyHubSpotSignature(req: InboundRequest, secret: string | undefined): void {
  if (!secret)
    throw new ConnectorError('secret_missing', 'the installation has no HubSpot app client secret');
  const signature = header(req, 'x-hubspot-signature-v3');
  const timestamp = header(req, 'x-hubspot-request-timestamp');
  if (!signature || !timestamp) {
    throw new ConnectorError(
      'signature_invalid',
      'no X-HubSpot-Signature-v3 or X-HubSpot-Request-Timestamp header',
    );
  }
  if (!/^\d{1,16}$/.test(timestamp))
    throw new ConnectorError('signature_invalid', 'X-HubSpot-Request-Timestamp is not epoch milliseconds');

  // The decoded URI is the documented rule. HubSpot's own client libraries (@hubspot/api-client
  // Signature.isValid, hubspot-api-python) hash the URI as given, so that form is accepted too:
  // both are HMACs under the app secret of what this request carries, so neither trusts more.
  const given = Buffer.from(signature.trim(), 'utf8');
  const uris = new Set([hubspotSignedUri(req.url), req.url]);
  const matches = [...uris].some((uri) => {
    const expected = sign(secret, req.method, uri, req.rawBody, timestamp);
    return expected.length === given.length && timingSafeEqual(expected, given);
  });
  if (!matches)
    throw new ConnectorError('signature_invalid', 'X-HubSpot-Signature-v3 does not match the request');

  // Checked once the signature holds, so a forged request reads as forged, not as late. A
  // timestamp as far ahead is refused too: it would outlive the replay window.
  const age = req.receivedAt.getTime() - Number(timestamp);
  if (Math.abs(age) > MAX_AGE_MS) {
    throw new ConnectorError(
      'timestamp_stale',
      'X-HubSpot-Request-Timestamp is more than 5 minutes from now',
    );
  }
}
