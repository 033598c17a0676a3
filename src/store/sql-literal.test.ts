// sqlLiteral, fuzzed. On PGlite, queryPrepared writes a statement's parameters into EXECUTE as
// literals, so a literal that ended early would run what follows it as SQL. Hostile values of every
// kind a parameter takes (quotes, backslashes, E'' and U&'' prefixes, dollar quotes, comments,
// unicode, NULs, very long text, numbers, bigints, booleans, dates, objects, bytes) go through
// that real path and must come back identical, with a canary table untouched; on PostgreSQL
// (DATABASE_URL), a plain `select <literal>` must read them the same.
import { sql } from 'drizzle-orm';
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../../test/helpers/database.ts';
import { openStore, queryPrepared, queryRows, type Store, sqlLiteral } from './db.ts';

const RUNS = 300;

/** Pieces an injection would be made of, joined in any order, or any unicode text. */
const hostileText = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 64 }),
  fc
    .array(
      fc.constantFrom(
        "'",
        "''",
        '\\',
        "\\'",
        "\\\\'",
        "E'",
        "e'\\'",
        "U&'\\0027",
        "' UESCAPE '!",
        '$$',
        '$tag$',
        '$1',
        ';',
        '--',
        '/*',
        '*/',
        '(',
        ')',
        ',',
        '"',
        '\n',
        '\r\n',
        '\t',
        '\u2028',
        '\uFEFF',
        '\u00a0',
        'é',
        '🛒',
        '\\x41',
        '\\u0027',
        "' or '1'='1",
        "'; drop table canary; --",
        "'); create table pwned (x int); --",
        "'::text); insert into canary values ('pwned'); --",
      ),
      { maxLength: 24 },
    )
    .map((parts) => parts.join('')),
);
/** Text a parameter can hold: PostgreSQL's text has no U+0000. */
const storableText = hostileText.filter((s) => !s.includes('\u0000'));
/** A JSON object with hostile keys and values. */
const jsonObject = fc.dictionary(hostileText, fc.oneof(hostileText, fc.jsonValue()), {
  maxKeys: 6,
  noNullPrototype: true,
});
const int8 = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n });

interface Row {
  t: string;
  /** The text's UTF-8 bytes as the server holds them, in hex. */
  th: string;
  j: unknown;
  b: Uint8Array;
  i: string;
  n: string;
  o: boolean;
  f: number;
  /** The instant, in milliseconds since 1970, as the server read it. */
  d: string;
}

/** The statement under test: one parameter of each kind. */
const statement = (v: {
  text: string;
  object: Record<string, unknown>;
  bytes: Uint8Array;
  big: bigint;
  bool: boolean;
  num: number;
  date: Date;
}) =>
  sql`select ${v.text}::text as t, encode(convert_to(${v.text}::text, 'UTF8'), 'hex') as th,
        ${v.object}::json as j, ${v.bytes}::bytea as b,
        ${v.big}::int8::text as i, ${v.big}::numeric::text as n, ${v.bool}::bool as o, ${v.num}::float8 as f,
        (extract(epoch from ${v.date}::timestamptz) * 1000)::int8::text as d`;

const values = fc.record({
  text: storableText,
  object: jsonObject,
  bytes: fc.uint8Array({ maxLength: 64 }),
  big: int8,
  bool: fc.boolean(),
  num: fc.double(),
  // The years an ISO date has four digits for.
  date: fc.date({
    min: new Date('0001-01-01T00:00:00.000Z'),
    max: new Date('9999-12-31T23:59:59.999Z'),
    noInvalidDate: true,
  }),
});

type Values = typeof values extends fc.Arbitrary<infer T> ? T : never;

/**
 * The row as the values should come back: -0 is written `0`, as every driver writes it. PGlite's
 * reader decodes text with a TextDecoder that drops a leading U+FEFF as a byte order mark (its
 * parameters lose it the same way): the server's bytes say the literal carried it.
 */
function expectIdentical(row: Row, v: Values, pglite: boolean) {
  expect(row.th).toBe(Buffer.from(v.text).toString('hex'));
  expect(row.t).toBe(pglite ? v.text.replace(/^\uFEFF/, '') : v.text);
  expect(row.j).toEqual(JSON.parse(JSON.stringify(v.object)));
  expect(Buffer.from(row.b).equals(Buffer.from(v.bytes))).toBe(true);
  expect(row.i).toBe(String(v.big));
  expect(row.n).toBe(String(v.big));
  expect(row.o).toBe(v.bool);
  expect(Object.is(row.f, Object.is(v.num, -0) ? 0 : v.num)).toBe(true);
  expect(row.d).toBe(String(v.date.getTime()));
}

