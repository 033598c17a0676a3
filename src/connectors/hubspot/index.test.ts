import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CaptureServer, inboundRequest, startCaptureServer } from '../../../sim/capture-server.ts';
import {
  type HubSpotDelivery,
  hubspotEvent,
  hubspotPropertyChange,
  hubspotRetry,
  hubspotWebhookRequest,
  sendHubSpotWebhook,
} from '../../../sim/hubspot.ts';
import { parseEventData } from '../../events/types.ts';
import { ConnectorError, type InboundRequest, parseJson } from '../sdk.ts';
import hubspot from './index.ts';
import { hubspotSignedUri } from './verify.ts';

const SECRET = 'f4c1a2b3-5d6e-4f70-8a9b-0c1d2e3f4a5b';
const INSTALLATION = 'ins_hubspot_test';
const URL_ = 'https://hub.example.com/hooks/hubspot';
const inbound = hubspot.inbound;
if (!inbound) throw new Error('the hubspot connector must receive webhooks');

function context(secret: string | null = SECRET) {
  return {
    installationId: INSTALLATION,
    config: { portalId: '62515' },
    secrets: secret === null ? {} : { clientSecret: secret },
    now: new Date(),
  };
}

async function receive(req: InboundRequest, secret: string | null = SECRET) {
  const ctx = context(secret);
  await inbound?.verify(req, ctx);
  const payload = inbound?.parse ? inbound.parse(req) : parseJson(req);
  const drafts = inbound?.normalize(req, payload, ctx) ?? [];
  return {
    dedupeKey: inbound?.dedupeKey(req, payload, ctx, drafts),
    partitionKey: inbound?.partitionKey(req, payload, ctx),
    drafts,
  };
}

async function errorCode(run: () => unknown): Promise<string> {
  try {
    await run();
  } catch (err) {
    if (err instanceof ConnectorError) return err.code;
    throw err;
  }
  return 'no error';
}

function delivery(
  events: unknown,
  extra: Partial<HubSpotDelivery> & { receivedAt?: Date } = {},
): InboundRequest {
  const url = extra.url ?? URL_;
  const { body, headers } = hubspotWebhookRequest({ url, events, secret: SECRET, ...extra });
  return inboundRequest({ url, headers, body, receivedAt: extra.receivedAt });
}

/** A v3 signature computed here, independently of the connector and the simulator. */
function v3(method: string, uri: string, body: string, timestamp: number, secret = SECRET): string {
  return createHmac('sha256', secret).update(`${method}${uri}${body}${timestamp}`).digest('base64');
}

describe('hubspot over HTTP', () => {
  let server: CaptureServer;
  const outcomes: string[] = [];

  beforeAll(async () => {
    server = await startCaptureServer(async (req) => {
      try {
        const { drafts } = await receive(req);
        outcomes.push(drafts.map((d) => d.type).join(','));
        return 200;
      } catch (err) {
        if (!(err instanceof ConnectorError)) throw err;
        outcomes.push(err.code);
        return err.code === 'signature_invalid' || err.code === 'timestamp_stale' ? 401 : 400;
      }
    });
  });
  afterAll(() => server.close());

  it('verifies a batch sent to a URL with encoded characters in its query', async () => {
    const url = `${server.url}/hooks/hubspot?next=https%3A%2F%2Fapp.example.com%2Fdone&label=a%20b%2Bc&who=it's(1)`;
    const res = await sendHubSpotWebhook({ url, events: [hubspotEvent('contact.creation')], secret: SECRET });
    expect(res.status).toBe(200);
    expect(outcomes.at(-1)).toBe('customer.created');
    // fetch sent the quote encoded; the signature was over the decoded form, as HubSpot's is.
    expect(server.requests.at(-1)?.url).toContain('who=it%27s(1)');
  });

  it('answers 401 to a batch signed with another secret', async () => {
    const res = await sendHubSpotWebhook({
      url: server.url,
      events: [hubspotEvent('contact.creation')],
      secret: 'x',
    });
    expect(res.status).toBe(401);
    expect(outcomes.at(-1)).toBe('signature_invalid');
  });
});

