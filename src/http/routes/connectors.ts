// GET /v1/connectors: the catalog, each connector with its capabilities, config JSON Schema and,
// for a source, the provider topics it turns into canonical events.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { CONNECTORS } from '../../connectors/catalog.ts';
import type { AnyConnector } from '../../connectors/sdk.ts';
import { AppError } from '../../errors.ts';
import { AUTHENTICATED, errors, IN_ORGANIZATION, PATH } from '../error-responses.ts';
import { bearer } from '../schemas.ts';

const connectorSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    category: z.string(),
    description: z.string().nullable(),
    capabilities: z.object({
      source: z.boolean(),
      destination: z.boolean(),
      sync: z.boolean(),
      check: z.boolean(),
    }),
    config_schema: z.record(z.string(), z.unknown()).describe('JSON Schema of `config`'),
    secret_keys: z.array(z.string()).describe('the secrets an installation can hold'),
    topics: z
      .array(z.object({ topic: z.string(), types: z.array(z.string()) }))
      .describe("a source's provider topics that become canonical events, and which types"),
    raw_event_types: z
      .string()
      .nullable()
      .describe(
        "a source's other topics are kept as raw provider events of this family: the topic with `/` as `.`, camelCase as snake_case (Shopify's inventory_levels/update is shopify.inventory_levels.update); subscribe to them by name or family",
      ),
  })
  .meta({ id: 'Connector' });

function present(c: AnyConnector) {
  return {
    id: c.id,
    name: c.name,
    category: c.category,
    description: c.description ?? null,
    capabilities: {
      source: Boolean(c.inbound),
      destination: Boolean(c.destination),
      sync: false,
      check: Boolean(c.check),
    },
    config_schema: z.toJSONSchema(c.config, { io: 'input', unrepresentable: 'any' }) as Record<
      string,
      unknown
    >,
    secret_keys: Object.keys((c.secrets as unknown as z.ZodObject).shape),
    topics: (c.inbound?.topics ?? []).map((t) => ({ topic: t.topic, types: [...t.types] })),
    raw_event_types: c.inbound ? `${c.id}.*` : null,
  };
}

export const connectorRoutes: FastifyPluginAsyncZod = async (app) => {
  const catalog = CONNECTORS.map(present);
  app.get(
    '/v1/connectors',
    {
      config: { scope: 'installations:read' },
      schema: {
        tags: ['Connectors'],
        operationId: 'listConnectors',
        summary: 'List the connectors this hub ships',
        security: bearer,
        response: {
          200: z.object({ data: z.array(connectorSchema) }),
          ...errors(AUTHENTICATED, IN_ORGANIZATION),
        },
      },
    },
    async () => ({ data: catalog }),
  );
  app.get(
    '/v1/connectors/:id',
    {
      config: { scope: 'installations:read' },
      schema: {
        tags: ['Connectors'],
        operationId: 'getConnector',
        summary: 'Get one connector',
        security: bearer,
        params: z.object({ id: z.string().max(100) }),
        response: {
          200: connectorSchema,
          ...errors(AUTHENTICATED, IN_ORGANIZATION, PATH, 'connector_not_found'),
        },
      },
    },
    async (req) => {
      const found = catalog.find((c) => c.id === req.params.id);
      if (!found) throw new AppError('connector_not_found', `no connector ${req.params.id}`);
      return found;
    },
  );
};
