// Tenant isolation, generated from /openapi.json: organization A owns one object of every kind
// (users, an installation of every connector, events, deliveries made by a running worker, API
// clients); organization B calls every operation that takes an id with A's ids, every list and
// create operation with A's ids wherever a parameter names an object, and must get 404 (403 where
// a scope is missing) and never a byte of A's data. A route or parameter the mapping below does
// not know fails the test: a new route is covered, or someone extends the mapping.
import { randomBytes, randomInt } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MixpanelSim, startMixpanelSim } from '../../sim/mixpanel.ts';
import { shopifyCustomer, shopifyOrder, signShopifyWebhook } from '../../sim/shopify.ts';
import { startTestApp, type TestApp } from '../helpers/app.ts';
import { type Receiver, startReceiver } from '../helpers/receiver.ts';
import { type ApiOperation, exampleOf, loadOpenApi, type OpenApiDoc, operations } from './openapi.ts';
import { report } from './support.ts';

/** Every string of A's that B may see contains it, or is listed in `forbidden` beside it. */
const MARK = `alpha${randomBytes(5).toString('hex')}`;
const SHOPIFY_CUSTOMER = `7${randomInt(10 ** 10, 10 ** 11)}`;
const PORTAL = `9${randomInt(10 ** 9, 10 ** 10)}`;
const WOO_STORE = `${MARK}.example.com`;

type Kind = 'organization' | 'apiClient' | 'user' | 'installation' | 'event' | 'inboundRequest' | 'delivery';
type Caller = 'A' | 'B' | 'admin';
type Expect = 'not_found' | 'forbidden' | 'public' | 'signed';

interface Answer {
  status: number;
  text: string;
  json: { error?: { code?: string } } & Record<string, unknown>;
}

let t: TestApp;
let base: string;
let doc: OpenApiDoc;
let receiver: Receiver;
let mixpanel: MixpanelSim;
const tokens = {} as Record<Caller, string>;
let bSecret = '';
/** A's objects by kind. */
const ids: Record<Kind, string[]> = {
  organization: [],
  apiClient: [],
  user: [],
  installation: [],
  event: [],
  inboundRequest: [],
  delivery: [],
};
/** Destinations of A (webhook, mixpanel): their ids are the one thing /metrics shows, by design. */
const destinations: string[] = [];
const externalIds: Array<[platform: string, id: string]> = [];
let userEmail = '';
let connectorIds: string[] = [];
/** A's strings without MARK in them: ids, generated secrets, tokens, numeric external ids. */
const forbidden: string[] = [];

const figures = {
  operations: 0,
  withPathParams: 0,
  callsByB: 0,
  statusesOfB: new Map<number, number>(),
  listAndCreateCalls: 0,
  controls: 0,
  leaks: 0,
};

