// Zod schema of a HubSpot webhook request body: a JSON array (a batch) of subscription events.
// Fields every subscription type has are required here; `objectId` and the property fields are
// checked where the canonical event needs them (association events, say, have no objectId).
import { z } from 'zod';

const hubspotId = z.union([z.number().int().nonnegative(), z.string().regex(/^\d+$/)]);

export const hubspotEventSchema = z.object({
  eventId: hubspotId,
  subscriptionId: hubspotId.optional(),
  portalId: hubspotId,
  appId: hubspotId.optional(),
  /** Epoch milliseconds. */
  occurredAt: z.number().int(),
  subscriptionType: z.string().min(1),
  /** 0 on the first delivery, counting up on retries: never part of an event's identity. */
  attemptNumber: z.number().int().optional(),
  objectId: hubspotId.optional(),
  propertyName: z.string().optional(),
  propertyValue: z.union([z.string(), z.number(), z.boolean()]).nullable().optional(),
  changeSource: z.string().optional(),
});
export type HubSpotEvent = z.infer<typeof hubspotEventSchema>;

export const hubspotBatchSchema = z.array(hubspotEventSchema).min(1);
export type HubSpotBatch = z.infer<typeof hubspotBatchSchema>;
