// The HTTP surface around the resources: request ids, health, readiness, metrics, OpenAPI, docs,
// error shape, and the promise that secrets never reach a response or a log line.
import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from './helpers/app.ts';

let t: TestApp;

beforeAll(async () => {
  t = await startTestApp();
});
afterAll(() => t?.close());

describe('operations endpoints', () => {
  it('answers /healthz and /readyz', async () => {
    const health = await t.call('GET', '/healthz');
    expect(health.statusCode).toBe(200);
    expect(health.json()).toEqual({ status: 'ok' });
    const ready = await t.call('GET', '/readyz');
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toEqual({ status: 'ready' });
  });

  it('serves Prometheus metrics with HTTP latency histograms by route template', async () => {
    const org = await t.organization('Metrics');
    await t.call('GET', '/v1/users/usr_00000000000000000000000000000000', { token: org.token });
    const res = await t.call('GET', '/metrics');
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toContain('text/plain');
    expect(res.body).toContain('# TYPE interchange_http_request_duration_seconds histogram');
    expect(res.body).toMatch(
      /interchange_http_request_duration_seconds_count\{method="GET",route="\/v1\/users\/:id",status_code="404"\} 1/,
    );
    expect(res.body).toContain('interchange_process_resident_memory_bytes');
  });

  it('publishes an OpenAPI 3.1 document generated from the schemas, and a docs page', async () => {
    const res = await t.call('GET', '/openapi.json');
    expect(res.statusCode).toBe(200);
    const doc = res.json();
    expect(doc.openapi).toBe('3.1.0');
    for (const path of [
      '/oauth/token',
      '/v1/organizations',
      '/v1/organizations/{id}',
      '/v1/api-clients',
      '/v1/api-clients/{id}/rotate-secret',
      '/v1/users',
      '/v1/users/{id}',
      '/v1/users/by-external-id/{platform}/{external_id}',
      '/healthz',
      '/readyz',
    ]) {
      expect(doc.paths, path).toHaveProperty([path]);
    }
    const createUser = doc.paths['/v1/users'].post;
    expect(createUser.security).toEqual([{ bearerAuth: [] }]);
    expect(JSON.stringify(createUser.requestBody)).toContain('external_ids');
    expect(doc.components.schemas).toHaveProperty('User');
    expect(doc.components.schemas).toHaveProperty('Error');
    expect(doc.components.securitySchemes.oauth2.flows.clientCredentials.tokenUrl).toBe('/oauth/token');

    const docs = await t.call('GET', '/docs/');
    expect(docs.statusCode).toBe(200);
    expect(docs.headers['content-type']).toContain('text/html');
    expect(docs.body).toContain('swagger');
  });
});