async function call(caller: Caller | 'none', method: string, path: string, body?: unknown): Promise<Answer> {
  const headers: Record<string, string> = {};
  if (caller !== 'none') headers.authorization = `Bearer ${tokens[caller]}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${base}${path}`, {
    method,
    headers,
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  const text = `${[...res.headers].map(([k, v]) => `${k}: ${v}`).join('\n')}\n\n${await res.text()}`;
  let json: Answer['json'] = {};
  try {
    json = JSON.parse(text.slice(text.indexOf('\n\n') + 2));
  } catch {}
  return { status: res.status, text, json };
}

async function ok(
  caller: Caller,
  method: string,
  path: string,
  body?: unknown,
): Promise<Record<string, unknown>> {
  const res = await call(caller, method, path, body);
  if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${res.text}`);
  return res.json;
}

/**
 * A's strings in an answer (headers and body). An error may quote what the request carried ("user
 * usr_… not found"); a success may not hold A's id even so (B's object must not point at A's).
 */
function leaked(answer: Answer, request: string): string[] {
  const echo = answer.status >= 400;
  return [MARK, ...forbidden].filter((s) => answer.text.includes(s) && !(echo && request.includes(s)));
}

const resourceOf = (path: string) => path.split('/')[path.startsWith('/v1/') ? 2 : 1] ?? '';

// ---------------------------------------------------------------------------------------------
// The mapping: which of A's objects each path parameter, query parameter and body field names.

/** Path parameters, by `<resource>:<param,param>`: the values to try, and what B must get. */
const PATH_PARAMS: Record<
  string,
  {
    values: () => Array<Record<string, string>>;
    expect: Expect;
    /** Query strings each value is tried with too, besides none. */
    queries?: () => string[];
  }
> = {
  'organizations:id': { values: () => ids.organization.map((id) => ({ id })), expect: 'forbidden' },
  'api-clients:id': { values: () => ids.apiClient.map((id) => ({ id })), expect: 'not_found' },
  'users:id': { values: () => ids.user.map((id) => ({ id })), expect: 'not_found' },
  'users:platform,external_id': {
    values: () => externalIds.map(([platform, id]) => ({ platform, external_id: id })),
    expect: 'not_found',
    queries: () => [`account=${encodeURIComponent(WOO_STORE)}`],
  },
  'installations:id': { values: () => ids.installation.map((id) => ({ id })), expect: 'not_found' },
  'events:id': { values: () => ids.event.map((id) => ({ id })), expect: 'not_found' },
  'inbound-requests:id': { values: () => ids.inboundRequest.map((id) => ({ id })), expect: 'not_found' },
  'deliveries:id': { values: () => ids.delivery.map((id) => ({ id })), expect: 'not_found' },
  // The catalog is the same for every tenant: nothing of A's to find there.
  'connectors:id': { values: () => connectorIds.map((id) => ({ id })), expect: 'public' },
  // Public and provider-signed: B's unsigned call must be refused and reveal nothing.
  'hooks:target': { values: () => ids.installation.map((target) => ({ target })), expect: 'signed' },
};

/** Query parameters: A's values to filter with, or [] for those that name no object. */
const QUERY_PARAMS: Record<string, () => string[]> = {
  // Every list call asks for a page of 100; a cursor is only "after this id", within the caller's rows.
  limit: () => [],
  cursor: () => [],
  organization_id: () => ids.organization,
  installation_id: () => ids.installation,
  destination: () => destinations,
  event: () => ids.event,
  email: () => [userEmail],
  connector: () => ['shopify', 'webhook'],
  type: () => ['custom.alpha.signup', 'order.*'],
  // The subject of A's custom event.
  subject: () => [`signup-${MARK}`],
  status: () => ['succeeded'],
  // The platform account of an external id (by-external-id): A's store.
  account: () => [WOO_STORE],
  since: () => ['2000-01-01T00:00:00Z'],
  until: () => ['2100-01-01T00:00:00Z'],
};

/** Body fields that name another object (B's request points at A's), or a credential. */
const BODY_FIELDS: Record<string, () => unknown[]> = {
  organization_id: () => ids.organization,
  user_id: () => ids.user,
  // An idempotency key of A's: B sending it must get an event of its own, never A's.
  id: () => [`key-${MARK}`],
  client_id: () => ids.apiClient,
  client_secret: () => [bSecret],
  grant_type: () => ['client_credentials'],
  type: () => ['custom.beta.probe'],
};

/** Requests for an operation with path parameters, or a message when the mapping lacks it. */
function pathCalls(op: ApiOperation) {
  const key = `${resourceOf(op.path)}:${op.pathParams.map((p) => p.name).join(',')}`;
  const entry = PATH_PARAMS[key];
  if (!entry) return { key, missing: `no mapping for ${op.key} (path parameters "${key}")` };
  const unknownQuery = op.queryParams.filter((q) => !(q.name in QUERY_PARAMS));
  if (unknownQuery.length > 0)
    return {
      key,
      missing: `no mapping for query parameter(s) ${unknownQuery.map((q) => q.name)} of ${op.key}`,
    };
  const body = op.body ? exampleOf(doc, op.body) : undefined;
  const calls = entry.values().flatMap((values) => {
    const path = op.path.replace(/\{([^}]+)\}/g, (_m, name: string) =>
      encodeURIComponent(values[name] ?? ''),
    );
    return [path, ...(entry.queries?.() ?? []).map((q) => `${path}?${q}`)].map((p) => ({ path: p, body }));
  });
  return { key, expect: entry.expect, calls };
}

/** Body fields that name an object: `id`, `*_id`. */
const REFERENCE = /^id$|_id$/;

/** Requests for an operation without path parameters: one per A's value of each object-naming parameter. */
function otherCalls(op: ApiOperation): { missing?: string; calls: Array<{ path: string; body?: unknown }> } {
  const unknownQuery = op.queryParams.filter((q) => !(q.name in QUERY_PARAMS));
  const props = Object.keys((op.body?.properties ?? {}) as Record<string, unknown>);
  const unknownBody = props.filter((p) => REFERENCE.test(p) && !(p in BODY_FIELDS));
  if (unknownQuery.length + unknownBody.length > 0) {
    const names = [...unknownQuery.map((q) => q.name), ...unknownBody];
    return { missing: `no mapping for parameter(s) ${names.join(', ')} of ${op.key}`, calls: [] };
  }
  const calls: Array<{ path: string; body?: unknown }> = [];
  const example = op.body ? (exampleOf(doc, op.body) as Record<string, unknown>) : undefined;
  const fixed = Object.fromEntries(
    props.filter((p) => p in BODY_FIELDS && !REFERENCE.test(p)).map((p) => [p, BODY_FIELDS[p]?.()[0]]),
  );
  const body = example && { ...example, ...fixed };
  const page = op.queryParams.some((q) => q.name === 'limit') ? 'limit=100' : '';
  calls.push({ path: page ? `${op.path}?${page}` : op.path, body });
  for (const q of op.queryParams)
    for (const value of QUERY_PARAMS[q.name]?.() ?? [])
      calls.push({ path: `${op.path}?${page && `${page}&`}${q.name}=${encodeURIComponent(value)}`, body });
  for (const p of props.filter((name) => REFERENCE.test(name)))
    for (const value of BODY_FIELDS[p]?.() ?? [])
      calls.push({ path: op.path, body: { ...body, [p]: value } });
  return { calls };
}

// ---------------------------------------------------------------------------------------------

/** A's objects as A sees them, to show B's calls changed none of them. */
async function snapshotOfA(): Promise<string> {
  const reads: Array<[Caller, string]> = [
    ['admin', `/v1/organizations/${ids.organization[0]}`],
    ...ids.apiClient.map((id): [Caller, string] => ['A', `/v1/api-clients/${id}`]),
    ...ids.user.map((id): [Caller, string] => ['A', `/v1/users/${id}`]),
    ...ids.installation.map((id): [Caller, string] => ['A', `/v1/installations/${id}`]),
    ...ids.event.map((id): [Caller, string] => ['A', `/v1/events/${id}`]),
    ...ids.inboundRequest.map((id): [Caller, string] => ['A', `/v1/inbound-requests/${id}`]),
    ...ids.installation.map((id): [Caller, string] => ['A', `/v1/installations/${id}/requests?limit=100`]),
    ...ids.delivery.map((id): [Caller, string] => ['A', `/v1/deliveries/${id}`]),
    ['A', '/v1/users?limit=100'],
    ['A', '/v1/api-clients?limit=100'],
    ['A', '/v1/installations?limit=100'],
    ['A', '/v1/events?limit=100'],
    ['A', '/v1/deliveries?limit=100'],
  ];
  const out: unknown[] = [];
  for (const [caller, path] of reads) out.push([path, await ok(caller, 'GET', path)]);
  return JSON.stringify(out);
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await fn();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  receiver = await startReceiver();
  mixpanel = await startMixpanelSim({ projectToken: `mp${MARK}token` });
  t = await startTestApp({ INTERCHANGE_EGRESS_ALLOW: '127.0.0.1/32', LOG_LEVEL: 'error' });
  await t.app.server.listen({ port: 0, host: '127.0.0.1' });
  base = `http://127.0.0.1:${(t.app.server.server.address() as AddressInfo).port}`;
  doc = await loadOpenApi(base);
  t.app.startWorker();
  tokens.admin = await t.token(t.admin);

  // Organization A, with one object of every kind, every string of it marked.
  const a = await t.organization(`Org ${MARK}`, { tier: 'enterprise' });
  tokens.A = a.token;
  ids.organization.push(a.id);
  ids.apiClient.push(a.client.clientId);
  forbidden.push(a.id, a.client.clientId, a.client.clientSecret, a.token);
  const client = await ok('A', 'POST', '/v1/api-clients', { name: `client ${MARK}` });
  ids.apiClient.push(String(client.id));
  forbidden.push(String(client.id), String(client.client_secret));

  userEmail = `ada.${MARK}@example.com`;
  const user = await ok('A', 'POST', '/v1/users', {
    email: userEmail,
    name: `Ada ${MARK}`,
    traits: { plan: `plan-${MARK}` },
    external_ids: {
      shopify: SHOPIFY_CUSTOMER,
      stripe: `cus_${MARK}`,
      [`woocommerce@${WOO_STORE}`]: `w${SHOPIFY_CUSTOMER}`,
    },
  });
  ids.user.push(String(user.id));
  externalIds.push(
    ['shopify', SHOPIFY_CUSTOMER],
    ['stripe', `cus_${MARK}`],
    ['woocommerce', `w${SHOPIFY_CUSTOMER}`],
  );
  forbidden.push(String(user.id), SHOPIFY_CUSTOMER, PORTAL);

  const shopDomain = `${MARK}.myshopify.com`;
  const shopSecret = `shpss_${MARK}`;
  const installs: Array<Record<string, unknown>> = [
    { connector: 'shopify', config: { shopDomain }, secrets: { clientSecret: shopSecret } },
    {
      connector: 'stripe',
      config: { accountId: `acct_${MARK}` },
      secrets: { webhookSecret: `whsec_${MARK}` },
    },
    {
      connector: 'woocommerce',
      config: { siteUrl: `https://${MARK}.example.com` },
      secrets: { webhookSecret: `wc-${MARK}` },
    },
    {
      connector: 'hubspot',
      config: { portalId: PORTAL, appId: `app-${MARK}` },
      secrets: { clientSecret: `hs-${MARK}` },
    },
    { connector: 'webhook', config: { url: `${receiver.url}?tenant=${MARK}` } },
    {
      connector: 'mixpanel',
      config: { region: 'eu', host: mixpanel.url, auth: 'project_token' },
      secrets: { projectToken: `mp${MARK}token` },
    },
  ];
  const catalog = (await ok('A', 'GET', '/v1/connectors')).data as Array<{ id: string }>;
  connectorIds = catalog.map((c) => c.id);
  // An installation of every connector the hub ships: a new connector needs one here.
  expect(installs.map((i) => i.connector).sort()).toEqual([...connectorIds].sort());
  for (const body of installs) {
    const created = await ok('A', 'POST', '/v1/installations', {
      ...body,
      name: `${body.connector} ${MARK}`,
    });
    ids.installation.push(String(created.id));
    forbidden.push(String(created.id), ...Object.values(created.revealed_secrets as Record<string, string>));
    if (['webhook', 'mixpanel'].includes(String(body.connector))) destinations.push(String(created.id));
  }

  // Events: one sent to the API, one from a signed Shopify webhook (with its inbound request).
  const custom = await ok('A', 'POST', '/v1/events', {
    type: 'custom.alpha.signup',
    subject: `signup-${MARK}`,
    data: { marker: MARK },
    user_id: user.id,
    id: `key-${MARK}`,
  });
  const order = shopifyOrder({
    customer: shopifyCustomer({ id: BigInt(SHOPIFY_CUSTOMER), email: userEmail }),
  });
  const signed = signShopifyWebhook({ topic: 'orders/create', shopDomain, body: order, secret: shopSecret });
  const hook = await fetch(`${base}/hooks/${ids.installation[0]}`, {
    method: 'POST',
    headers: signed.headers,
    body: signed.body,
  });
  const accepted = (await hook.json()) as { event_ids: string[]; request_id: string };
  expect(hook.status).toBe(200);
  ids.event.push(String(custom.id), ...accepted.event_ids);
  ids.inboundRequest.push(accepted.request_id);
  forbidden.push(String(custom.id), ...accepted.event_ids, accepted.request_id);

  // Deliveries, made by the worker, settled before B starts (so A's objects stand still).
  const deliveries = await waitFor('A’s deliveries to succeed', async () => {
    const list = (await ok('A', 'GET', '/v1/deliveries?limit=100')).data as Array<{
      id: string;
      status: string;
    }>;
    return list.length >= 3 && list.every((d) => d.status === 'succeeded') ? list : undefined;
  });
  for (const d of deliveries) ids.delivery.push(d.id);
  forbidden.push(...ids.delivery);

  // Organization B, with objects of its own, and every organization scope.
  const b = await t.organization('Org B', { tier: 'enterprise' });
  tokens.B = b.token;
  bSecret = b.client.clientSecret;
  await ok('B', 'POST', '/v1/users', {
    email: 'bea@example.org',
    name: 'Bea',
    external_ids: { shopify: '1' },
  });
  await ok('B', 'POST', '/v1/installations', {
    connector: 'shopify',
    config: { shopDomain: 'beta.myshopify.com' },
    secrets: { clientSecret: 'shpss_beta' },
  });
  await ok('B', 'POST', '/v1/events', { type: 'custom.beta.signup', data: {} });
});