describe('sqlLiteral', () => {
  it('is one quoted string whose quotes are all doubled, and has no form for text holding U+0000', () => {
    fc.assert(
      fc.property(hostileText, (text) => {
        const literal = sqlLiteral(text);
        if (text.includes('\u0000')) {
          expect(literal).toBeUndefined();
          return;
        }
        expect(literal?.startsWith("'") && literal.endsWith("'")).toBe(true);
        const inner = (literal as string).slice(1, -1);
        // No quote stands alone inside: the literal cannot end before its last character.
        expect(inner.replaceAll("''", '')).not.toContain("'");
        expect(inner.replaceAll("''", "'")).toBe(text);
      }),
      { numRuns: 2000 },
    );
  });
});

// The store the tests run on: PGlite's PREPARE/EXECUTE path, or PostgreSQL's named statements.
describe('parameters through queryPrepared, fuzzed', () => {
  let database: TestDatabase;
  let store: Store;
  beforeAll(async () => {
    database = await createTestDatabase();
    store = await openStore(database.options);
    await store.db.execute(sql`create table canary (v text)`);
    await store.db.execute(sql`insert into canary values ('alive')`);
  });
  afterAll(async () => {
    await store?.close();
    await database?.drop();
  });
  const canaryAlive = async () => {
    expect(await queryRows(store.db, sql`select v from canary`)).toEqual([{ v: 'alive' }]);
    expect(await queryRows(store.db, sql`select 1 from pg_class where relname = 'pwned'`)).toEqual([]);
  };

  it('gives back every hostile value exactly, and runs none of it', async () => {
    await fc.assert(
      fc.asyncProperty(values, async (v) => {
        const [row] = await queryPrepared<Row>(store.db, 'fuzz_literals', statement(v));
        expectIdentical(row as Row, v, store.kind === 'pglite');
      }),
      { numRuns: RUNS },
    );
    await canaryAlive();
  });

  it('gives back very long text of quotes and backslashes, and bytes large enough to go as a file', async () => {
    const texts = [
      "'".repeat(1_000_000),
      "\\'".repeat(200_000),
      `E'${'\\'.repeat(100_001)}'; drop table canary; --`,
      '🛒'.repeat(100_000),
    ];
    for (const text of texts) {
      const bytes = Buffer.alloc(64 * 1024, 39);
      const [row] = await queryPrepared<{ t: string; b: Uint8Array }>(
        store.db,
        'fuzz_long',
        sql`select ${text}::text as t, ${bytes}::bytea as b`,
      );
      expect(row?.t === text).toBe(true);
      expect(Buffer.from(row?.b ?? []).equals(bytes)).toBe(true);
    }
    await canaryAlive();
  });

  it('refuses text holding U+0000 with the server own error, and runs none of it', async () => {
    await fc.assert(
      fc.asyncProperty(
        hostileText.map((s) => `${s}\u0000'; drop table canary; --`),
        async (text) => {
          await expect(
            queryPrepared(store.db, 'fuzz_nul', sql`select ${text}::text as t`),
          ).rejects.toMatchObject({ cause: expect.objectContaining({ code: '22021' }) });
        },
      ),
      { numRuns: 50 },
    );
    await canaryAlive();
  });
});

// sqlLiteral is PGlite's; this checks that its literals mean the same to a real PostgreSQL server
// (standard_conforming_strings on, as on PGlite), read as plain SQL text.
describe.skipIf(!process.env.DATABASE_URL)('literals read by PostgreSQL', () => {
  let client: pg.Client;
  beforeAll(async () => {
    client = new pg.Client({ connectionString: process.env.DATABASE_URL });
    await client.connect();
    await client.query('create temporary table canary (v text)');
    await client.query(`insert into canary values ('alive')`);
  });
  afterAll(async () => {
    await client?.end();
  });

  it('reads every hostile literal as the value it was made from', async () => {
    await fc.assert(
      fc.asyncProperty(values, async (v) => {
        const l = (value: unknown) => sqlLiteral(value) as string;
        const { rows } = await client.query<Row>(
          `select ${l(v.text)}::text as t, encode(convert_to(${l(v.text)}::text, 'UTF8'), 'hex') as th,
             ${l(v.object)}::json as j, ${l(Buffer.from(v.bytes))}::bytea as b,
             ${l(v.big)}::int8::text as i, ${l(v.big)}::numeric::text as n, ${l(v.bool)}::bool as o,
             ${l(v.num)}::float8 as f, (extract(epoch from ${l(v.date)}::timestamptz) * 1000)::int8::text as d`,
        );
        expectIdentical(rows[0] as Row, v, false);
      }),
      { numRuns: RUNS },
    );
    expect((await client.query('select v from canary')).rows).toEqual([{ v: 'alive' }]);
  });
});
