// isDatabaseUnavailable tells an outage (503, try again) from a bad query (a bug, 500) through
// Drizzle's wrapping of driver errors; on PostgreSQL, a connection killed under a transaction
// neither crashes the process nor sticks in the pool.
import { createServer } from 'node:net';
import { PGlite } from '@electric-sql/pglite';
import { DrizzleQueryError, sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { isDatabaseUnavailable, openStore, queryPrepared, queryRows, sqlLiteral } from './db.ts';

function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const address = srv.address();
      srv.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

function pgError(code: string, message = 'server says no'): pg.DatabaseError {
  const err = new pg.DatabaseError(message, 0, 'error');
  err.code = code;
  return err;
}

const wrapped = (cause: unknown) => new DrizzleQueryError('select 1', [], cause as Error);

describe('isDatabaseUnavailable', () => {
  it('sees a refused connection inside the error Drizzle throws', async () => {
    const pool = new pg.Pool({
      connectionString: `postgres://nobody@127.0.0.1:${await closedPort()}/none`,
      connectionTimeoutMillis: 1000,
    });
    pool.on('error', () => {});
    try {
      const err = await drizzle(pool)
        .execute(sql`select 1`)
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(err).toBeInstanceOf(DrizzleQueryError);
      expect((err as { code?: string }).code).toBeUndefined();
      expect(isDatabaseUnavailable(err)).toBe(true);
    } finally {
      await pool.end();
    }
  });

  it("sees a refused connection the store's pool reports unwrapped", async () => {
    const err = await openStore({
      kind: 'postgres',
      url: `postgres://nobody@127.0.0.1:${await closedPort()}/none`,
      poolSize: 1,
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err as { code?: string }).code).toBe('ECONNREFUSED');
    expect(isDatabaseUnavailable(err)).toBe(true);
  });

  it("knows the server's shutdown, start-up and connection SQLSTATEs, and pg's own messages", () => {
    for (const code of ['57P01', '57P02', '57P03', '08006', '08001', '08003', '53300']) {
      expect(isDatabaseUnavailable(wrapped(pgError(code))), code).toBe(true);
    }
    for (const message of [
      'Connection terminated unexpectedly',
      'Connection terminated due to connection timeout',
      'timeout exceeded when trying to connect',
      'Client has encountered a connection error and is not queryable',
      'Cannot use a pool after calling end on the pool',
    ]) {
      expect(isDatabaseUnavailable(wrapped(new Error(message))), message).toBe(true);
    }
    const reset = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
    expect(isDatabaseUnavailable(wrapped(reset))).toBe(true);
    // Node's happy-eyeballs connect fails with every address's error together.
    const refused = (address: string) =>
      Object.assign(new Error(`connect ECONNREFUSED ${address}`), { code: 'ECONNREFUSED' });
    expect(isDatabaseUnavailable(wrapped(new AggregateError([refused('::1'), refused('127.0.0.1')])))).toBe(
      true,
    );
  });

  it('does not take a bad query or a bug for an outage', async () => {
    const store = await openStore({ kind: 'pglite', dataDir: undefined });
    try {
      const syntax = await store.db.execute(sql`selec 1`).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(syntax).toBeDefined();
      expect(isDatabaseUnavailable(syntax)).toBe(false);
    } finally {
      await store.close();
    }
    expect(isDatabaseUnavailable(wrapped(pgError('23505', 'duplicate key value')))).toBe(false);
    expect(isDatabaseUnavailable(wrapped(pgError('08P01', 'protocol violation')))).toBe(false);
    expect(isDatabaseUnavailable(new TypeError("Cannot read properties of undefined (reading 'id')"))).toBe(
      false,
    );
    expect(isDatabaseUnavailable(undefined)).toBe(false);
    // A refused outbound HTTP call (a destination, a provider's API) is not the database.
    const refused = Object.assign(new Error('connect ECONNREFUSED 10.0.0.7:443'), { code: 'ECONNREFUSED' });
    expect(isDatabaseUnavailable(refused)).toBe(false);
    expect(
      isDatabaseUnavailable(new Error('connection to api.example.com refused', { cause: refused })),
    ).toBe(false);
    // Drizzle's message holds the parameters: a payload quoting pg's words is not an outage.
    const quoting = new DrizzleQueryError(
      'insert into t values ($1)',
      ['Connection terminated unexpectedly'],
      pgError('23505'),
    );
    expect(isDatabaseUnavailable(quoting)).toBe(false);
    const cyclic: Error & { cause?: unknown } = new Error('a');
    cyclic.cause = cyclic;
    expect(isDatabaseUnavailable(cyclic)).toBe(false);
  });
});

describe.skipIf(!process.env.DATABASE_URL)('a PostgreSQL connection killed under a transaction', () => {
  it('fails that transaction as unavailable, crashes nothing, and the pool reconnects', async () => {
    const store = await openStore({ kind: 'postgres', url: process.env.DATABASE_URL as string, poolSize: 2 });
    const killer = new pg.Client({ connectionString: process.env.DATABASE_URL });
    await killer.connect();
    try {
      const failed = await store.db
        .transaction(async (tx) => {
          const result = (await tx.execute(sql`select pg_backend_pid() as pid`)) as unknown as {
            rows: { pid: number }[];
          };
          // Killed between two statements: the checked-out client is idle when its socket closes,
          // and an unheard 'error' event there would end the process.
          await killer.query('select pg_terminate_backend($1)', [result.rows[0]?.pid]);
          await new Promise((r) => setTimeout(r, 300));
          await tx.execute(sql`select 1`);
        })
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(failed).toBeDefined();
      expect(isDatabaseUnavailable(failed)).toBe(true);
      await store.ping();
      await store.db.transaction(async (tx) => {
        await tx.execute(sql`select 1`);
      });
    } finally {
      await killer.end();
      await store.close();
    }
  });
});

describe('sqlLiteral', () => {
  it('quotes what a prepared parameter reads, and has no form for an array', () => {
    expect(sqlLiteral(null)).toBe('null');
    expect(sqlLiteral(undefined)).toBe('null');
    expect(sqlLiteral("it's \\ fine")).toBe("'it''s \\ fine'");
    expect(sqlLiteral(42)).toBe("'42'");
    expect(sqlLiteral(true)).toBe("'true'");
    expect(sqlLiteral(new Date('2026-01-02T03:04:05.678Z'))).toBe("'2026-01-02T03:04:05.678Z'");
    expect(sqlLiteral(Buffer.from([0, 39, 255]))).toBe("'\\x0027ff'");
    expect(sqlLiteral({ a: "b'c" })).toBe(`'{"a":"b''c"}'`);
    expect(sqlLiteral(['a'])).toBeUndefined();
    expect(sqlLiteral('a\u0000b')).toBeUndefined();
  });
});

// The same statements through queryPrepared and queryRows must give the same rows: on PGlite the
// first runs as PREPARE/EXECUTE with literal parameters (on PostgreSQL, as a named statement).
describe('queryPrepared', () => {
  it('gives back exactly what the parameters held, also when first called many times at once', async () => {
    const store = await openStore(
      process.env.DATABASE_URL
        ? { kind: 'postgres', url: process.env.DATABASE_URL, poolSize: 4 }
        : { kind: 'pglite', dataDir: undefined },
    );
    try {
      const text = `it's a "quote", a back\\slash \\' and \\x41, ünïcödé 🛒, '' and $1`;
      const json = JSON.stringify({ text, nested: { n: 12345678901234567890n.toString() } });
      const bytes = Buffer.from([0, 1, 39, 92, 255, 128]);
      const query = () =>
        sql`select ${text}::text as t, ${json}::json as j, ${bytes}::bytea as b, ${7}::int + 1 as n,
              ${null}::text as z, ${new Date('2026-01-02T03:04:05.678Z')}::timestamptz as d`;
      const expected = await queryRows(store.db, query());
      const runs = await Promise.all(
        Array.from({ length: 8 }, () => queryPrepared(store.db, 'db_test_round_trip', query())),
      );
      // Timestamps: Drizzle's raw queries give text, the drivers' own parsing gives Dates.
      const same = (rows: unknown[]) =>
        (rows as { d: string | Date }[]).map((r) => ({ ...r, d: new Date(r.d).toISOString() }));
      for (const rows of runs) expect(same(rows)).toEqual(same(expected));
      const [row] = expected as [{ t: string; j: unknown; b: Buffer; n: number; z: null; d: Date }];
      expect(row.t).toBe(text);
      expect(row.j).toEqual(JSON.parse(json));
      expect(Buffer.from(row.b).equals(bytes)).toBe(true);
      expect(row.n).toBe(8);
      expect(row.z).toBeNull();
      expect(new Date(row.d).toISOString()).toBe('2026-01-02T03:04:05.678Z');
    } finally {
      await store.close();
    }
  });
});

// PGlite plans every query it is given: Drizzle's repeated queries are prepared on their second
// call and executed from then on, with the same rows and the same errors.
describe.skipIf(Boolean(process.env.DATABASE_URL))('PGlite statement cache', () => {
  it('prepares a repeated query, answers the same, and still fails as the query would', async () => {
    const { organizations } = await import('./schema.ts');
    const { migrate } = await import('./migrate.ts');
    const { eq } = await import('drizzle-orm');
    const store = await openStore({ kind: 'pglite', dataDir: undefined });
    try {
      await migrate(store);
      await store.db.insert(organizations).values({ id: 'org_1', name: "O'Brien & Sons" });
      const read = (id: string) => store.db.select().from(organizations).where(eq(organizations.id, id));
      const first = await read('org_1');
      expect(first).toMatchObject([{ id: 'org_1', name: "O'Brien & Sons" }]);
      expect(await read('org_1')).toEqual(first);
      expect(await read('org_1')).toEqual(first);
      expect(await read("org_'; drop table organizations; --")).toEqual([]);
      const statements = await queryRows<{ statement: string }>(
        store.db,
        sql`select statement from pg_prepared_statements where name like 'ic_s%'`,
      );
      expect(statements.some((s) => s.statement.includes('from "organizations"'))).toBe(true);
      // A unique violation is the statement's own failure: it surfaces, with its code.
      const insert = () => store.db.insert(organizations).values({ id: 'org_1', name: 'again' });
      for (let i = 0; i < 3; i++)
        await expect(insert()).rejects.toMatchObject({ cause: expect.objectContaining({ code: '23505' }) });
      expect(await read('org_1')).toEqual(first);
    } finally {
      await store.close();
    }
  });
});

// Drizzle asks PGlite to leave dates and timestamps as text on every query, which costs PGlite a
// copy of its whole parser table each time: the client leaves them as text itself and drops the
// option. What each kind of query answers stays as it was.
describe.skipIf(Boolean(process.env.DATABASE_URL))('PGlite date and time types', () => {
  it('answers Drizzle, queryRows and queryPrepared as before, without a parsers option per query', async () => {
    const { organizations } = await import('./schema.ts');
    const { migrate } = await import('./migrate.ts');
    const { eq } = await import('drizzle-orm');
    const store = await openStore({ kind: 'pglite', dataDir: undefined });
    const given: unknown[] = [];
    const { query, exec } = PGlite.prototype;
    try {
      await migrate(store);
      const at = new Date('2026-12-05T10:11:12.345Z');
      await store.db.insert(organizations).values({ id: 'org_1', name: 'Acme', createdAt: at });
      // Prepared statements are EXECUTEd through `exec` (see pgliteStatements), the rest `query`.
      PGlite.prototype.query = function (this: PGlite, ...args: Parameters<PGlite['query']>) {
        given.push(args[2]?.parsers);
        return query.apply(this, args);
      } as PGlite['query'];
      PGlite.prototype.exec = function (this: PGlite, ...args: Parameters<PGlite['exec']>) {
        given.push(args[1]?.parsers);
        return exec.apply(this, args);
      } as PGlite['exec'];
      const read = () => store.db.select().from(organizations).where(eq(organizations.id, 'org_1'));
      for (let i = 0; i < 3; i++) expect((await read())[0]?.createdAt).toEqual(at);
      // Drizzle's queries went to PGlite without their option (Drizzle gave one every time).
      expect(given.length).toBeGreaterThanOrEqual(3);
      expect(given.every((p) => p === undefined)).toBe(true);

      const raw = sql`select created_at, array[created_at] as times, interval '1 day' as span,
        date '2026-12-05' as day, 1.50::numeric as amount, array[1.5::numeric] as amounts
        from organizations where id = 'org_1'`;
      // queryRows (Drizzle's execute): these types as the server's text, arrays included.
      const [text] = await queryRows<Record<string, unknown>>(store.db, raw);
      expect(text).toEqual({
        created_at: '2026-12-05 10:11:12.345+00',
        times: '{"2026-12-05 10:11:12.345+00"}',
        span: '1 day',
        day: '2026-12-05',
        amount: '1.50',
        amounts: '{1.5}',
      });
      // queryPrepared: as PGlite parses them (Dates, arrays), prepared or not.
      for (let i = 0; i < 2; i++) {
        const [parsed] = await queryPrepared<Record<string, unknown>>(store.db, 'dates_test', raw);
        expect(parsed).toEqual({
          created_at: at,
          times: [at],
          span: '1 day',
          day: new Date('2026-12-05T00:00:00.000Z'),
          amount: '1.50',
          amounts: ['1.5'],
        });
      }
    } finally {
      Object.assign(PGlite.prototype, { query, exec });
      await store.close();
    }
  });
});

// A group commit's bodies are one large bytea parameter: on PGlite it reaches the server as a
// file rather than as a hex literal, byte for byte the same.
describe.skipIf(Boolean(process.env.DATABASE_URL))('PGlite large binary parameters', () => {
  it('passes a large one as a file and a small one as a literal, both exactly', async () => {
    const { randomBytes } = await import('node:crypto');
    const store = await openStore({ kind: 'pglite', dataDir: undefined });
    const blobs: unknown[] = [];
    const exec = PGlite.prototype.exec;
    try {
      PGlite.prototype.exec = function (this: PGlite, ...args: Parameters<PGlite['exec']>) {
        if (args[0].startsWith('execute')) blobs.push(args[1]?.blob);
        return exec.apply(this, args);
      } as PGlite['exec'];
      const read = (big: Buffer, small: Buffer) =>
        queryPrepared<{ big: Buffer; small: Buffer; n: number }>(
          store.db,
          'bytes_test',
          sql`select ${big}::bytea as big, ${small}::bytea as small, length(${big}::bytea) as n`,
        );
      for (let i = 0; i < 3; i++) {
        const big = randomBytes(100_000 + i);
        const small = randomBytes(100);
        const [row] = await read(big, small);
        expect(Buffer.from(row?.big ?? []).equals(big)).toBe(true);
        expect(Buffer.from(row?.small ?? []).equals(small)).toBe(true);
        expect(row?.n).toBe(big.length);
      }
      // Executed as a prepared statement each time, each with its file: the one large parameter.
      expect(blobs).toHaveLength(3);
      for (const blob of blobs) expect((blob as Blob | undefined)?.size).toBeGreaterThanOrEqual(100_000);
    } finally {
      PGlite.prototype.exec = exec;
      await store.close();
    }
  });
});
