// /v1/organizations: the tenants, managed by admin clients.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Organization } from '../../tenancy/organizations.ts';
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

const organizationSchema = z
  .object({ id: z.string(), name: z.string(), created_at: timestamp, updated_at: timestamp })
  .meta({ id: 'Organization' });

const organizationInput = z.strictObject({ name: z.string().trim().min(1).max(200) });

const createBody = withExamples(organizationInput, {
  organization: { summary: 'A tenant', value: { name: 'Acme Outdoor GmbH' } },
});

const updateBody = withExamples(organizationInput.partial(), {
  rename: { summary: 'A new name', value: { name: 'Acme Outdoor AG' } },
});

const present = (o: Organization) => ({
  id: o.id,
  name: o.name,
  created_at: iso(o.createdAt),
  updated_at: iso(o.updatedAt),
});

const tags = ['Organizations'];
const config = { scope: 'admin' as const };

export const organizationRoutes: FastifyPluginAsyncZod = async (app) => {
  const orgs = app.services.organizations;

  app.post(
    '/v1/organizations',
    {
      config,
      schema: {
        tags,
        operationId: 'createOrganization',
        summary: 'Create an organization',
        security: bearer,
        body: createBody,
        response: { 201: organizationSchema, ...errors(AUTHENTICATED, READS_BODY) },
      },
    },
    async (req, reply) => reply.code(201).send(present(await orgs.create(req.body))),
  );

  app.get(
    '/v1/organizations',
    {
      config,
      schema: {
        tags,
        operationId: 'listOrganizations',
        summary: 'List organizations',
        security: bearer,
        querystring: listQuery,
        response: { 200: listOf(organizationSchema), ...errors(AUTHENTICATED, PAGE) },
      },
    },
    async (req) => presentPage(await orgs.list(req.query), present),
  );

  app.get(
    '/v1/organizations/:id',
    {
      config,
      schema: {
        tags,
        operationId: 'getOrganization',
        summary: 'Get an organization',
        security: bearer,
        params: idParams,
        response: { 200: organizationSchema, ...errors(AUTHENTICATED, PATH, 'organization_not_found') },
      },
    },
    async (req) => present(await orgs.get(req.params.id)),
  );

  app.patch(
    '/v1/organizations/:id',
    {
      config,
      schema: {
        tags,
        operationId: 'updateOrganization',
        summary: 'Rename an organization',
        security: bearer,
        params: idParams,
        body: updateBody,
        response: {
          200: organizationSchema,
          ...errors(AUTHENTICATED, PATH, READS_BODY, 'organization_not_found'),
        },
      },
    },
    async (req) => present(await orgs.update(req.params.id, req.body)),
  );

  app.delete(
    '/v1/organizations/:id',
    {
      config,
      schema: {
        tags,
        operationId: 'deleteOrganization',
        summary: 'Delete an organization and everything it owns',
        security: bearer,
        params: idParams,
        response: { 204: z.null(), ...errors(AUTHENTICATED, PATH, READS_BODY, 'organization_not_found') },
      },
    },
    async (req, reply) => {
      await orgs.remove(req.params.id);
      return reply.code(204).send(null);
    },
  );
};