afterAll(async () => {
  report('tenant isolation (generated from /openapi.json)', {
    'operations in /openapi.json': figures.operations,
    'with path parameters': figures.withPathParams,
    "B's calls on A's ids": figures.callsByB,
    "statuses B got on A's ids": [...figures.statusesOfB.entries()]
      .sort(([x], [y]) => x - y)
      .map(([s, n]) => `${s}:${n}`)
      .join(' '),
    'list and create calls by B': figures.listAndCreateCalls,
    "A's objects": Object.entries(ids)
      .map(([k, v]) => `${k} ${v.length}`)
      .join(', '),
    'controls (same call by the owner)': figures.controls,
    leaks: figures.leaks,
  });
  await t?.close();
  await receiver?.close();
  await mixpanel?.close();
});

describe('tenant isolation', () => {
  it("B gets 404 (403 for a scope) on every operation with A's ids, sees none of A's data, changes nothing", async () => {
    const ops = operations(doc);
    figures.operations = ops.length;
    const missing: string[] = [];
    const problems: string[] = [];
    const controls: Array<{ op: ApiOperation; path: string; body?: unknown }> = [];
    const before = await snapshotOfA();
    const deliveredBefore = receiver.received.length;
    const judge = (op: ApiOperation, path: string, body: unknown, res: Answer, expect: Expect | 'list') => {
      const request = `${path} ${JSON.stringify(body ?? '')}`;
      const where = `${op.method} ${path} ${body === undefined ? '' : JSON.stringify(body)} → ${res.status} ${res.text.slice(-300)}`;
      const leaks = leaked(res, request);
      if (leaks.length > 0) {
        figures.leaks++;
        problems.push(`B saw A's ${leaks.join(', ')}: ${where}`);
      }
      const code = res.json.error?.code ?? '';
      const fine =
        expect === 'not_found'
          ? res.status === 404 && code.endsWith('_not_found') && code !== 'route_not_found'
          : expect === 'forbidden'
            ? res.status === 403
            : expect === 'public'
              ? res.status === 200
              : expect === 'signed'
                ? res.status === 401 || (res.status === 404 && code === 'installation_not_found')
                : res.status < 500 && res.status !== 404;
      if (!fine) problems.push(`expected ${expect}: ${where}`);
    };

    for (const op of ops) {
      if (op.pathParams.length === 0) continue;
      figures.withPathParams++;
      const planned = pathCalls(op);
      if ('missing' in planned) {
        missing.push(planned.missing as string);
        continue;
      }
      for (const { path, body } of planned.calls) {
        const res = await call('B', op.method, path, planned.expect === 'signed' ? '{}' : body);
        figures.callsByB++;
        figures.statusesOfB.set(res.status, (figures.statusesOfB.get(res.status) ?? 0) + 1);
        judge(op, path, body, res, planned.expect);
        if (planned.expect === 'not_found' || planned.expect === 'forbidden')
          controls.push({ op, path, body });
      }
    }
    for (const op of ops) {
      if (op.pathParams.length > 0) continue;
      const planned = otherCalls(op);
      if (planned.missing) missing.push(planned.missing);
      for (const { path, body } of planned.calls) {
        const res = await call('B', op.method, path, body);
        figures.listAndCreateCalls++;
        const request = `${path} ${JSON.stringify(body ?? '')}`;
        const leaks = leaked(res, request);
        // An operator endpoint: Prometheus gauges are labelled by destination (every tenant's).
        const allowed = op.path === '/metrics' ? leaks.filter((s) => !destinations.includes(s)) : leaks;
        if (allowed.length > 0) {
          figures.leaks++;
          problems.push(
            `B saw A's ${allowed.join(', ')}: ${op.method} ${path} → ${res.status} ${res.text.slice(-300)}`,
          );
        }
        if (res.status >= 500) problems.push(`${op.method} ${path} → ${res.status} ${res.text.slice(-300)}`);
      }
    }

    // Nothing of A's changed, and no delivery went to A's endpoint because of B.
    await new Promise((r) => setTimeout(r, 500));
    expect(await snapshotOfA()).toEqual(before);
    expect(receiver.received.length).toBe(deliveredBefore);

    // Controls: the owner's same call finds the object (so B's 404 was about the tenant, not the id
    // or the body). Deletions last, the organization last of all.
    const order = (c: (typeof controls)[number]) =>
      (c.op.method === 'DELETE' ? 10 : 0) +
      (c.op.path.startsWith('/v1/organizations') ? 5 : 0) +
      (c.path.includes(ids.apiClient[0] as string) ? 1 : 0);
    for (const c of controls.sort((x, y) => order(x) - order(y))) {
      const owner: Caller = c.op.path.startsWith('/v1/organizations') ? 'admin' : 'A';
      const res = await call(owner, c.op.method, c.path, c.body);
      figures.controls++;
      const code = res.json.error?.code ?? '';
      const found =
        res.status < 300 ||
        (res.status < 500 &&
          !code.endsWith('_not_found') &&
          !['validation_failed', 'insufficient_scope', 'organization_required'].includes(code));
      if (!found)
        problems.push(
          `control by the owner did not find it: ${c.op.method} ${c.path} → ${res.status} ${res.text.slice(-300)}`,
        );
    }

    expect(
      missing,
      'extend PATH_PARAMS / QUERY_PARAMS / BODY_FIELDS in test/reliability/isolation.test.ts',
    ).toEqual([]);
    expect(problems).toEqual([]);
    expect(figures.callsByB).toBeGreaterThan(20);
  });
});
