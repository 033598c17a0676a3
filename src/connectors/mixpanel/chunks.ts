// Packs encoded records into request bodies that stay within Mixpanel's per-request limits
// (records per request, uncompressed bytes), keeping each record's delivery item alongside.

/** One record (an event or a profile update) serialized once, with the batch item it belongs to. */
export interface Encoded {
  json: string;
  /** UTF-8 length of `json`. */
  bytes: number;
  /** Index of the delivery item in the batch. */
  item: number;
  /** The event's `$insert_id`, to match failed records Mixpanel names by id. */
  insertId?: string | undefined;
}

/** Serializes a record and measures it. */
export function encode(record: unknown, item: number, insertId?: string): Encoded {
  const json = JSON.stringify(record);
  return { json, bytes: Buffer.byteLength(json, 'utf8'), item, insertId };
}

/** The JSON array body of some records, as one string. */
export function jsonArray(records: readonly Encoded[]): string {
  return `[${records.map((r) => r.json).join(',')}]`;
}

/** Byte length of `jsonArray(records)`, without building it. */
export function arrayBytes(records: readonly Encoded[]): number {
  return 2 + records.reduce((sum, r) => sum + r.bytes, 0) + Math.max(0, records.length - 1);
}

/**
 * Splits records, in order, into chunks of at most `maxCount` records whose JSON array is at most
 * `maxBytes` bytes. A record alone over `maxBytes` still gets a chunk of its own: callers drop
 * oversized records before chunking.
 */
export function chunk(records: readonly Encoded[], maxCount: number, maxBytes: number): Encoded[][] {
  const chunks: Encoded[][] = [];
  let current: Encoded[] = [];
  let size = 2;
  for (const record of records) {
    const added = record.bytes + (current.length > 0 ? 1 : 0);
    if (current.length > 0 && (current.length >= maxCount || size + added > maxBytes)) {
      chunks.push(current);
      current = [];
      size = 2;
    }
    size += record.bytes + (current.length > 0 ? 1 : 0);
    current.push(record);
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}
