// HubSpot simulator: webhook batches as a HubSpot app receives them (a JSON array of subscription
// events), signed with signature v3 over method + URI + body + timestamp, and sent over HTTP with
// HubSpot's headers (including the older X-HubSpot-Signature v1, which receivers should ignore).
import { createHash, createHmac, randomInt } from 'node:crypto';

export const HUBSPOT_USER_AGENT =
  'HubSpot Connect 2.0 (http://dev.hubspot.com/) (namespace: webhooks-nio-http-client) - WebhooksExecutorDaemon-executor';

export interface SimHubSpotEvent {
  eventId: number;
  subscriptionId: number;
  portalId: number;
  appId: number;
  occurredAt: number;
  subscriptionType: string;
  attemptNumber: number;
  objectId?: number;
  propertyName?: string;
  propertyValue?: string;
  changeSource: string;
  changeFlag?: string;
  sourceId?: string;
}

/** One subscription event; defaults look like a contact created in the CRM UI of portal 62515. */
export function hubspotEvent(
  subscriptionType: string,
  overrides: Partial<SimHubSpotEvent> = {},
): SimHubSpotEvent {
  const flag = subscriptionType.endsWith('.creation')
    ? 'NEW'
    : subscriptionType.endsWith('.deletion')
      ? 'DELETED'
      : undefined;
  return {
    eventId: randomInt(1, 2 ** 32),
    subscriptionId: 2_417_851,
    portalId: 62_515,
    appId: 54_321,
    occurredAt: Date.now() - 2_000,
    subscriptionType,
    attemptNumber: 0,
    objectId: 65_059_681_032,
    changeSource: 'CRM_UI',
    ...(flag ? { changeFlag: flag } : {}),
    sourceId: 'userId:45678',
    ...overrides,
  };
}

/** A property change of one contact property. */
export function hubspotPropertyChange(
  propertyName: string,
  propertyValue: string,
  overrides: Partial<SimHubSpotEvent> = {},
) {
  return hubspotEvent('contact.propertyChange', { propertyName, propertyValue, ...overrides });
}

/** The same batch as HubSpot retries it: same events, attemptNumber + 1. */
export function hubspotRetry(batch: SimHubSpotEvent[]): SimHubSpotEvent[] {
  return batch.map((e) => ({ ...e, attemptNumber: e.attemptNumber + 1 }));
}

const DECODE: Record<string, string> = {
  '3A': ':',
  '2F': '/',
  '3F': '?',
  '40': '@',
  '21': '!',
  '24': '$',
  '27': "'",
  '28': '(',
  '29': ')',
  '2A': '*',
  '2C': ',',
  '3B': ';',
};

/** HubSpot's documented v3 URI form: these twelve escapes decoded, every other one left alone. */
export function hubspotUriForSigning(url: string): string {
  return url.replace(/%([0-9A-Fa-f]{2})/g, (match, hex: string) => DECODE[hex.toUpperCase()] ?? match);
}

export interface HubSpotSigning {
  method?: string;
  /** The full URL HubSpot calls (the app's target URL), query string included. */
  url: string;
  body: string;
  secret: string;
  /** Epoch milliseconds; now by default. */
  timestamp?: number;
}

/** X-HubSpot-Signature-v3 for a request. */
export function signHubSpotV3({
  method = 'POST',
  url,
  body,
  secret,
  timestamp = Date.now(),
}: HubSpotSigning): string {
  const source = `${method}${hubspotUriForSigning(url)}${body}${timestamp}`;
  return createHmac('sha256', secret).update(source, 'utf8').digest('base64');
}

export interface HubSpotDelivery {
  url: string;
  events: SimHubSpotEvent[] | unknown;
  secret: string;
  timestamp?: number;
  /** Body override (bytes exactly as sent); otherwise JSON of `events`. */
  body?: string;
}

/** The body and headers HubSpot sends for a batch. */
export function hubspotWebhookRequest(delivery: HubSpotDelivery) {
  const body = delivery.body ?? JSON.stringify(delivery.events);
  const timestamp = delivery.timestamp ?? Date.now();
  const headers: Record<string, string> = {
    'Content-Type': 'application/json',
    'User-Agent': HUBSPOT_USER_AGENT,
    'X-HubSpot-Signature': createHash('sha256').update(`${delivery.secret}${body}`).digest('hex'),
    'X-HubSpot-Signature-Version': 'v1',
    'X-HubSpot-Signature-v3': signHubSpotV3({ url: delivery.url, body, secret: delivery.secret, timestamp }),
    'X-HubSpot-Request-Timestamp': String(timestamp),
    'X-HubSpot-Timeout-Millis': '10000',
  };
  return { body, headers };
}

/** POSTs a signed batch to `delivery.url`, as HubSpot delivers it. */
export async function sendHubSpotWebhook(delivery: HubSpotDelivery): Promise<Response> {
  const { body, headers } = hubspotWebhookRequest(delivery);
  return fetch(delivery.url, { method: 'POST', headers, body });
}
