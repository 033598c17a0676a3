// HubSpot contact events → canonical customer events, one per element of the batch. Other
// subscription types (companies, deals, associations …) are skipped when the batch also has
// contact events, and refused as topic_unknown when it has none.
import { createHash } from 'node:crypto';
import type { Customer } from '../../events/records.ts';
import { ConnectorError, type EventDraft } from '../sdk.ts';
import type { HubSpotBatch, HubSpotEvent } from './schemas.ts';

const TYPES = new Map<string, 'customer.created' | 'customer.updated' | 'customer.deleted'>([
  ['contact.creation', 'customer.created'],
  ['contact.propertyChange', 'customer.updated'],
  ['contact.deletion', 'customer.deleted'],
]);

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

export function normalizeHubSpotBatch(batch: HubSpotBatch, installationId: string): EventDraft[] {
  const known = batch.filter((event) => TYPES.has(event.subscriptionType));
  if (known.length === 0) {
    const types = [...new Set(batch.map((e) => e.subscriptionType))].join(', ');
    throw new ConnectorError(
      'topic_unknown',
      `no HubSpot subscription type in this batch is handled (${types})`,
    );
  }
  return known.map((event) => draft(event, installationId));
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
