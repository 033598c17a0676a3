// A batch the database could not take fails every request waiting on it: with 503
// database_unavailable when the database is down (the provider retries), as it is otherwise. And
// what may wait is bounded: beyond it a request is refused at once with 503 overloaded.
import { DrizzleQueryError } from 'drizzle-orm';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { AppError } from '../errors.ts';
import type { EventLog } from '../log/port.ts';
import type { Store } from '../store/db.ts';
import { createCommitter, type IngestItem } from './committer.ts';

function failingStore(err: unknown): Store {
  const fail = () => Promise.reject(err);
  return { db: { transaction: fail, execute: fail } } as unknown as Store;
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
    log: { appendCtes: () => '', partitionOf: () => 0 } as unknown as EventLog,
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

describe('one item the database refuses', () => {
  it('fails alone: its batch-mates are committed one by one', async () => {
    const { openStore } = await import('../store/db.ts');
    const { migrate } = await import('../store/migrate.ts');
    const { createPostgresLog } = await import('../log/postgres.ts');
    const { organizations, events } = await import('../store/schema.ts');
    const store = await openStore({ kind: 'pglite', dataDir: undefined });
    try {
      await migrate(store);
      await store.db.insert(organizations).values({ id: 'org_1', name: 'Acme' });
      const logger = pino({ level: 'silent' });
      const committer = createCommitter({ store, log: createPostgresLog({ db: store.db, logger }), logger });
      const event = (n: number, subject: string) => ({
        id: `0190b2c4-0000-7000-8000-00000000000${n}`,
        source: '/api-clients/cli_1',
        type: 'custom.test',
        subject,
        time: new Date(),
        partitionKey: 'k',
        topic: 'custom-events' as const,
        userId: null,
        data: { n },
      });
      // Text takes no U+0000: the database refuses the second item's event, and so its batch.
      const items = [event(1, 'ok'), event(2, 'a\u0000b'), event(3, 'ok')].map(
        (e, n): IngestItem => ({ ...item(n), events: [e] }),
      );
      const results = await Promise.allSettled(items.map((i) => committer.submit(i)));
      expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
      const stored = await store.db.select({ id: events.id }).from(events);
      expect(stored.map((e) => e.id).sort()).toEqual([items[0]?.events[0]?.id, items[2]?.events[0]?.id]);
    } finally {
      await store.close();
    }
  });
});

describe('the bound on waiting requests', () => {
  it('refuses at once what would exceed the count or the bytes, and takes a lone request of any size', async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
    // Every statement waits for the gate, then finds the database gone.
    const held = () => gate.then(() => Promise.reject(new DrizzleQueryError('insert', [], refused)));
    const committer = createCommitter({
      store: { db: { transaction: held, execute: held } } as unknown as Store,
      log: { appendCtes: () => '', partitionOf: () => 0 } as unknown as EventLog,
      logger: pino({ level: 'silent' }),
      bounds: { maxWaiting: 3, maxWaitingBytes: 100 },
    });
    const withBody = (n: number, bytes: number): IngestItem => ({
      ...item(n),
      request: {
        method: 'POST',
        path: '/hooks/x',
        headers: {},
        body: Buffer.alloc(bytes),
        receivedAt: new Date(),
      },
    });
    /** How a submission ended, or 'still waiting' (a refusal comes at once, a held commit never). */
    const code = (p: Promise<unknown>) =>
      Promise.race([
        p.then(
          () => 'committed',
          (err: AppError) => err.code,
        ),
        new Promise((resolve) => setTimeout(() => resolve('still waiting'), 2000)),
      ]);

    const waiting = [committer.submit(withBody(1, 60))];
    expect(await code(committer.submit(withBody(2, 60)))).toBe('overloaded'); // 120 bytes
    waiting.push(committer.submit(withBody(3, 30)), committer.submit(item(4)));
    expect(await code(committer.submit(item(5)))).toBe('overloaded'); // a fourth request
    release();
    expect(await Promise.all(waiting.map(code))).toEqual(Array(3).fill('database_unavailable'));
    // Room again; and a request alone is taken even over the byte bound.
    expect(await code(committer.submit(withBody(6, 150)))).toBe('database_unavailable');
  });
});
