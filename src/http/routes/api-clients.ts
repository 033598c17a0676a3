// /v1/api-clients: OAuth2 clients. An organization's client manages its own organization's
// clients (never granting more than it holds); an admin client manages any, and admin clients.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { ApiClient } from '../../tenancy/api-clients.ts';
import { scopeSchema, TIER_LIMITS, tierSchema } from '../../tenancy/scopes.ts';
import { principalOf } from '../auth.ts';
import { AUTHENTICATED, errors, PAGE, PATH, READS_BODY } from '../error-responses.ts';
import {
  bearer,
  idParams,
  iso,
  listOf,
  listQuery,
  presentPage,
  timestamp,
  withExamples,
} from '../schemas.ts';

const apiClientSchema = z
  .object({
    id: z.string().describe('the OAuth2 client_id'),
    organization_id: z.string().nullable().describe('null for an admin client'),
    name: z.string(),
    scopes: z.array(scopeSchema),
    tier: tierSchema,
    rate_limit_per_hour: z.number().int(),
    created_at: timestamp,
    updated_at: timestamp,
    last_used_at: timestamp.nullable(),
  })
  .meta({ id: 'ApiClient' });

const withSecret = apiClientSchema
  .extend({ client_secret: z.string().describe('shown only in this response: store it now') })
  .meta({ id: 'ApiClientWithSecret' });

const createInput = z.strictObject({
  name: z.string().trim().min(1).max(200),
  organization_id: z
    .string()
    .nullable()
    .optional()
    .describe(
      "admin only: the organization to create the client in; null makes an admin client; default: the caller's own",
    ),
  scopes: z
    .array(scopeSchema)
    .min(1)
    .optional()
    .describe('default: every organization scope the caller may grant'),
  tier: tierSchema.optional().describe(`requests per hour: ${JSON.stringify(TIER_LIMITS)}`),
});

const createBody = withExamples(createInput, {
  orderSync: {
    summary: "A client of the caller's organization that sends and reads events",
    value: { name: 'Order sync', scopes: ['events:read', 'events:write'], tier: 'basic' },
  },
  forOrganization: {
    summary: "An admin client making an organization's first client",
    value: {
      name: 'Acme backend',
      organization_id: 'org_0192f3a4b5c67d8e9f0a1b2c3d4e5f60',
      tier: 'professional',
    },
  },
});

const updateBody = withExamples(
  z.strictObject({
    name: z.string().trim().min(1).max(200).optional(),
    scopes: z.array(scopeSchema).min(1).optional(),
    tier: tierSchema.optional(),
  }),
  {
    readOnly: { summary: 'Reduce to reading events', value: { scopes: ['events:read'] } },
  },
);

const present = (c: ApiClient) => ({
  id: c.id,
  organization_id: c.organizationId,
  name: c.name,
  scopes: c.scopes,
  tier: c.tier,
  rate_limit_per_hour: TIER_LIMITS[c.tier],
  created_at: iso(c.createdAt),
  updated_at: iso(c.updatedAt),
  last_used_at: c.lastUsedAt ? iso(c.lastUsedAt) : null,
});

const tags = ['API clients'];
const read = { scope: 'api_clients:read' as const, allowAdmin: true };
const write = { scope: 'api_clients:write' as const, allowAdmin: true };

export const apiClientRoutes: FastifyPluginAsyncZod = async (app) => {
  const clients = app.services.apiClients;

  app.post(
    '/v1/api-clients',
    {
      config: write,
      schema: {
        tags,
        operationId: 'createApiClient',
        summary: 'Create an API client; its secret is in this response only',
        security: bearer,
        body: createBody,
        response: {
          201: withSecret,
          ...errors(AUTHENTICATED, READS_BODY, 'scope_escalation', 'organization_not_found'),
        },
      },
    },
    async (req, reply) => {
      const p = principalOf(req);
      const { client, secret } = await clients.create(p, {
        name: req.body.name,
        organizationId: req.body.organization_id === undefined ? p.organizationId : req.body.organization_id,
        scopes: req.body.scopes,
        tier: req.body.tier,
      });
      return reply.code(201).send({ ...present(client), client_secret: secret });
    },
  );

  app.get(
    '/v1/api-clients',
    {
      config: read,
      schema: {
        tags,
        operationId: 'listApiClients',
        summary: 'List API clients',
        security: bearer,
        querystring: listQuery.extend({
          organization_id: z.string().max(100).optional().describe('admin only: filter'),
        }),
        response: { 200: listOf(apiClientSchema), ...errors(AUTHENTICATED, PAGE) },
      },
    },
    async (req) =>
      presentPage(
        await clients.list(principalOf(req), {
          limit: req.query.limit,
          cursor: req.query.cursor,
          organizationId: req.query.organization_id,
        }),
        present,
      ),
  );

  app.get(
    '/v1/api-clients/:id',
    {
      config: read,
      schema: {
        tags,
        operationId: 'getApiClient',
        summary: 'Get an API client',
        security: bearer,
        params: idParams,
        response: { 200: apiClientSchema, ...errors(AUTHENTICATED, PATH, 'api_client_not_found') },
      },
    },
    async (req) => present(await clients.get(principalOf(req), req.params.id)),
  );

  app.patch(
    '/v1/api-clients/:id',
    {
      config: write,
      schema: {
        tags,
        operationId: 'updateApiClient',
        summary: "Change an API client's name, scopes or tier",
        security: bearer,
        params: idParams,
        body: updateBody,
        response: {
          200: apiClientSchema,
          ...errors(AUTHENTICATED, PATH, READS_BODY, 'api_client_not_found', 'scope_escalation'),
        },
      },
    },
    async (req) => present(await clients.update(principalOf(req), req.params.id, req.body)),
  );

  app.post(
    '/v1/api-clients/:id/rotate-secret',
    {
      config: write,
      schema: {
        tags,
        operationId: 'rotateApiClientSecret',
        summary: 'Replace the client secret; the old one stops working at once',
        security: bearer,
        params: idParams,
        response: {
          200: withSecret,
          ...errors(AUTHENTICATED, PATH, READS_BODY, 'api_client_not_found', 'scope_escalation'),
        },
      },
    },
    async (req) => {
      const { client, secret } = await clients.rotateSecret(principalOf(req), req.params.id);
      return { ...present(client), client_secret: secret };
    },
  );

  app.delete(
    '/v1/api-clients/:id',
    {
      config: write,
      schema: {
        tags,
        operationId: 'deleteApiClient',
        summary: 'Delete an API client; its tokens stop working at once',
        security: bearer,
        params: idParams,
        response: {
          204: z.null(),
          ...errors(AUTHENTICATED, PATH, READS_BODY, 'api_client_not_found', 'scope_escalation'),
        },
      },
    },
    async (req, reply) => {
      await clients.remove(principalOf(req), req.params.id);
      return reply.code(204).send(null);
    },
  );
};
