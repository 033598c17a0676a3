// A batch the database could not take fails every request waiting on it: with 503
// database_unavailable when the database is down (the provider retries), as it is otherwise.
import { DrizzleQueryError } from 'drizzle-orm';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { AppError } from '../errors.ts';
import type { EventLog } from '../log/port.ts';
import type { Store } from '../store/db.ts';
import { createCommitter, type IngestItem } from './committer.ts';

function failingStore(err: unknown): Store {
  return { db: { transaction: () => Promise.reject(err) } } as unknown as Store;
}

const item = (n: number): IngestItem => ({
  organizationId: 'org_1',
  installationId: null,
  scope: 'api',
  dedupeKey: `key-${n}`,
  requestId: `req_${n}`,
  request: null,
  status: 'accepted',
  events: [],
});

async function submitBatch(err: unknown): Promise<unknown[]> {
  const committer = createCommitter({
    store: failingStore(err),
    log: {} as EventLog,
    logger: pino({ level: 'silent' }),
  });
  const results = await Promise.allSettled([1, 2, 3].map((n) => committer.submit(item(n))));
  return results.map((r) => (r.status === 'rejected' ? r.reason : r.value));
}

describe('a batch that does not commit', () => {
  it('rejects every waiting request with database_unavailable when the database is gone', async () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
    const reasons = await submitBatch(new DrizzleQueryError('begin', [], refused));
    expect(reasons).toHaveLength(3);
    for (const reason of reasons) {
      expect(reason).toBeInstanceOf(AppError);
      expect((reason as AppError).code).toBe('database_unavailable');
      expect((reason as AppError).status).toBe(503);
    }
  });

  it('passes any other failure on as it is (a bug is a 500, not an outage)', async () => {
    const bug = new TypeError("Cannot read properties of undefined (reading 'id')");
    expect(await submitBatch(bug)).toEqual([bug, bug, bug]);
  });
});
