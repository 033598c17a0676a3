import { describe, expect, it } from 'vitest';
import { eventFromSqlText, type SqlEventRow, toEnvelope, toLazyEnvelope } from '../../events/envelope.ts';
import type { DeliveryItem } from '../sdk.ts';
import { payloadOf } from './index.ts';

const row: Omit<SqlEventRow, 'data'> = {
  id: '01935f7e-0000-7000-8000-000000000001',
  organization_id: 'org_1',
  installation_id: null,
  source: '/api-clients/cli_1',
  type: 'custom.cart.updated',
  subject: null,
  time: '2026-01-15T10:00:00.000Z',
  partition_key: 'carts/c-1',
  topic: 'custom-events',
  user_id: 'user-42',
  raw_request_id: null,
  created_at: '2026-01-15T10:00:01.000Z',
};

const samples: unknown[] = [
  {
    total: '238.80',
    items: [{ sku: 'SKU-1', name: 'Größe L — “Bio”', qty: 2 }],
    note: 'line\nbreak "quoted" \\ \u2028',
  },
  [],
  {},
  'text',
  12.5,
  null,
  { emoji: '🎉', lone: '\ud800', nested: { deep: [[[{ a: true }]]] } },
];

describe('webhook payload', () => {
  it('splices the stored JSON text of the data in: the same bytes as stringifying the parsed data', () => {
    for (const data of samples) {
      const dataJson = JSON.stringify(data);
      const eager = toEnvelope(eventFromSqlText(row, dataJson));
      const item: DeliveryItem = { deliveryId: 'dlv_1', attempt: 1, event: eager, sourceConnector: null };
      const spliced = payloadOf({
        ...item,
        event: toLazyEnvelope(eventFromSqlText(row, dataJson)),
        dataJson,
      });
      expect(spliced).toBe(payloadOf(item));
      expect(JSON.parse(spliced)).toEqual({
        id: row.id,
        type: row.type,
        timestamp: row.time,
        subject: null,
        user_id: 'user-42',
        data,
      });
    }
  });

  it('parses the data only when a connector reads it, and gives what the eager envelope gives', () => {
    // Text that is not JSON: any parse would throw.
    const lazy = toLazyEnvelope(eventFromSqlText(row, '{not json'));
    expect(lazy.type).toBe(row.type);
    expect(
      payloadOf({ deliveryId: 'dlv_1', attempt: 1, event: lazy, dataJson: '{"x":1}', sourceConnector: null }),
    ).toContain('"data":{"x":1}}');
    expect(() => lazy.data).toThrow(SyntaxError);

    const dataJson = JSON.stringify(samples[0]);
    const event = eventFromSqlText(row, dataJson);
    const envelope = toLazyEnvelope(event);
    expect(envelope.data).toEqual(samples[0]);
    expect(envelope.data).toBe(event.data);
    expect(JSON.parse(JSON.stringify(envelope))).toEqual(toEnvelope(event));
    expect({ ...envelope }).toEqual(toEnvelope(event));
  });
});
