// /openapi.json as a client generator reads it: valid OpenAPI 3.1, a stable camelCase operationId
// on every operation, only the error statuses each operation can answer (each described with its
// codes), and examples of the main request bodies that fit their schemas and that the API takes.
import { promises as dns } from 'node:dns';
import { validate } from '@readme/openapi-parser';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { ERROR_STATUS } from '../src/errors.ts';
import { withExamples } from '../src/http/schemas.ts';
import { startTestApp, type TestApp } from './helpers/app.ts';
import { type ApiOperation, type OpenApiDoc, operations } from './reliability/openapi.ts';

/** The operationIds: generated clients name their methods after them, so they never change. */
const OPERATION_IDS = {
  'GET /healthz': 'getHealth',
  'GET /readyz': 'getReadiness',
  'GET /metrics': 'getMetrics',
  'POST /oauth/token': 'issueToken',
  'POST /hooks/{target}': 'receiveWebhook',
  'POST /v1/organizations': 'createOrganization',
  'GET /v1/organizations': 'listOrganizations',
  'GET /v1/organizations/{id}': 'getOrganization',
  'PATCH /v1/organizations/{id}': 'updateOrganization',
  'DELETE /v1/organizations/{id}': 'deleteOrganization',
  'POST /v1/api-clients': 'createApiClient',
  'GET /v1/api-clients': 'listApiClients',
  'GET /v1/api-clients/{id}': 'getApiClient',
  'PATCH /v1/api-clients/{id}': 'updateApiClient',
  'DELETE /v1/api-clients/{id}': 'deleteApiClient',
  'POST /v1/api-clients/{id}/rotate-secret': 'rotateApiClientSecret',
  'POST /v1/users': 'createUser',
  'GET /v1/users': 'listUsers',
  'GET /v1/users/by-external-id/{platform}/{external_id}': 'getUserByExternalId',
  'GET /v1/users/{id}': 'getUser',
  'PATCH /v1/users/{id}': 'updateUser',
  'DELETE /v1/users/{id}': 'deleteUser',
  'GET /v1/connectors': 'listConnectors',
  'GET /v1/connectors/{id}': 'getConnector',
  'POST /v1/installations': 'createInstallation',
  'GET /v1/installations': 'listInstallations',
  'GET /v1/installations/{id}': 'getInstallation',
  'PATCH /v1/installations/{id}': 'updateInstallation',
  'DELETE /v1/installations/{id}': 'deleteInstallation',
  'POST /v1/installations/{id}/test': 'testInstallation',
  'POST /v1/installations/{id}/rotate-secret': 'rotateInstallationSecret',
  'POST /v1/installations/{id}/recover': 'recoverInstallation',
  'GET /v1/installations/{id}/requests': 'listInboundRequests',
  'GET /v1/events': 'listEvents',
  'POST /v1/events': 'sendEvent',
  'GET /v1/events/{id}': 'getEvent',
  'POST /v1/events/{id}/replay': 'replayEvent',
  'GET /v1/inbound-requests/{id}': 'getInboundRequest',
  'GET /v1/inbound-requests/{id}/body': 'getInboundRequestBody',
  'GET /v1/deliveries': 'listDeliveries',
  'GET /v1/deliveries/{id}': 'getDelivery',
  'POST /v1/deliveries/{id}/retry': 'retryDelivery',
  'GET /v1/stats': 'getDeliveryStats',
};

/** RFC 6749 §5.2's error codes, which the token endpoint's errors carry. */
const OAUTH_CODES = [
  'invalid_request',
  'invalid_client',
  'invalid_grant',
  'unauthorized_client',
  'unsupported_grant_type',
  'invalid_scope',
  'temporarily_unavailable',
];

let t: TestApp;
let doc: OpenApiDoc;
let ops: ApiOperation[];
const byId = (id: string) => {
  const op = ops.find((o) => o.operationId === id);
  if (!op) throw new Error(`no operation ${id}`);
  return op;
};
const statusesOf = (op: ApiOperation) => [...op.responses.keys()];
/** The operations that declare `status`, by operationId. */
const declaring = (status: number) =>
  ops
    .filter((op) => op.responses.has(status))
    .map((op) => op.operationId)
    .sort();

beforeAll(async () => {
  t = await startTestApp();
  doc = (await t.call('GET', '/openapi.json')).json();
  ops = operations(doc);
});
afterAll(() => t?.close());

