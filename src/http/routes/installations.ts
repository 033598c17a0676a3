// /v1/installations: connectors configured for the organization. Secrets go in, never come out:
// responses list which secret keys are set.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { presentSettings } from '../../delivery/subscription.ts';
import { AppError } from '../../errors.ts';
import type { Installation } from '../../installations/installations.ts';
import { organizationOf } from '../auth.ts';
import { AUTHENTICATED, errors, IN_ORGANIZATION, PAGE, PATH, READS_BODY } from '../error-responses.ts';
import { bearer, idParams, iso, listOf, listQuery, presentPage } from '../schemas.ts';
import {
  createBody,
  createdSchema,
  installationSchema,
  recoverBody,
  savedSchema,
  updateBody,
} from './installation-schemas.ts';

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
        operationId: 'createInstallation',
        summary: 'Install a connector',
        description:
          'An organization has at most `INTERCHANGE_MAX_DESTINATIONS` destinations (100 by default; uninstalled ones do not count): one more is refused with 409 `destination_limit_reached`.',
        security: bearer,
        body: createBody,
        response: {
          201: createdSchema,
          ...errors(
            AUTHENTICATED,
            IN_ORGANIZATION,
            READS_BODY,
            'url_blocked',
            'url_unresolvable',
            'not_a_destination',
            'event_type_unknown',
            'filter_invalid',
            'conflict',
            'destination_limit_reached',
          ),
        },
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
        operationId: 'listInstallations',
        summary: 'List installations',
        security: bearer,
        querystring: listQuery.extend({ connector: z.string().max(100).optional() }),
        response: { 200: listOf(installationSchema), ...errors(AUTHENTICATED, IN_ORGANIZATION, PAGE) },
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
        operationId: 'getInstallation',
        summary: 'Get an installation',
        security: bearer,
        params: idParams,
        response: {
          200: installationSchema,
          ...errors(AUTHENTICATED, IN_ORGANIZATION, PATH, 'installation_not_found'),
        },
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
        operationId: 'updateInstallation',
        summary: "Change an installation's name, config or secrets",
        security: bearer,
        params: idParams,
        body: updateBody,
        response: {
          200: savedSchema,
          ...errors(
            AUTHENTICATED,
            IN_ORGANIZATION,
            PATH,
            READS_BODY,
            'installation_not_found',
            'url_blocked',
            'url_unresolvable',
            'not_a_destination',
            'event_type_unknown',
            'filter_invalid',
            'conflict',
          ),
        },
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
        operationId: 'deleteInstallation',
        summary: 'Delete an installation',
        security: bearer,
        params: idParams,
        response: {
          204: z.null(),
          ...errors(AUTHENTICATED, IN_ORGANIZATION, PATH, READS_BODY, 'installation_not_found'),
        },
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
        operationId: 'testInstallation',
        summary: "Run the connector's connection check",
        description:
          'Calls the provider with the installation’s settings: Mixpanel is asked to authenticate its credentials (an empty Import Events batch, and the project token likewise); a webhook endpoint gets a signed `webhook.test` event. `ok` is false, with what the provider answered, when it refuses them or cannot be reached. Sources (Shopify, Stripe, WooCommerce, HubSpot) have no check: they call the hub (400 `check_unsupported`).',
        security: bearer,
        params: idParams,
        response: {
          200: z.object({ ok: z.boolean(), message: z.string() }),
          ...errors(
            AUTHENTICATED,
            IN_ORGANIZATION,
            PATH,
            READS_BODY,
            'installation_not_found',
            'check_unsupported',
          ),
        },
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
        operationId: 'rotateInstallationSecret',
        summary: "Rotate an installation's generated secret",
        description:
          'A webhook endpoint gets a new signing secret; the old one keeps signing beside it for 24 hours, so receivers can switch without missing a delivery.',
        security: bearer,
        params: idParams,
        response: {
          200: z.object({
            revealed_secrets: z.record(z.string(), z.string()).describe('shown in this response only'),
          }),
          ...errors(
            AUTHENTICATED,
            IN_ORGANIZATION,
            PATH,
            READS_BODY,
            'installation_not_found',
            'rotation_unsupported',
          ),
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
        operationId: 'recoverInstallation',
        summary: 'Recover a destination',
        description:
          'Re-enables a disabled destination and queues again its failed and dead deliveries created since `since`.',
        security: bearer,
        params: idParams,
        body: recoverBody,
        response: {
          200: z.object({ requeued: z.number().int() }),
          ...errors(
            AUTHENTICATED,
            IN_ORGANIZATION,
            PATH,
            READS_BODY,
            'installation_not_found',
            'not_a_destination',
          ),
        },
      },
    },
    async (req) =>
      app.services.deliveries.recover(organizationOf(req), req.params.id, new Date(req.body.since)),
  );
};