describe('hubspot signature v3', () => {
  const batch = [hubspotEvent('contact.creation')];

  it('decodes exactly the twelve documented escapes of the URI, in one pass', () => {
    const raw =
      'https://hub.example.com/hooks/hubspot?r=https%3a%2F%2Fa.example%2Fx%3Fy%40z&s=%21%24%27%28%29%2A%2C%3B';
    expect(hubspotSignedUri(raw)).toBe(
      "https://hub.example.com/hooks/hubspot?r=https://a.example/x?y@z&s=!$'()*,;",
    );
    expect(hubspotSignedUri('https://h/p?a=a%20b%2Bc%26d%3De%25f&b=%253A')).toBe(
      'https://h/p?a=a%20b%2Bc%26d%3De%25f&b=%253A',
    );
  });

  it('accepts a signature over the decoded URI and one over the URI as given, not a fully decoded one', async () => {
    const url = `${URL_}?next=https%3A%2F%2Fapp.example.com&q=a%20b`;
    const body = JSON.stringify(batch);
    const t = Date.now();
    const check = (signature: string) =>
      errorCode(() =>
        inbound.verify(
          inboundRequest({
            url,
            body,
            headers: { 'X-HubSpot-Signature-v3': signature, 'X-HubSpot-Request-Timestamp': String(t) },
          }),
          context(),
        ),
      );
    expect(await check(v3('POST', `${URL_}?next=https://app.example.com&q=a%20b`, body, t))).toBe('no error');
    expect(await check(v3('POST', url, body, t))).toBe('no error');
    expect(await check(v3('POST', `${URL_}?next=https://app.example.com&q=a b`, body, t))).toBe(
      'signature_invalid',
    );
    expect(await check(v3('GET', url, body, t))).toBe('signature_invalid');
  });

  it('rejects a wrong secret, a changed body and missing headers as signature_invalid', async () => {
    expect(await errorCode(() => inbound.verify(delivery(batch, { secret: 'other' }), context()))).toBe(
      'signature_invalid',
    );
    const tampered = delivery(batch);
    tampered.rawBody = Buffer.from(
      tampered.rawBody.toString().replace('"contact.creation"', '"contact.deletion"'),
    );
    expect(await errorCode(() => inbound.verify(tampered, context()))).toBe('signature_invalid');
    for (const name of ['x-hubspot-signature-v3', 'x-hubspot-request-timestamp']) {
      const req = delivery(batch);
      const headers = Object.fromEntries(Object.entries(req.headers).filter(([k]) => k !== name));
      expect(await errorCode(() => inbound.verify({ ...req, headers }, context()))).toBe('signature_invalid');
    }
    const req = delivery(batch);
    req.headers = { ...req.headers, 'x-hubspot-request-timestamp': '1.7e12' };
    expect(await errorCode(() => inbound.verify(req, context()))).toBe('signature_invalid');
  });

  it('refuses to verify without the client secret', async () => {
    expect(await errorCode(() => inbound.verify(delivery(batch), context(null)))).toBe('secret_missing');
  });

  it('rejects a valid signature more than 5 minutes old (or ahead) as timestamp_stale', async () => {
    const receivedAt = new Date('2026-03-01T12:00:00Z');
    const at = (offsetMs: number) =>
      delivery(batch, { timestamp: receivedAt.getTime() + offsetMs, receivedAt });
    expect(await errorCode(() => inbound.verify(at(-300_001), context()))).toBe('timestamp_stale');
    expect(await errorCode(() => inbound.verify(at(-300_000), context()))).toBe('no error');
    expect(await errorCode(() => inbound.verify(at(+300_001), context()))).toBe('timestamp_stale');
    const forged = delivery(batch, {
      timestamp: receivedAt.getTime() - 3_600_000,
      receivedAt,
      secret: 'other',
    });
    expect(await errorCode(() => inbound.verify(forged, context()))).toBe('signature_invalid');
  });
});

