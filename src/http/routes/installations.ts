// /v1/installations: connectors configured for the organization. Secrets go in, never come out:
// responses list which secret keys are set.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { presentSettings, subscriptionInput } from '../../delivery/subscription.ts';
import { AppError } from '../../errors.ts';
import type { Installation } from '../../installations/installations.ts';
import { organizationOf } from '../auth.ts';
import {
  bearer,
  errorResponses,
  idParams,
  instant,
  iso,
  listOf,
  listQuery,
  presentPage,
  timestamp,
} from '../schemas.ts';

const installationSchema = z
  .object({
    id: z.string(),
    connector: z.string(),
    name: z.string(),
    status: z
      .enum(['active', 'disabled', 'uninstalled'])
      .describe('disabled: a destination that answered 410 or failed for too long; recover re-enables it'),
    disabled_reason: z.enum(['gone', 'failing']).nullable(),
    config: z.record(z.string(), z.unknown()),
    secrets_set: z
      .array(z.string())
      .describe('names of the secrets that are set; their values are never returned'),
    inbound_url: z
      .string()
      .nullable()
      .describe('where the provider sends webhooks; null when the connector takes none'),
    subscription: z
      .object({
        event_types: z.array(z.string()),
        filter: z.record(z.string(), z.unknown()).nullable(),
        ordered: z.boolean(),
        rate_limit: z.number().nullable(),
      })
      .nullable()
      .describe('destinations only: what they receive and how'),
    created_at: timestamp,
    updated_at: timestamp,
    disabled_at: timestamp.nullable(),
    uninstalled_at: timestamp.nullable(),
  })
  .meta({ id: 'Installation' });

const warningsSchema = z
  .array(
    z
      .object({
        code: z.string().describe('stable, e.g. `profile_updates_need_project_token`'),
        message: z.string(),
        path: z.string().optional().describe('the request field to change'),
      })
      .meta({ id: 'InstallationWarning' }),
  )
  .describe(
    'settings that were saved but keep some subscribed events from ever being delivered (they would fail and end dead): e.g. a Mixpanel destination taking customer events without the project token. Empty when there is nothing to fix.',
  );

const savedSchema = installationSchema.extend({ warnings: warningsSchema }).meta({ id: 'SavedInstallation' });

const createdSchema = installationSchema
  .extend({
    warnings: warningsSchema,
    revealed_secrets: z
      .record(z.string(), z.string())
      .describe('secrets the hub generated (a webhook signing secret): shown in this response only'),
  })
  .meta({ id: 'CreatedInstallation' });

const secretsInput = z.record(z.string(), z.unknown());

const createBody = z.strictObject({
  connector: z.string().max(100).describe('a connector id from GET /v1/connectors'),
  name: z.string().trim().min(1).max(200).optional(),
  config: z.record(z.string(), z.unknown()).optional(),
  secrets: secretsInput.optional(),
  subscription: subscriptionInput.optional().describe('destinations: default every event type'),
});

const updateBody = z.strictObject({
  name: z.string().trim().min(1).max(200).optional(),
  config: z.record(z.string(), z.unknown()).optional().describe('replaces the whole config'),
  secrets: secretsInput.optional().describe('merged; a null value removes that secret'),
  subscription: subscriptionInput.optional(),
});

const tags = ['Installations'];
const read = { scope: 'installations:read' as const };
const write = { scope: 'installations:write' as const };

