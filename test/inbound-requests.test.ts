// The inbound requests API: an installation's verified webhooks as received (accepted, duplicate,
// rejected with their code), filters and pages, one request's metadata, its raw body byte for byte,
// and nothing of another organization's.
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendShopifyWebhook, shopifyOrder } from '../sim/shopify.ts';
import { startTestApp, type TestApp } from './helpers/app.ts';

const SHOP = 'requests-store.myshopify.com';
const SECRET = 'shpss_requests_secret';
let t: TestApp;
let base: string;
let acme: Awaited<ReturnType<TestApp['organization']>>;
let globex: Awaited<ReturnType<TestApp['organization']>>;
let installationId: string;
/** Sent in this order: accepted, its duplicate, rejected (malformed JSON), rejected (unknown topic). */
const sent: Array<{ status: number; requestId: string | null; body: string }> = [];
let before: string;

beforeAll(async () => {
  t = await startTestApp();
  await t.app.server.listen({ port: 0, host: '127.0.0.1' });
  base = `http://127.0.0.1:${(t.app.server.server.address() as AddressInfo).port}`;
  acme = await t.organization('Acme');
  globex = await t.organization('Globex');
  const created = await t.call('POST', '/v1/installations', {
    token: acme.token,
    body: { connector: 'shopify', config: { shopDomain: SHOP }, secrets: { clientSecret: SECRET } },
  });
  expect(created.statusCode, created.body).toBe(201);
  installationId = created.json().id;
  const url = `${base}/hooks/${installationId}`;
  const order = {
    topic: 'orders/create' as const,
    shopDomain: SHOP,
    secret: SECRET,
    eventId: 'evt-requests-1',
  };
  const first = await sendShopifyWebhook(url, { ...order, body: shopifyOrder({ id: 7001n }) });
  before = new Date().toISOString();
  const again = await sendShopifyWebhook(url, { ...order, body: shopifyOrder({ id: 7001n }) });
  const malformed = await sendShopifyWebhook(url, {
    topic: 'orders/create',
    shopDomain: SHOP,
    secret: SECRET,
    body: '{"id": 1, "oops"',
  });
  // Signed, but with no topic: nothing can be made of it (a topic without a canonical type would
  // be a raw provider event).
  const unknownTopic = await sendShopifyWebhook(url, {
    topic: '',
    shopDomain: SHOP,
    secret: SECRET,
    body: '{"id": 2}',
  });
  for (const r of [first, again, malformed, unknownTopic]) {
    const json = JSON.parse(r.body);
    sent.push({ status: r.status, requestId: json.request_id ?? null, body: r.sent.body });
  }
});
afterAll(() => t?.close());

const list = async (query = '', token = acme.token) =>
  t.call('GET', `/v1/installations/${installationId}/requests${query}`, { token });

