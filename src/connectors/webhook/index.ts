// Webhook endpoints: the organization's customers register a URL and receive its events, signed
// the Standard Webhooks way. Only 2xx is success; redirects are not followed; 410 disables the
// endpoint; 429, 502 and 504 throttle it (honouring Retry-After); anything else is retried.
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import {
  type DeliveryItem,
  type DeliveryResult,
  defineConnector,
  type HttpClient,
  parseRetryAfter,
} from '../sdk.ts';
import { generateSigningSecret, isSigningSecret, ROTATION_OVERLAP_MS, signatureHeader } from './signing.ts';

const config = z.strictObject({
  url: z
    .url({ protocol: /^https?$/, error: 'must be an http or https URL' })
    .max(2000)
    .describe('where events are POSTed'),
});

const secret = z.string().refine(isSigningSecret, 'must be whsec_ followed by base64 of 24 to 64 bytes');

const secrets = z.object({
  signingSecret: secret.describe('generated when the endpoint is created and shown once'),
  /** Secrets rotated out less than 24 h ago: they keep signing until they expire. */
  previousSigningSecrets: z
    .array(z.object({ secret, expiresAt: z.iso.datetime() }))
    .max(10)
    .optional(),
});

type Secrets = Partial<z.infer<typeof secrets>>;

const THROTTLE = new Set([429, 502, 504]);
const USER_AGENT = 'Interchange-Webhooks/1';

/** The secrets that sign right now: the current one first, then those still inside their overlap. */
export function activeSecrets(s: Secrets, now: Date): string[] {
  const previous = (s.previousSigningSecrets ?? [])
    .filter((p) => Date.parse(p.expiresAt) > now.getTime())
    .map((p) => p.secret);
  return [...(s.signingSecret ? [s.signingSecret] : []), ...previous];
}

/**
 * The body a receiver gets: Standard Webhooks' `{type, timestamp, data}`, with the event's ids.
 * The data's JSON text, when the hub has it (`dataJson`), goes in as it is: the same bytes as
 * stringifying the parsed data, without parsing it.
 */
export function payloadOf(item: DeliveryItem): string {
  const e = item.event;
  const head = {
    id: e.id,
    type: e.type,
    timestamp: e.time,
    subject: e.subject,
    user_id: e.userid,
  };
  if (item.dataJson === undefined) return JSON.stringify({ ...head, data: e.data });
  return `${JSON.stringify(head).slice(0, -1)},"data":${item.dataJson}}`;
}

/** The event a connection check sends: `webhook.test`, naming the endpoint's installation. */
function testItem(installationId: string, now: Date): DeliveryItem {
  const id = `test_${randomUUID()}`;
  return {
    deliveryId: id,
    attempt: 1,
    sourceConnector: null,
    event: {
      specversion: '1.0',
      id,
      source: `/installations/${installationId}`,
      type: 'webhook.test',
      subject: null,
      time: now.toISOString(),
      datacontenttype: 'application/json',
      organization: '',
      partitionkey: installationId,
      userid: null,
      data: { installation_id: installationId },
    },
  };
}

async function send(url: string, item: DeliveryItem, s: Secrets, http: HttpClient, now: () => Date) {
  const keys = activeSecrets(s, now());
  if (keys.length === 0) return { status: 'failed', error: 'the endpoint has no signing secret' } as const;
  const body = payloadOf(item);
  const timestamp = Math.floor(now().getTime() / 1000);
  const res = await http(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'user-agent': USER_AGENT,
      'webhook-id': item.event.id,
      'webhook-timestamp': String(timestamp),
      'webhook-signature': signatureHeader(keys, item.event.id, timestamp, body),
    },
    body,
  });
  const base = { statusCode: res.status, response: res.body };
  if (res.status >= 200 && res.status < 300) return { status: 'delivered', ...base } as const;
  if (res.status === 410)
    return { status: 'failed', error: 'the endpoint answered 410 Gone', disable: true, ...base } as const;
  const error = `the endpoint answered ${res.status}`;
  if (THROTTLE.has(res.status)) {
    return {
      status: 'retry',
      error,
      throttle: true,
      retryAfterMs: parseRetryAfter(res.headers['retry-after']),
      ...base,
    } as const;
  }
  return { status: 'retry', error, ...base } as const;
}

export default defineConnector({
  id: 'webhook',
  name: 'Webhook endpoint',
  category: 'webhooks',
  description: 'POSTs events to a URL, signed with Standard Webhooks headers, retried with backoff.',
  config,
  secrets,
  generateSecrets: () => ({ signingSecret: generateSigningSecret() }),
  rotateSecrets(current, now) {
    const kept = (current.previousSigningSecrets ?? []).filter(
      (p) => Date.parse(p.expiresAt) > now.getTime(),
    );
    const expiresAt = new Date(now.getTime() + ROTATION_OVERLAP_MS).toISOString();
    const signingSecret = generateSigningSecret();
    return {
      secrets: {
        signingSecret,
        previousSigningSecrets: current.signingSecret
          ? [{ secret: current.signingSecret, expiresAt }, ...kept].slice(0, 10)
          : kept,
      },
      revealed: { signingSecret },
    };
  },
  // A real signed request, as a delivery would be: a `webhook.test` event about this endpoint.
  async check(ctx) {
    const item = testItem(ctx.installationId, new Date());
    try {
      const result = await send(ctx.config.url, item, ctx.secrets, ctx.http, () => new Date());
      if (result.status === 'delivered')
        return { ok: true, message: `the endpoint answered ${result.statusCode} to a signed webhook.test` };
      return { ok: false, message: result.error };
    } catch (err) {
      return { ok: false, message: `the endpoint could not be reached: ${(err as Error).message}` };
    }
  },
  destination: {
    batchSize: 1,
    urls: (c) => [c.url],
    async deliver(batch, ctx): Promise<DeliveryResult[]> {
      return Promise.all(
        batch.map(async (item): Promise<DeliveryResult> => {
          try {
            return await send(ctx.config.url, item, ctx.secrets, ctx.http, () => new Date());
          } catch (err) {
            // Network failures, time-outs and egress refusals (DNS may change): all retried.
            return { status: 'retry', error: (err as Error).message };
          }
        }),
      );
    },
  },
});
