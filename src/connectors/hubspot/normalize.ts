// HubSpot contact events → canonical customer events, one per element of the batch. Other
// subscription types (companies, deals, associations …) become raw provider events
// (`hubspot.deal.creation`), each de-duplicated on its own event id like the contact events.
import { createHash } from 'node:crypto';
import type { Customer } from '../../events/records.ts';
import { ConnectorError, type EventDraft, rawEvent, type TopicMapping } from '../sdk.ts';
import type { HubSpotBatch, HubSpotEvent } from './schemas.ts';

const TYPES = new Map<string, 'customer.created' | 'customer.updated' | 'customer.deleted'>([
  ['contact.creation', 'customer.created'],
  ['contact.propertyChange', 'customer.updated'],
  ['contact.deletion', 'customer.deleted'],
]);

/** The subscription types turned into canonical events, with their types (GET /v1/connectors). */
export const HUBSPOT_TOPIC_TYPES: readonly TopicMapping[] = [...TYPES].map(([topic, type]) => ({
  topic,
  types: [type],
}));

/** Contact properties carried into the canonical customer; a change to any other is still an update. */
const PROPERTIES = new Map<string, 'email' | 'first_name' | 'last_name' | 'phone'>([
  ['email', 'email'],
  ['firstname', 'first_name'],
  ['lastname', 'last_name'],
  ['phone', 'phone'],
]);

function draft(event: HubSpotEvent, installationId: string): EventDraft {
  const type = TYPES.get(event.subscriptionType);
  if (!type)
    throw new ConnectorError(
      'topic_unknown',
      `HubSpot subscription type ${event.subscriptionType} is not handled`,
    );
  if (event.objectId === undefined) {
    throw new ConnectorError(
      'payload_invalid',
      `${event.subscriptionType} event ${event.eventId}: objectId: missing`,
    );
  }
  const id = String(event.objectId);
  const at = new Date(event.occurredAt).toISOString();
  const external_ids = { [installationId]: id };
  // HubSpot may regroup events when it retries: each is de-duplicated on its own id.
  const base = {
    subject: `contacts/${id}`,
    time: at,
    customerExternalId: id,
    dedupeKey: `${event.portalId}:${event.eventId}`,
  };
  if (type === 'customer.deleted') return { ...base, type, data: { customer_id: id, external_ids } };
  if (type === 'customer.created') {
    const data: Customer = { customer_id: id, created_at: at, external_ids };
    return { ...base, type, data };
  }
  if (event.propertyName === undefined) {
    throw new ConnectorError(
      'payload_invalid',
      `contact.propertyChange event ${event.eventId}: propertyName: missing`,
    );
  }
  const field = PROPERTIES.get(event.propertyName);
  const value =
    event.propertyValue == null || event.propertyValue === '' ? null : String(event.propertyValue);
  const data: Customer = {
    customer_id: id,
    ...(field ? { [field]: value } : {}),
    updated_at: at,
    external_ids,
  };
  return { ...base, type, data };
}

/**
 * One event per element of the batch: canonical for contact events, raw for the others. `sent`
 * gives the batch as sent (parsed with exact ids, only when some element is raw): its elements
 * are the raw events' data.
 */
export function normalizeHubSpotBatch(
  batch: HubSpotBatch,
  installationId: string,
  sent: () => readonly unknown[],
): EventDraft[] {
  const raw = batch.some((event) => !TYPES.has(event.subscriptionType)) ? sent() : [];
  return batch.map((event, i) =>
    TYPES.has(event.subscriptionType) ? draft(event, installationId) : rawDraft(event, raw[i]),
  );
}

/** A subscription type without a canonical one, kept as sent; about `<object>/<id>` when it has one. */
function rawDraft(event: HubSpotEvent, element: unknown): EventDraft {
  const object = event.subscriptionType.split('.')[0];
  return rawEvent('hubspot', event.subscriptionType, element, {
    subject: event.objectId === undefined || !object ? undefined : `${object}s/${event.objectId}`,
    time: new Date(event.occurredAt).toISOString(),
    dedupeKey: `${event.portalId}:${event.eventId}`,
  });
}

/**
 * The batch's identity, its set of (portal, eventId) pairs, sorted, hashed: recorded with the
 * request. De-duplication itself is per event (each draft's `dedupeKey`), since HubSpot may retry
 * an event in another batch than the first.
 */
export function hubspotDedupeKey(batch: HubSpotBatch): string {
  const ids = [...new Set(batch.map((e) => `${e.portalId}:${e.eventId}`))].sort();
  return createHash('sha256').update(ids.join('\n')).digest('hex');
}