describe('inbound requests', () => {
  it('lists every verified request with its outcome, oldest first', async () => {
    expect(sent.map((s) => s.status)).toEqual([200, 200, 400, 400]);
    const res = await list();
    expect(res.statusCode, res.body).toBe(200);
    const page = res.json();
    expect(page.has_more).toBe(false);
    expect(
      page.data.map((r: Record<string, unknown>) => [r.status, r.error_code, r.event_count, r.body_kept]),
    ).toEqual([
      ['accepted', null, 1, true],
      ['duplicate', null, 0, false],
      ['rejected', 'payload_malformed', 0, true],
      ['rejected', 'topic_unknown', 0, true],
    ]);
    const [accepted] = page.data;
    expect(accepted.id).toBe(sent[0]?.requestId);
    expect(accepted).toMatchObject({
      installation_id: installationId,
      method: 'POST',
      path: `/hooks/${installationId}`,
      dedupe_key: `${SHOP}:orders/create:orders/7001`,
      body_size: Buffer.byteLength(sent[0]?.body ?? ''),
    });
    expect(accepted.headers['x-shopify-topic']).toBe('orders/create');
    expect(new Date(accepted.received_at).getTime()).toBeLessThanOrEqual(new Date(before).getTime());
  });

  it('filters by status and time, and pages with a cursor', async () => {
    const rejected = (await list('?status=rejected')).json().data;
    expect(rejected.map((r: { error_code: string }) => r.error_code)).toEqual([
      'payload_malformed',
      'topic_unknown',
    ]);
    for (const status of ['accepted', 'duplicate'])
      expect((await list(`?status=${status}`)).json().data.map((r: { status: string }) => r.status)).toEqual([
        status,
      ]);
    const since = (await list(`?since=${encodeURIComponent(before)}`)).json().data;
    expect(since.map((r: { status: string }) => r.status)).toEqual(['duplicate', 'rejected', 'rejected']);
    const future = (await list('?since=2999-01-01T00:00:00Z')).json().data;
    expect(future).toEqual([]);
    const all = (await list()).json().data.map((r: { id: string }) => r.id);
    const page1 = (await list('?limit=3')).json();
    expect(page1.data.map((r: { id: string }) => r.id)).toEqual(all.slice(0, 3));
    expect(page1.has_more).toBe(true);
    const page2 = (await list(`?limit=3&cursor=${page1.next_cursor}`)).json();
    expect(page2.data.map((r: { id: string }) => r.id)).toEqual(all.slice(3));
    expect(page2.next_cursor).toBeNull();
    const combined = (await list(`?status=rejected&since=${encodeURIComponent(before)}&limit=1`)).json();
    expect(combined.data[0].error_code).toBe('payload_malformed');
    const rest = (
      await list(
        `?status=rejected&since=${encodeURIComponent(before)}&limit=1&cursor=${combined.next_cursor}`,
      )
    ).json();
    expect(rest.data.map((r: { error_code: string }) => r.error_code)).toEqual(['topic_unknown']);
    for (const bad of ['?status=lost', '?since=yesterday', '?cursor=bm9wZQ', '?limit=0'])
      expect((await list(bad)).statusCode, bad).toBe(400);
  });

  it('gives one request, and its raw body byte for byte while kept', async () => {
    const [accepted, duplicate, malformed] = (await list()).json().data;
    const one = await t.call('GET', `/v1/inbound-requests/${accepted.id}`, { token: acme.token });
    expect(one.statusCode).toBe(200);
    expect(one.json()).toEqual(accepted);

    for (const [request, body] of [
      [accepted, sent[0]?.body],
      [malformed, sent[2]?.body],
    ]) {
      const res = await fetch(`${base}/v1/inbound-requests/${request.id}/body`, {
        headers: { authorization: `Bearer ${acme.token}` },
      });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('application/octet-stream');
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      expect(res.headers.get('x-original-content-type')).toBe('application/json');
      expect(Buffer.from(await res.arrayBuffer()).equals(Buffer.from(body ?? '', 'utf8'))).toBe(true);
    }
    const gone = await t.call('GET', `/v1/inbound-requests/${duplicate.id}/body`, { token: acme.token });
    expect(gone.statusCode).toBe(410);
    expect(gone.json().error.code).toBe('request_body_gone');
  });

  it("answers 404 for another organization's requests and installations, and for unknown ids", async () => {
    const [accepted] = (await list()).json().data;
    for (const path of [
      `/v1/inbound-requests/${accepted.id}`,
      `/v1/inbound-requests/${accepted.id}/body`,
      `/v1/installations/${installationId}/requests`,
    ]) {
      const res = await t.call('GET', path, { token: globex.token });
      expect(res.statusCode, path).toBe(404);
      // An error may quote the id asked for; never what A's request held.
      expect(res.body).not.toContain(SHOP);
    }
    for (const id of ['req_00000000000000000000000000000000', 'nope', 'evt_1'])
      expect((await t.call('GET', `/v1/inbound-requests/${id}`, { token: acme.token })).statusCode).toBe(404);
    const error = (await t.call('GET', '/v1/inbound-requests/nope', { token: acme.token })).json().error;
    expect(error.code).toBe('inbound_request_not_found');
  });
});