describe('the OpenAPI document', () => {
  it('is valid OpenAPI 3.1', async () => {
    const result = await validate(structuredClone(doc) as never);
    expect(result.valid ? [] : result.errors).toEqual([]);
  });

  it('gives every operation its stable, unique, camelCase operationId', () => {
    const ids = Object.fromEntries(ops.map((op) => [op.key, op.operationId]));
    expect(ids).toEqual(OPERATION_IDS);
    for (const id of Object.values(ids)) expect(id).toMatch(/^[a-z]+(?:[A-Z][a-z0-9]*)+$/);
    expect(new Set(Object.values(ids)).size).toBe(ops.length);
  });

  it("describes each error status with codes of that status, in the API's error shape", () => {
    const problems: string[] = [];
    for (const op of ops) {
      for (const [status, codes] of op.responses) {
        if (status < 400) continue;
        const where = `${op.operationId} ${status}`;
        if (codes.length === 0) problems.push(`${where} lists no code`);
        const schema =
          doc.paths[op.path]?.[op.method.toLowerCase()]?.responses?.[String(status)]?.content?.[
            'application/json'
          ]?.schema;
        const oauth = op.operationId === 'issueToken' && status < 500;
        expect(schema, where).toEqual({ $ref: `#/components/schemas/${oauth ? 'OAuthError' : 'Error'}` });
        for (const code of codes) {
          const fits = oauth
            ? OAUTH_CODES.includes(code)
            : ERROR_STATUS[code as keyof typeof ERROR_STATUS] === status;
          if (!fits) problems.push(`${where} lists ${code}, not a code of that status`);
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it('declares on every /v1 operation what authentication, rate limits and the database may answer', () => {
    for (const op of ops.filter((o) => o.path.startsWith('/v1/'))) {
      const where = op.operationId;
      expect(op.responses.get(401), where).toEqual(expect.arrayContaining(['unauthorized', 'invalid_token']));
      expect(op.responses.get(403), where).toContain('insufficient_scope');
      expect(op.responses.get(429), where).toEqual(['rate_limited']);
      expect(op.responses.get(503), where).toEqual(
        expect.arrayContaining(['database_unavailable', 'secret_key_unavailable']),
      );
      // The query string is input on every operation (text the database cannot store is refused).
      expect(op.responses.get(400), where).toContain('validation_failed');
      // A body is read by every POST, PATCH and DELETE, and by no GET.
      const readsBody = op.method !== 'GET';
      expect(op.responses.has(413), where).toBe(readsBody);
      expect(op.responses.has(415), where).toBe(readsBody);
      expect(op.responses.get(400)?.includes('invalid_json'), where).toBe(readsBody);
    }
  });

  it('declares the statuses of conflicts, gone objects and overload only where they can happen', () => {
    expect(declaring(409)).toEqual(
      [
        'createInstallation',
        'createUser',
        'getUserByExternalId',
        'retryDelivery',
        'sendEvent',
        'updateInstallation',
        'updateUser',
      ].sort(),
    );
    expect(declaring(410)).toEqual(['getInboundRequestBody', 'receiveWebhook']);
    expect(
      ops.filter((op) => op.responses.get(503)?.includes('overloaded')).map((op) => op.operationId),
    ).toEqual(['receiveWebhook', 'sendEvent']);
    // Refused on the connection before any operation: in the API's description, not per operation.
    for (const status of [408, 431, 500]) expect(declaring(status), String(status)).toEqual([]);
    expect(JSON.stringify((doc as { info?: unknown }).info)).toMatch(
      /408.*request_timeout.*431.*headers_too_large/,
    );
    // A list without a path parameter finds nothing missing; a path id can be.
    for (const op of ops.filter((o) => o.path.startsWith('/v1/'))) {
      if (op.pathParams.length > 0) expect(op.responses.has(404), op.operationId).toBe(true);
      else if (op.method === 'GET') expect(op.responses.has(404), op.operationId).toBe(false);
    }
    expect(statusesOf(byId('getHealth'))).toEqual([200]);
    expect(statusesOf(byId('getReadiness'))).toEqual([200, 503]);
    expect(statusesOf(byId('issueToken'))).toEqual([200, 400, 401, 429, 503]);
  });
});

describe('request body examples', () => {
  /** The named examples of an operation's JSON request body. */
  const examplesOf = (operationId: string) => {
    const op = byId(operationId);
    const media = doc.paths[op.path]?.[op.method.toLowerCase()]?.requestBody?.content?.['application/json'];
    return media?.examples ?? {};
  };
  const example = (operationId: string, name: string) => {
    const found = examplesOf(operationId)[name];
    if (!found) throw new Error(`${operationId} has no example ${name}`);
    return structuredClone(found.value) as Record<string, unknown>;
  };
  const MAIN = [
    'issueToken',
    'createOrganization',
    'updateOrganization',
    'createApiClient',
    'updateApiClient',
    'createUser',
    'updateUser',
    'createInstallation',
    'updateInstallation',
    'recoverInstallation',
    'sendEvent',
  ];

  it('come with the main request bodies, each fitting its JSON Schema in the document', () => {
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats.default(ajv);
    const problems: string[] = [];
    for (const operationId of MAIN) {
      const op = byId(operationId);
      const named = Object.entries(examplesOf(operationId));
      if (named.length === 0) problems.push(`${operationId} has no example`);
      // The body's schema with the document's components, for its $refs.
      const check = ajv.compile({ ...op.body, components: doc.components });
      for (const [name, { summary, value }] of named) {
        if (!summary) problems.push(`${operationId} ${name} has no summary`);
        if (!check(value)) problems.push(`${operationId} ${name}: ${ajv.errorsText(check.errors)}`);
      }
    }
    expect(problems).toEqual([]);
    expect(Object.keys(examplesOf('createInstallation'))).toEqual(
      expect.arrayContaining(['webhookDestination', 'shopifySource']),
    );
  });

  it('are refused when they do not fit, before the server starts', () => {
    const schema = z.strictObject({ name: z.string().min(1) });
    expect(() => withExamples(schema, { empty: { summary: 'no name', value: { name: '' } } })).toThrow(
      /the example empty does not fit its schema/,
    );
    const kept = withExamples(schema, { ada: { summary: 'a name', value: { name: 'Ada' } } });
    expect(kept.parse({ name: 'Ada' })).toEqual({ name: 'Ada' });
  });

  it('are taken by the API as they are', async () => {
    // The example hosts resolve to a public address (nothing is sent to them: they are only vetted).
    const lookup = vi
      .spyOn(dns, 'lookup')
      .mockImplementation((async () => [{ address: '93.184.215.14', family: 4 }]) as never);
    try {
      const adminToken = await t.token(t.admin);
      const org = await t.organization('Examples', { tier: 'enterprise' });
      const call = async (
        operationId: string,
        name: string,
        value: unknown,
        options: { token?: string; path?: Record<string, string>; headers?: Record<string, string> } = {},
      ) => {
        const op = byId(operationId);
        const path = op.path.replace(/\{(\w+)\}/g, (_m, p: string) => options.path?.[p] ?? '');
        const res = await t.call(op.method as 'POST', path, {
          token: options.token ?? org.token,
          body: value,
          headers: options.headers,
        });
        expect(res.statusCode, `${operationId} ${name}: ${res.body}`).toBeLessThan(300);
        return res.json() as { id: string };
      };

      await call('issueToken', 'credentialsInBody', {
        ...example('issueToken', 'credentialsInBody'),
        client_id: org.client.clientId,
        client_secret: org.client.clientSecret,
      });
      const basic = Buffer.from(`${org.client.clientId}:${org.client.clientSecret}`).toString('base64');
      await call('issueToken', 'basicAuth', example('issueToken', 'basicAuth'), {
        headers: { authorization: `Basic ${basic}` },
      });

      const created = await call(
        'createOrganization',
        'organization',
        example('createOrganization', 'organization'),
        {
          token: adminToken,
        },
      );
      await call('updateOrganization', 'rename', example('updateOrganization', 'rename'), {
        token: adminToken,
        path: { id: created.id },
      });

      const client = await call('createApiClient', 'orderSync', example('createApiClient', 'orderSync'));
      await call(
        'createApiClient',
        'forOrganization',
        { ...example('createApiClient', 'forOrganization'), organization_id: created.id },
        { token: adminToken },
      );
      await call('updateApiClient', 'readOnly', example('updateApiClient', 'readOnly'), {
        path: { id: client.id },
      });

      const user = await call('createUser', 'customer', example('createUser', 'customer'));
      await call('updateUser', 'traitsAndIds', example('updateUser', 'traitsAndIds'), {
        path: { id: user.id },
      });

      for (const name of Object.keys(examplesOf('sendEvent')))
        await call('sendEvent', name, example('sendEvent', name));

      const installed: Record<string, string> = {};
      for (const name of Object.keys(examplesOf('createInstallation')))
        installed[name] = (await call('createInstallation', name, example('createInstallation', name))).id;
      await call('updateInstallation', 'subscription', example('updateInstallation', 'subscription'), {
        path: { id: installed.webhookDestination as string },
      });
      await call('updateInstallation', 'secret', example('updateInstallation', 'secret'), {
        path: { id: installed.shopifySource as string },
      });
      await call('recoverInstallation', 'lastDay', example('recoverInstallation', 'lastDay'), {
        path: { id: installed.webhookDestination as string },
      });
      expect(lookup).toHaveBeenCalled();
    } finally {
      lookup.mockRestore();
    }
  });
});
