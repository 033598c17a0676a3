// /v1/organizations: the tenants, managed by admin clients.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Organization } from '../../tenancy/organizations.ts';
import {
  bearer,
  errorResponses,
  idParams,
  iso,
  listOf,
  listQuery,
  presentPage,
  timestamp,
} from '../schemas.ts';

const organizationSchema = z
  .object({ id: z.string(), name: z.string(), created_at: timestamp, updated_at: timestamp })
  .meta({ id: 'Organization' });

const organizationInput = z.strictObject({ name: z.string().trim().min(1).max(200) });

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
        summary: 'Create an organization',
        security: bearer,
        body: organizationInput,
        response: { 201: organizationSchema, ...errorResponses },
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
        summary: 'List organizations',
        security: bearer,
        querystring: listQuery,
        response: { 200: listOf(organizationSchema), ...errorResponses },
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
        summary: 'Get an organization',
        security: bearer,
        params: idParams,
        response: { 200: organizationSchema, ...errorResponses },
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
        summary: 'Rename an organization',
        security: bearer,
        params: idParams,
        body: organizationInput.partial(),
        response: { 200: organizationSchema, ...errorResponses },
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
        summary: 'Delete an organization and everything it owns',
        security: bearer,
        params: idParams,
        response: { 204: z.null(), ...errorResponses },
      },
    },
    async (req, reply) => {
      await orgs.remove(req.params.id);
      return reply.code(204).send(null);
    },
  );
};