describe('metrics behind INTERCHANGE_METRICS_TOKEN', () => {
  const TOKEN = 'mtk_7f3c9a21e4b85d60c1a2';
  const WRONG = 'mtk_7f3c9a21e4b85d60c1a3';
  let m: TestApp;

  beforeAll(async () => {
    m = await startTestApp({ INTERCHANGE_METRICS_TOKEN: TOKEN, LOG_LEVEL: 'trace' });
  });
  afterAll(() => m?.close());

  it('is open without the setting, and says so in the OpenAPI document', async () => {
    expect((await t.call('GET', '/metrics')).statusCode).toBe(200);
    const op = (await t.call('GET', '/openapi.json')).json().paths['/metrics'].get;
    expect(op.security).toEqual([]);
    expect(op.description).toContain('INTERCHANGE_METRICS_TOKEN');
  });

  it('answers 401 unauthorized without a bearer token', async () => {
    const basic = `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}`;
    const headerSets: Record<string, string>[] = [{}, { authorization: basic }];
    for (const headers of headerSets) {
      const res = await m.call('GET', '/metrics', { headers });
      expect(res.statusCode).toBe(401);
      expect(res.headers['www-authenticate']).toBe('Bearer realm="metrics"');
      expect(res.json()).toEqual({
        error: {
          code: 'unauthorized',
          message: 'a metrics token is required: Authorization: Bearer <token>',
        },
      });
    }
  });

  it('answers 401 invalid_token for a wrong token, its prefix, or an API access token', async () => {
    const org = await m.organization('Scraper');
    for (const token of [WRONG, TOKEN.slice(0, -1), `${TOKEN}x`, org.token]) {
      const res = await m.call('GET', '/metrics', { token });
      expect(res.statusCode, token).toBe(401);
      expect(res.headers['www-authenticate']).toBe('Bearer realm="metrics", error="invalid_token"');
      expect(res.json().error.code).toBe('invalid_token');
      expect(res.body).not.toContain('interchange_');
    }
  });

  it('serves Prometheus text for the right token, in process and over a socket', async () => {
    const res = await m.call('GET', '/metrics', { headers: { authorization: `bearer ${TOKEN}` } });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toContain('text/plain');
    expect(res.body).toMatch(/^# HELP /);
    expect(res.body).toContain('# TYPE interchange_http_request_duration_seconds histogram');

    const address = await m.app.server.listen({ port: 0, host: '127.0.0.1' });
    const scraped = await fetch(`${address}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(scraped.status).toBe(200);
    expect(await scraped.text()).toContain('interchange_process_resident_memory_bytes');
    const refused = await fetch(`${address}/metrics`);
    expect(refused.status).toBe(401);
    expect(refused.headers.get('www-authenticate')).toBe('Bearer realm="metrics"');
  });

  it('keeps /healthz and /readyz open, and documents the token in OpenAPI', async () => {
    expect((await m.call('GET', '/healthz')).statusCode).toBe(200);
    expect((await m.call('GET', '/readyz')).statusCode).toBe(200);
    const doc = (await m.call('GET', '/openapi.json')).json();
    expect(doc.paths['/metrics'].get.security).toEqual([{ metricsToken: [] }]);
    expect(doc.paths['/healthz'].get.security).toBeUndefined();
    expect(doc.components.securitySchemes.metricsToken).toMatchObject({ type: 'http', scheme: 'bearer' });
  });

  it('logs refused scrapes without the token, right or wrong', async () => {
    await m.call('GET', '/metrics', { token: WRONG });
    await m.call('GET', '/metrics', { token: TOKEN });
    const logs = m.logs();
    expect(logs).toContain('metrics scrape refused');
    expect(logs).not.toContain(TOKEN);
    expect(logs).not.toContain(WRONG);
    expect(logs).not.toContain('7f3c9a21');
  });
});

describe('request ids', () => {
  it('gives every response an X-Request-Id, echoing a sane one from the caller', async () => {
    const generated = await t.call('GET', '/healthz');
    expect(generated.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    const echoed = await t.call('GET', '/v1/users', { headers: { 'x-request-id': 'trace-abc.123' } });
    expect(echoed.headers['x-request-id']).toBe('trace-abc.123');
    const logLine = t
      .logs()
      .split('\n')
      .find((l) => l.includes('trace-abc.123'));
    expect(logLine && JSON.parse(logLine).request_id).toBe('trace-abc.123');
    const rejected = await t.call('GET', '/healthz', { headers: { 'x-request-id': 'bad id with spaces' } });
    expect(rejected.headers['x-request-id']).not.toBe('bad id with spaces');
  });
});

describe('errors', () => {
  it('answers unknown routes with a JSON 404', async () => {
    const res = await t.call('GET', '/v1/nothing-here');
    expect(res.statusCode).toBe(404);
    expect(res.json()).toEqual({
      error: { code: 'route_not_found', message: 'no route for GET /v1/nothing-here' },
    });
  });

  it('answers an unsupported content type with 415', async () => {
    const org = await t.organization('ContentType');
    const res = await t.call('POST', '/v1/users', {
      token: org.token,
      body: '<user><email>a@b.c</email></user>',
      headers: { 'content-type': 'application/xml' },
    });
    expect(res.statusCode).toBe(415);
    expect(res.json().error.code).toBe('unsupported_media_type');
  });
});

describe('secrets stay secret', () => {
  it('never puts a client secret or an access token in a later response or any log line', async () => {
    const adminToken = await t.token(t.admin);
    const org = await t.organization('Secretive');
    const created = await t.call('POST', '/v1/api-clients', { token: org.token, body: { name: 'second' } });
    const secret: string = created.json().client_secret;
    const clientId: string = created.json().id;
    const token = await t.token({ clientId, clientSecret: secret });
    // Send the secret the ways a careless caller might: Basic auth, a form body, a JSON body.
    await t.app.server.inject({
      method: 'POST',
      url: '/oauth/token',
      headers: { authorization: `Basic ${Buffer.from(`${clientId}:${secret}`).toString('base64')}` },
      payload: { grant_type: 'client_credentials' },
    });
    await t.app.server.inject({
      method: 'POST',
      url: '/oauth/token',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: `grant_type=client_credentials&client_id=${clientId}&client_secret=${secret}x`,
    });
    const responses = [
      await t.call('GET', `/v1/api-clients/${clientId}`, { token }),
      await t.call('GET', '/v1/api-clients', { token }),
      await t.call('GET', `/v1/api-clients?organization_id=${org.id}`, { token: adminToken }),
      await t.call('PATCH', `/v1/api-clients/${clientId}`, { token, body: { name: 'renamed' } }),
      await t.call('GET', '/v1/users', { token }),
    ];
    for (const res of responses) {
      expect(res.statusCode, res.body).toBe(200);
      expect(res.body).not.toContain(secret);
      expect(res.body).not.toContain('secret_hash');
    }
    const logs = t.logs();
    expect(logs.length).toBeGreaterThan(1000);
    for (const value of [secret, token, adminToken, org.client.clientSecret, t.admin.clientSecret]) {
      expect(logs).not.toContain(value);
    }
    // The signing key is sealed at rest: the stored value is ciphertext with a key id.
    const rows = await t.app.store.db.query.signingKeys.findMany();
    expect(rows.length).toBeGreaterThan(0);
    for (const row of rows) expect(row.secret).toMatch(/^v1\.[0-9a-f]{16}\./);
  });
});

describe('readiness when the database is gone', () => {
  it('answers /readyz 503 database_unavailable, while /healthz still answers', async () => {
    const other = await startTestApp();
    try {
      await other.app.store.close();
      const ready = await other.call('GET', '/readyz');
      expect(ready.statusCode).toBe(503);
      expect(ready.json().error.code).toBe('database_unavailable');
      expect(ready.headers['retry-after']).toBe('5');
      expect((await other.call('GET', '/healthz')).statusCode).toBe(200);
    } finally {
      await other.app.server.close();
      await other.db.drop();
    }
  });

  it('answers webhooks and API calls 503 database_unavailable with Retry-After, never 500', async () => {
    const other = await startTestApp();
    try {
      const org = await other.organization('Outage');
      const shop = await other.call('POST', '/v1/installations', {
        token: org.token,
        body: {
          connector: 'shopify',
          config: { shopDomain: 'outage.myshopify.com' },
          secrets: { clientSecret: 'shpss_outage' },
        },
      });
      expect(shop.statusCode).toBe(201);
      await other.app.store.close();
      const body = '{"id":1}';
      const hook = await other.call('POST', `/hooks/${shop.json().id}`, {
        body,
        headers: {
          'content-type': 'application/json',
          'x-shopify-topic': 'orders/create',
          'x-shopify-shop-domain': 'outage.myshopify.com',
          'x-shopify-hmac-sha256': createHmac('sha256', 'shpss_outage').update(body).digest('base64'),
        },
      });
      const list = await other.call('GET', '/v1/events', { token: org.token });
      for (const res of [hook, list]) {
        expect(res.statusCode, res.body).toBe(503);
        expect(res.json().error.code).toBe('database_unavailable');
        expect(res.headers['retry-after']).toBe('5');
      }
    } finally {
      await other.app.server.close();
      await other.db.drop();
    }
  });
});

describe('requests the HTTP parser refuses', () => {
  /** Writes `raw` on a fresh connection and returns everything the server answers. */
  async function rawExchange(raw: string): Promise<string> {
    const { connect } = await import('node:net');
    const address = t.app.server.server.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1');
      let answer = '';
      socket.on('data', (chunk) => {
        answer += chunk.toString('utf8');
      });
      socket.on('close', () => resolve(answer));
      socket.on('error', reject);
      socket.write(raw);
    });
  }

  it('answers headers over 16 KiB and malformed HTTP in the API error shape', async () => {
    if (!t.app.server.server.listening) await t.app.server.listen({ port: 0, host: '127.0.0.1' });
    const huge = await rawExchange(
      `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
    );
    expect(huge).toMatch(/^HTTP\/1\.1 431 /);
    expect(JSON.parse(huge.slice(huge.indexOf('\r\n\r\n') + 4))).toEqual({
      error: { code: 'headers_too_large', message: 'the request headers exceed 16 KiB' },
    });
    const garbled = await rawExchange('NOT HTTP AT ALL\r\n\r\n');
    expect(garbled).toMatch(/^HTTP\/1\.1 400 /);
    expect(JSON.parse(garbled.slice(garbled.indexOf('\r\n\r\n') + 4)).error.code).toBe('bad_request');
  });
});
