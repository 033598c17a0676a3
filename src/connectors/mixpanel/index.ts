// Mixpanel (analytics destination): orders and refunds become Segment-spec e-commerce events sent
// to /import; customers become profile updates sent to /engage. See docs/connectors/mixpanel.md.
import { z } from 'zod';
import { defineConnector } from '../sdk.ts';
import { checkMixpanel, mixpanelWarnings } from './check.ts';
import { accepts, deliverBatch, engageUrl, importUrl, LIMITS } from './deliver.ts';

const config = z
  .object({
    region: z
      .enum(['us', 'eu', 'in'])
      .describe("The project's data residency: us (api.mixpanel.com), eu or in. The wrong one loses data."),
    host: z
      .url({ protocol: /^https?$/ })
      .optional()
      .describe('Base URL that replaces the region host, e.g. a local Mixpanel simulator'),
    projectId: z
      .string()
      .trim()
      .regex(/^\d+$/, 'the numeric project id from Project Settings')
      .optional()
      .describe('Project id; required with service-account auth'),
    auth: z
      .enum(['service_account', 'project_token'])
      .default('service_account')
      .describe('How /import is authenticated: a service account (recommended) or the project token'),
    productEvents: z
      .boolean()
      .default(false)
      .describe('Also send one "Product Purchased" event per line item of a completed order'),
  })
  .strict()
  .superRefine((c, issues) => {
    if (c.auth === 'service_account' && !c.projectId) {
      issues.addIssue({ code: 'custom', path: ['projectId'], message: 'required with service-account auth' });
    }
  });

// Which are needed depends on `auth`: deliver fails every item, without a request, when one is missing.
const secrets = z.object({
  serviceAccountUsername: z
    .string()
    .min(1)
    .optional()
    .describe('Service account username (service-account auth)'),
  serviceAccountSecret: z
    .string()
    .min(1)
    .optional()
    .describe('Service account secret (service-account auth)'),
  projectToken: z
    .string()
    .min(1)
    .optional()
    .describe(
      'Project token: the credential with project-token auth, and needed by customer profile updates',
    ),
});

/**
 * The Mixpanel destination.
 *
 * @example
 * // config: { region: 'eu', projectId: '3129870', auth: 'service_account', productEvents: true }
 * // secrets: { serviceAccountUsername: 'interchange.1a2b3c.mp-service-account', serviceAccountSecret: '…', projectToken: '…' }
 * const results = await mixpanel.destination?.deliver(batch, ctx);
 */
export default defineConnector({
  id: 'mixpanel',
  name: 'Mixpanel',
  category: 'analytics',
  description:
    'Sends orders and refunds to Mixpanel as e-commerce events (Order Completed, Order Refunded) and customers as profile updates.',
  config,
  secrets,
  destination: {
    batchSize: LIMITS.records,
    accepts,
    urls: (cfg) => [importUrl(cfg), engageUrl(cfg)],
    deliver: (batch, ctx) => deliverBatch(batch, ctx),
  },
  check: (ctx) => checkMixpanel(ctx),
  warnings: (ctx) => mixpanelWarnings(ctx),
});
