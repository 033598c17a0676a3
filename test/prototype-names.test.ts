// Names that exist on every JavaScript object's prototype (`constructor`, `__proto__`,
// `toString`…) sent wherever the API looks a name up: event types, connector ids, subscription
// patterns, filter operators, scopes, tiers, platforms. Each is an ordinary unknown (or ordinary
// valid) name: answered with a stable code, never a 5xx.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from './helpers/app.ts';

/** Every property name an object literal inherits, plus the ones JSON parsers special-case. */
const PROTOTYPE_NAMES = [
  ...new Set([...Object.getOwnPropertyNames(Object.prototype), 'prototype', 'constructor', '__proto__']),
];

let t: TestApp;
let acme: Awaited<ReturnType<TestApp['organization']>>;
let adminToken: string;

beforeAll(async () => {
  t = await startTestApp();
  acme = await t.organization('Acme');
  adminToken = await t.token(t.admin);
});
afterAll(() => t?.close());

type Probe = (name: string) => Promise<{ statusCode: number; json(): { error?: { code: string } } }>;

/** Each route that looks up a name from the request, and the codes it may answer for a name it has no entry for. */
const probes: Array<[route: string, probe: Probe, codes: string[]]> = [
  [
    'POST /v1/events type',
    (name) => t.call('POST', '/v1/events', { token: acme.token, body: { type: name, data: {} } }),
    ['validation_failed'],
  ],
  [
    'POST /v1/events type custom.<name>',
    (name) => t.call('POST', '/v1/events', { token: acme.token, body: { type: `custom.${name}`, data: {} } }),
    ['validation_failed', 'created'],
  ],
  [
    'GET /v1/events?type=',
    (name) => t.call('GET', `/v1/events?type=${encodeURIComponent(name)}`, { token: acme.token }),
    ['validation_failed', 'ok'],
  ],
  [
    'POST /v1/installations connector',
    (name) =>
      t.call('POST', '/v1/installations', {
        token: acme.token,
        body: { connector: name, name: 'x', config: {}, secrets: {} },
      }),
    ['connector_not_found', 'validation_failed'],
  ],
  [
    'GET /v1/connectors/:id',
    (name) => t.call('GET', `/v1/connectors/${encodeURIComponent(name)}`, { token: acme.token }),
    ['connector_not_found'],
  ],
  [
    'POST /hooks/:target',
    (name) => t.call('POST', `/hooks/${encodeURIComponent(name)}`, { body: { id: 1 } }),
    ['installation_not_found'],
  ],
  [
    'POST /v1/installations subscription event_types',
    (name) =>
      t.call('POST', '/v1/installations', {
        token: acme.token,
        body: {
          connector: 'webhook',
          name: 'x',
          config: { url: 'https://example.com/hook' },
          subscription: { event_types: [name] },
        },
      }),
    ['event_type_unknown', 'validation_failed'],
  ],
  [
    'POST /v1/installations subscription filter operator',
    (name) =>
      t.call('POST', '/v1/installations', {
        token: acme.token,
        body: {
          connector: 'webhook',
          name: 'x',
          config: { url: 'https://example.com/hook' },
          subscription: { event_types: ['order.*'], filter: { total: { [`$${name}`]: 1 } } },
        },
      }),
    ['filter_invalid', 'invalid_json', 'validation_failed'],
  ],
  [
    'POST /oauth/token scope',
    (name) =>
      t.call('POST', '/oauth/token', {
        body: {
          grant_type: 'client_credentials',
          client_id: acme.client.clientId,
          client_secret: acme.client.clientSecret,
          scope: name,
        },
      }),
    ['invalid_scope', 'invalid_request'],
  ],
  [
    'POST /v1/api-clients tier',
    (name) =>
      t.call('POST', '/v1/api-clients', {
        token: adminToken,
        body: { name: 'x', organization_id: acme.id, tier: name },
      }),
    ['validation_failed'],
  ],
  [
    'POST /v1/api-clients scopes',
    (name) =>
      t.call('POST', '/v1/api-clients', {
        token: adminToken,
        body: { name: 'x', organization_id: acme.id, scopes: [name] },
      }),
    ['validation_failed'],
  ],
  [
    'GET /v1/deliveries?status=',
    (name) => t.call('GET', `/v1/deliveries?status=${encodeURIComponent(name)}`, { token: acme.token }),
    ['validation_failed'],
  ],
  [
    'POST /v1/users traits and external_ids',
    (name) =>
      t.call('POST', '/v1/users', {
        token: acme.token,
        body: { traits: { [name]: 1 }, external_ids: { [name]: `x-${name}` } },
      }),
    ['created', 'validation_failed', 'invalid_json'],
  ],
  [
    'GET /v1/users/by-external-id/:platform/:id',
    (name) =>
      t.call('GET', `/v1/users/by-external-id/${encodeURIComponent(name)}/${encodeURIComponent(name)}`, {
        token: acme.token,
      }),
    ['user_not_found', 'validation_failed'],
  ],
];

/** The answer's stable code: the error's, or `ok`/`created` for a success. */
function codeOf(res: Awaited<ReturnType<Probe>>): string {
  if (res.statusCode === 200) return 'ok';
  if (res.statusCode === 201) return 'created';
  return res.json().error?.code ?? (res.json() as { error?: string }).error ?? `status ${res.statusCode}`;
}

describe('prototype property names as input', () => {
  it.each(probes)('%s: a stable code, never a 5xx', async (_route, probe, codes) => {
    for (const name of PROTOTYPE_NAMES) {
      const res = await probe(name);
      expect(res.statusCode, `${name}: ${JSON.stringify(res.json())}`).toBeLessThan(500);
      expect(codes, name).toContain(codeOf(res));
    }
  });

  it('any event type built around a prototype name is a 201 or a 400, never a 5xx', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...PROTOTYPE_NAMES),
        fc.constantFrom('', 'custom.', 'order.', 'custom.x.'),
        fc.constantFrom('', '.created', '.x'),
        async (name, prefix, suffix) => {
          const type = `${prefix}${name}${suffix}`;
          const res = await t.call('POST', '/v1/events', { token: acme.token, body: { type, data: {} } });
          expect([201, 400], `${type}: ${res.body}`).toContain(res.statusCode);
          if (res.statusCode === 400) expect(res.json().error.code).toBe('validation_failed');
        },
      ),
      { numRuns: 60 },
    );
  });
});
