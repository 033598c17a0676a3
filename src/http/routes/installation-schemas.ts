// What the /v1/installations routes take and answer: the installation as the API shows it, and
// the request bodies with their examples.
import { z } from 'zod';
import { subscriptionInput } from '../../delivery/subscription.ts';
import { instant, timestamp, withExamples } from '../schemas.ts';

export const installationSchema = z
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

export const savedSchema = installationSchema
  .extend({ warnings: warningsSchema })
  .meta({ id: 'SavedInstallation' });

export const createdSchema = installationSchema
  .extend({
    warnings: warningsSchema,
    revealed_secrets: z
      .record(z.string(), z.string())
      .describe('secrets the hub generated (a webhook signing secret): shown in this response only'),
  })
  .meta({ id: 'CreatedInstallation' });

const secretsInput = z.record(z.string(), z.unknown());

export const createBody = withExamples(
  z.strictObject({
    connector: z.string().max(100).describe('a connector id from GET /v1/connectors'),
    name: z.string().trim().min(1).max(200).optional(),
    config: z.record(z.string(), z.unknown()).optional(),
    secrets: secretsInput.optional(),
    subscription: subscriptionInput.optional().describe('destinations: default every event type'),
  }),
  {
    webhookDestination: {
      summary:
        'A webhook endpoint taking large orders and abandoned carts, in order (its signing secret is generated)',
      value: {
        connector: 'webhook',
        name: 'Warehouse',
        config: { url: 'https://warehouse.acme.example/interchange' },
        subscription: {
          event_types: ['order.created', 'order.paid', 'custom.cart.*'],
          filter: { total: { $gte: '100' } },
          ordered: true,
          rate_limit: 20,
        },
      },
    },
    shopifySource: {
      summary: "A Shopify shop sending webhooks, verified with the app's client secret",
      value: {
        connector: 'shopify',
        name: 'Acme store',
        config: { shopDomain: 'acme.myshopify.com' },
        secrets: { clientSecret: 'shpss_example_app_client_secret' },
      },
    },
    mixpanelDestination: {
      summary: 'Mixpanel (EU) taking every canonical event, by service account',
      value: {
        connector: 'mixpanel',
        config: { region: 'eu', projectId: '3129870', auth: 'service_account' },
        secrets: {
          serviceAccountUsername: 'interchange.1a2b3c.mp-service-account',
          serviceAccountSecret: 'example-service-account-secret',
        },
      },
    },
  },
);

export const updateBody = withExamples(
  z.strictObject({
    name: z.string().trim().min(1).max(200).optional(),
    config: z.record(z.string(), z.unknown()).optional().describe('replaces the whole config'),
    secrets: secretsInput.optional().describe('merged; a null value removes that secret'),
    subscription: subscriptionInput.optional(),
  }),
  {
    subscription: {
      summary: "Change a destination's event types and drop its filter",
      value: { subscription: { event_types: ['order.*', 'refund.created'], filter: null } },
    },
    secret: {
      summary: "Replace a source's secret (the app's client secret was rotated)",
      value: { secrets: { clientSecret: 'shpss_example_rotated_client_secret' } },
    },
  },
);

export const recoverBody = withExamples(z.strictObject({ since: instant }), {
  lastDay: {
    summary: 'Queue again what failed since a given time',
    value: { since: '2024-05-01T00:00:00Z' },
  },
});
