// Ids: UUIDv7s that the `uuid` library accepts as version 7, unique, increasing in the order they
// were made (cursors rely on it), carrying the time they were made.
import { validate, version } from 'uuid';
import { describe, expect, it } from 'vitest';
import { isId, newId, uuidv7 } from './ids.ts';

describe('uuidv7', () => {
  it('carries the time it was made', () => {
    const before = Date.now();
    const id = uuidv7();
    const after = Date.now();
    const ms = Number.parseInt(id.replaceAll('-', '').slice(0, 12), 16);
    // First in this file: no burst has borrowed milliseconds ahead (RFC 9562 §6.2) yet.
    expect(ms).toBeGreaterThanOrEqual(before);
    expect(ms).toBeLessThanOrEqual(after + 5);
  });

  it('makes valid version-7 UUIDs with the RFC 9562 variant', () => {
    for (let i = 0; i < 1000; i++) {
      const id = uuidv7();
      expect(validate(id)).toBe(true);
      expect(version(id)).toBe(7);
      expect(id[19]).toMatch(/[89ab]/);
    }
  });

  it('increases strictly within a process, many to a millisecond, and never repeats', () => {
    const ids = Array.from({ length: 50_000 }, () => uuidv7());
    expect(new Set(ids).size).toBe(ids.length);
    for (let i = 1; i < ids.length; i++) expect((ids[i] as string) > (ids[i - 1] as string)).toBe(true);
  });
});

describe('newId', () => {
  it('prefixes the kind and is recognised as that kind only', () => {
    const id = newId('delivery');
    expect(id).toMatch(/^dlv_[0-9a-f]{32}$/);
    expect(isId('delivery', id)).toBe(true);
    expect(isId('user', id)).toBe(false);
  });
});
