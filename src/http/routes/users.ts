// /v1/users: the organization's end users and their ids in external platforms.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { User } from '../../users/users.ts';
import { organizationOf } from '../auth.ts';
import { AUTHENTICATED, errors, IN_ORGANIZATION, PAGE, PATH, READS_BODY } from '../error-responses.ts';
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

const platform = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, 'a platform name: lowercase letters, digits, - and _ (e.g. shopify)');
const externalId = z.string().min(1).max(255);
/** An account as the hub names it: printable ASCII without spaces or `@`. */
const ACCOUNT = '[\\x21-\\x3f\\x41-\\x7e]{1,255}';
const externalIdKey = z
  .string()
  .regex(
    new RegExp(`^[a-z0-9][a-z0-9_-]{0,63}(@${ACCOUNT})?$`),
    'a platform (shopify), or a platform and one of its accounts (woocommerce@shop.example.com)',
  );
const EXTERNAL_IDS_HELP =
  'the user\'s id in each external platform, by `platform@account` (e.g. {"shopify@acme.myshopify.com": "7302"}): ' +
  'the account is the shop domain (Shopify), the store host (WooCommerce), the acct_ id (Stripe), the portal id (HubSpot). ' +
  'A `platform` key alone (no account) stands for every account of the platform that has no id of its own for the user';

const userSchema = z
  .object({
    id: z.string(),
    email: z.string().nullable(),
    name: z.string().nullable(),
    traits: z.record(z.string(), z.unknown()),
    external_ids: z.record(z.string(), z.string()).describe(EXTERNAL_IDS_HELP),
    created_at: timestamp,
    updated_at: timestamp,
  })
  .meta({ id: 'User' });

const traits = z
  .record(z.string().max(200), z.unknown())
  .refine((t) => Object.keys(t).length <= 200, 'at most 200 traits');

const createBody = withExamples(
  z.strictObject({
    email: z.email().max(320).nullable().optional(),
    name: z.string().trim().min(1).max(200).nullable().optional(),
    traits: traits.optional().describe('free-form attributes'),
    external_ids: z.record(externalIdKey, externalId).optional().describe(EXTERNAL_IDS_HELP),
  }),
  {
    customer: {
      summary: 'A customer known to a Shopify shop and to Stripe',
      value: {
        email: 'ada@example.com',
        name: 'Ada Lovelace',
        traits: { plan: 'pro', newsletter: true },
        external_ids: {
          'shopify@acme.myshopify.com': '7302',
          'stripe@acct_1Nv0FGQ9RKHgCVdK': 'cus_9s6XKzkNRiz8i3',
        },
      },
    },
  },
);

const updateBody = withExamples(
  z.strictObject({
    email: z.email().max(320).nullable().optional(),
    name: z.string().trim().min(1).max(200).nullable().optional(),
    traits: traits.optional().describe('merged into the current traits; a null value removes a trait'),
    external_ids: z
      .record(externalIdKey, externalId.nullable())
      .optional()
      .describe(`merged; a null value removes that id. ${EXTERNAL_IDS_HELP}`),
  }),
  {
    traitsAndIds: {
      summary: 'Change a trait, remove another, and link a HubSpot contact',
      value: {
        traits: { plan: 'enterprise', newsletter: null },
        external_ids: { 'hubspot@62515': '51', 'stripe@acct_1Nv0FGQ9RKHgCVdK': null },
      },
    },
  },
);

const present = (u: User) => ({
  id: u.id,
  email: u.email,
  name: u.name,
  traits: u.traits,
  external_ids: u.externalIds,
  created_at: iso(u.createdAt),
  updated_at: iso(u.updatedAt),
});

const tags = ['Users'];
const read = { scope: 'users:read' as const };
const write = { scope: 'users:write' as const };

export const userRoutes: FastifyPluginAsyncZod = async (app) => {
  const users = app.services.users;

  app.post(
    '/v1/users',
    {
      config: write,
      schema: {
        tags,
        operationId: 'createUser',
        summary: 'Create a user',
        security: bearer,
        body: createBody,
        response: {
          201: userSchema,
          ...errors(AUTHENTICATED, IN_ORGANIZATION, READS_BODY, 'external_id_conflict'),
        },
      },
    },
    async (req, reply) => {
      const { external_ids, ...rest } = req.body;
      return reply
        .code(201)
        .send(present(await users.create(organizationOf(req), { ...rest, externalIds: external_ids })));
    },
  );

  app.get(
    '/v1/users',
    {
      config: read,
      schema: {
        tags,
        operationId: 'listUsers',
        summary: 'List users, oldest first',
        security: bearer,
        querystring: listQuery.extend({
          email: z.string().max(320).optional().describe('only users with this email'),
        }),
        response: { 200: listOf(userSchema), ...errors(AUTHENTICATED, IN_ORGANIZATION, PAGE) },
      },
    },
    async (req) => presentPage(await users.list(organizationOf(req), req.query), present),
  );

  app.get(
    '/v1/users/by-external-id/:platform/:external_id',
    {
      config: read,
      schema: {
        tags,
        operationId: 'getUserByExternalId',
        summary: 'Find the user with this id in an external platform',
        description:
          'With `account`, the user a webhook of that account is attributed to: the id in that account, else the id given without account. ' +
          'Without it, the user holding the id in any account; when users of several accounts hold it, 409 `external_id_ambiguous` ' +
          'lists them (`details`: each `account` and `user_id`).',
        security: bearer,
        params: z.strictObject({ platform, external_id: externalId }),
        querystring: z.object({
          account: z
            .string()
            .max(255)
            .optional()
            .describe('the platform account, e.g. the shop domain or the WooCommerce store host'),
        }),
        response: {
          200: userSchema,
          ...errors(AUTHENTICATED, IN_ORGANIZATION, PATH, 'user_not_found', 'external_id_ambiguous'),
        },
      },
    },
    async (req) =>
      present(
        await users.findByExternalId(
          organizationOf(req),
          req.params.platform,
          req.params.external_id,
          req.query.account,
        ),
      ),
  );

  app.get(
    '/v1/users/:id',
    {
      config: read,
      schema: {
        tags,
        operationId: 'getUser',
        summary: 'Get a user',
        security: bearer,
        params: idParams,
        response: { 200: userSchema, ...errors(AUTHENTICATED, IN_ORGANIZATION, PATH, 'user_not_found') },
      },
    },
    async (req) => present(await users.get(organizationOf(req), req.params.id)),
  );

  app.patch(
    '/v1/users/:id',
    {
      config: write,
      schema: {
        tags,
        operationId: 'updateUser',
        summary: 'Update a user',
        security: bearer,
        params: idParams,
        body: updateBody,
        response: {
          200: userSchema,
          ...errors(
            AUTHENTICATED,
            IN_ORGANIZATION,
            PATH,
            READS_BODY,
            'user_not_found',
            'external_id_conflict',
          ),
        },
      },
    },
    async (req) => {
      const { external_ids, ...rest } = req.body;
      return present(
        await users.update(organizationOf(req), req.params.id, { ...rest, externalIds: external_ids }),
      );
    },
  );

  app.delete(
    '/v1/users/:id',
    {
      config: write,
      schema: {
        tags,
        operationId: 'deleteUser',
        summary: 'Delete a user',
        security: bearer,
        params: idParams,
        response: {
          204: z.null(),
          ...errors(AUTHENTICATED, IN_ORGANIZATION, PATH, READS_BODY, 'user_not_found'),
        },
      },
    },
    async (req, reply) => {
      await users.remove(organizationOf(req), req.params.id);
      return reply.code(204).send(null);
    },
  );
};