export const installationRoutes: FastifyPluginAsyncZod = async (app) => {
  const service = app.services.installations;
  const present = (i: Installation) => ({
    id: i.id,
    connector: i.connectorId,
    name: i.name,
    status: i.status,
    disabled_reason: (i.disabledReason as 'gone' | 'failing' | null) ?? null,
    config: i.config,
    secrets_set: i.secretKeys,
    inbound_url: service.connectorOf(i.connectorId).inbound ? `${app.publicUrl}/hooks/${i.id}` : null,
    subscription: i.destination ? presentSettings(i.destination) : null,
    created_at: iso(i.createdAt),
    updated_at: iso(i.updatedAt),
    disabled_at: i.disabledAt ? iso(i.disabledAt) : null,
    uninstalled_at: i.uninstalledAt ? iso(i.uninstalledAt) : null,
  });

  app.post(
    '/v1/installations',
    {
      config: write,
      schema: {
        tags,
        summary: 'Install a connector',
        description:
          'An organization has at most `INTERCHANGE_MAX_DESTINATIONS` destinations (100 by default; uninstalled ones do not count): one more is refused with 409 `destination_limit_reached`.',
        security: bearer,
        body: createBody,
        response: { 201: createdSchema, ...errorResponses },
      },
    },
    async (req, reply) => {
      const created = await service.create(organizationOf(req), req.body);
      return reply.code(201).send({
        ...present(created),
        warnings: created.warnings,
        revealed_secrets: created.revealedSecrets,
      });
    },
  );

  app.get(
    '/v1/installations',
    {
      config: read,
      schema: {
        tags,
        summary: 'List installations',
        security: bearer,
        querystring: listQuery.extend({ connector: z.string().max(100).optional() }),
        response: { 200: listOf(installationSchema), ...errorResponses },
      },
    },
    async (req) => presentPage(await service.list(organizationOf(req), req.query), present),
  );

  app.get(
    '/v1/installations/:id',
    {
      config: read,
      schema: {
        tags,
        summary: 'Get an installation',
        security: bearer,
        params: idParams,
        response: { 200: installationSchema, ...errorResponses },
      },
    },
    async (req) => present(await service.get(organizationOf(req), req.params.id)),
  );

  app.patch(
    '/v1/installations/:id',
    {
      config: write,
      schema: {
        tags,
        summary: "Change an installation's name, config or secrets",
        security: bearer,
        params: idParams,
        body: updateBody,
        response: { 200: savedSchema, ...errorResponses },
      },
    },
    async (req) => {
      const updated = await service.update(organizationOf(req), req.params.id, req.body);
      return { ...present(updated), warnings: updated.warnings };
    },
  );

  app.delete(
    '/v1/installations/:id',
    {
      config: write,
      schema: {
        tags,
        summary: 'Delete an installation',
        security: bearer,
        params: idParams,
        response: { 204: z.null(), ...errorResponses },
      },
    },
    async (req, reply) => {
      await service.remove(organizationOf(req), req.params.id);
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/v1/installations/:id/test',
    {
      config: write,
      schema: {
        tags,
        summary: "Run the connector's connection check",
        description:
          'Calls the provider with the installation’s settings: Mixpanel is asked to authenticate its credentials (an empty Import Events batch, and the project token likewise); a webhook endpoint gets a signed `webhook.test` event. `ok` is false, with what the provider answered, when it refuses them or cannot be reached. Sources (Shopify, Stripe, WooCommerce, HubSpot) have no check: they call the hub (400 `check_unsupported`).',
        security: bearer,
        params: idParams,
        response: { 200: z.object({ ok: z.boolean(), message: z.string() }), ...errorResponses },
      },
    },
    async (req) => {
      const organizationId = organizationOf(req);
      const installation = await service.get(organizationId, req.params.id);
      const connector = service.connectorOf(installation.connectorId);
      if (!connector.check) {
        const why = connector.inbound
          ? `${connector.name} is a source: it calls the hub, and its settings hold nothing the hub could call it with. GET /v1/installations/{id}/requests lists the webhooks it sent and how each was answered`
          : `${connector.name} has no connection check`;
        throw new AppError('check_unsupported', why);
      }
      const row = await service.load(installation.id);
      if (!row) throw new AppError('installation_not_found', `installation ${req.params.id} not found`);
      return connector.check({
        installationId: row.id,
        config: row.config,
        secrets: service.secretsOf(row),
        now: new Date(),
        http: app.services.http,
      });
    },
  );

  app.post(
    '/v1/installations/:id/rotate-secret',
    {
      config: write,
      schema: {
        tags,
        summary: "Rotate an installation's generated secret",
        description:
          'A webhook endpoint gets a new signing secret; the old one keeps signing beside it for 24 hours, so receivers can switch without missing a delivery.',
        security: bearer,
        params: idParams,
        response: {
          200: z.object({
            revealed_secrets: z.record(z.string(), z.string()).describe('shown in this response only'),
          }),
          ...errorResponses,
        },
      },
    },
    async (req) => ({ revealed_secrets: await service.rotateSecrets(organizationOf(req), req.params.id) }),
  );

  app.post(
    '/v1/installations/:id/recover',
    {
      config: { scope: 'deliveries:write' as const },
      schema: {
        tags,
        summary: 'Recover a destination',
        description:
          'Re-enables a disabled destination and queues again its failed and dead deliveries created since `since`.',
        security: bearer,
        params: idParams,
        body: z.strictObject({ since: instant }),
        response: { 200: z.object({ requeued: z.number().int() }), ...errorResponses },
      },
    },
    async (req) =>
      app.services.deliveries.recover(organizationOf(req), req.params.id, new Date(req.body.since)),
  );
};