describe('hubspot normalize', () => {
  it('turns each contact event of a batch into a customer event', async () => {
    const events = [
      hubspotEvent('contact.creation', { objectId: 101 }),
      hubspotPropertyChange('email', 'ada@example.com', { objectId: 101 }),
      hubspotPropertyChange('firstname', 'Ada', { objectId: 101 }),
      hubspotPropertyChange('lastname', 'Lovelace', { objectId: 101 }),
      hubspotPropertyChange('phone', '+44 20 7946 0000', { objectId: 101 }),
      hubspotPropertyChange('hs_lead_status', 'OPEN', { objectId: 101 }),
      hubspotEvent('contact.deletion', { objectId: 102 }),
    ];
    const { drafts } = await receive(delivery(events));
    expect(drafts.map((d) => d.type)).toEqual([
      'customer.created',
      'customer.updated',
      'customer.updated',
      'customer.updated',
      'customer.updated',
      'customer.updated',
      'customer.deleted',
    ]);
    for (const d of drafts) expect(parseEventData(d.type, d.data).success).toBe(true);
    expect(drafts.map((d) => d.customerExternalId)).toEqual([
      '101',
      '101',
      '101',
      '101',
      '101',
      '101',
      '102',
    ]);
    const fields = drafts.slice(1, 6).map((d) => d.data);
    expect(fields[0]).toMatchObject({ customer_id: '101', email: 'ada@example.com' });
    expect(fields[1]).toMatchObject({ first_name: 'Ada' });
    expect(fields[2]).toMatchObject({ last_name: 'Lovelace' });
    expect(fields[3]).toMatchObject({ phone: '+44 20 7946 0000' });
    expect(Object.keys(fields[4] ?? {}).sort()).toEqual(['customer_id', 'external_ids', 'updated_at']);
    expect(drafts[6]?.data).toEqual({ customer_id: '102', external_ids: { [INSTALLATION]: '102' } });
    expect(drafts[0]).toMatchObject({
      subject: 'contacts/101',
      time: new Date(events[0]?.occurredAt ?? 0).toISOString(),
    });
  });

  it('keeps other subscription types as raw hubspot.* events, each keyed by its own event id', async () => {
    const deal = hubspotEvent('deal.creation', { objectId: 9 });
    const mixed = [deal, hubspotEvent('contact.creation', { objectId: 7 })];
    const { drafts } = await receive(delivery(mixed));
    expect(drafts.map((d) => [d.type, d.customerExternalId])).toEqual([
      ['hubspot.deal.creation', undefined],
      ['customer.created', '7'],
    ]);
    expect(drafts[0]).toMatchObject({
      subject: 'deals/9',
      data: { subscriptionType: 'deal.creation', objectId: 9, portalId: deal.portalId },
      dedupeKey: `${deal.portalId}:${deal.eventId}`,
    });
    const other = [hubspotEvent('company.propertyChange', { propertyName: 'name', propertyValue: 'Acme' })];
    const { drafts: only } = await receive(delivery(other));
    expect(only.map((d) => d.type)).toEqual(['hubspot.company.property_change']);
    expect(() => parseEventData(only[0]?.type ?? '', only[0]?.data)).not.toThrow();
  });

  it('rejects batches missing what the canonical event needs as payload_invalid', async () => {
    const { objectId: _objectId, ...noObject } = hubspotEvent('contact.creation');
    expect(await errorCode(() => receive(delivery([noObject])))).toBe('payload_invalid');
    const { portalId: _portalId, ...noPortal } = hubspotEvent('contact.creation');
    expect(await errorCode(() => receive(delivery([noPortal])))).toBe('payload_invalid');
    const { propertyName: _name, ...noName } = hubspotPropertyChange('email', 'a@b.c');
    expect(await errorCode(() => receive(delivery([noName])))).toBe('payload_invalid');
    expect(await errorCode(() => receive(delivery([])))).toBe('payload_invalid');
    expect(await errorCode(() => receive(delivery(hubspotEvent('contact.creation'))))).toBe(
      'payload_invalid',
    );
  });
});

describe('hubspot keys and routing', () => {
  it('keeps the de-duplication key across a retry (same events, next attempt, reordered, re-signed)', async () => {
    const batch = [hubspotEvent('contact.creation'), hubspotPropertyChange('email', 'a@example.com')];
    const first = await receive(delivery(batch, { timestamp: Date.now() - 60_000 }));
    const retry = await receive(delivery(hubspotRetry(batch).reverse()));
    expect(first.dedupeKey).toMatch(/^[0-9a-f]{64}$/);
    expect(retry.dedupeKey).toBe(first.dedupeKey);
    const other = await receive(delivery([hubspotEvent('contact.creation')]));
    expect(other.dedupeKey).not.toBe(first.dedupeKey);
  });

  it('orders by portal and routes /hooks/hubspot by portalId', async () => {
    const batch = [hubspotEvent('contact.creation', { portalId: 62515 })];
    expect((await receive(delivery(batch))).partitionKey).toBe('hubspot:62515');
    expect(inbound.routeKey?.(delivery(batch))).toBe('62515');
    const mixed = [...batch, hubspotEvent('contact.creation', { portalId: 99 })];
    expect(inbound.routeKey?.(delivery(mixed))).toBeUndefined();
    expect(inbound.routeKey?.(delivery(null, { body: 'not json' }))).toBeUndefined();
    expect(hubspot.routeKeyOf?.({ portalId: '62515' })).toBe('62515');
  });
});
