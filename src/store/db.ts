// Database factory: PGlite (WASM Postgres) in the data dir when DATABASE_URL is unset, a
// node-postgres pool when it is set. Both are Postgres, so one schema and one migration set serve.
import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { PGlite, type QueryOptions, type Results, types } from '@electric-sql/pglite';
import { DrizzleQueryError, type SQL, sql } from 'drizzle-orm';
import { drizzle as drizzleNodePg } from 'drizzle-orm/node-postgres';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { PgDialect } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import pg from 'pg';
import { makePrivateDirectory, restrictTree } from '../private-files.ts';
import { schema } from './schema.ts';

export type Db = PgDatabase<PgQueryResultHKT, typeof schema>;

/**
 * PostgreSQL's LISTEN/NOTIFY, for waking other processes (the event log's consumers). A hint,
 * never the only way work is found: a notification lost while a listener reconnects costs a poll.
 */
export interface Notifier {
  /** Sends `payload` on `channel` to every listening session, of any process. */
  notify(channel: string, payload: string): Promise<void>;
  /** Calls `onNotify` with each notification's payload on its own connection, reconnecting as needed. */
  listen(channel: string, onNotify: (payload: string) => void): { close(): Promise<void> };
}

export interface Store {
  db: Db;
  kind: 'pglite' | 'postgres';
  /** On PostgreSQL (several processes may share it); PGlite belongs to one process. */
  notifier?: Notifier;
  /** Runs `fn` on one connection holding a session-level advisory lock (migrations, bootstrap). */
  withLock<T>(lockId: number, fn: (db: Db) => Promise<T>): Promise<T>;
  ping(): Promise<void>;
  close(): Promise<void>;
}

export type StoreOptions =
  | { kind: 'postgres'; url: string; poolSize: number }
  /** `dataDir` undefined: in memory (tests). */
  | { kind: 'pglite'; dataDir: string | undefined };

export class StoreLockedError extends Error {
  override name = 'StoreLockedError';
}

export async function openStore(options: StoreOptions): Promise<Store> {
  return options.kind === 'postgres'
    ? openPostgres(options.url, options.poolSize)
    : openPglite(options.dataDir);
}

/**
 * How long a query waits for a connection (to open one, or for a free one in the pool) before it
 * fails, as a 503: inside the 5 s a provider such as Shopify waits for its answer, so a server that
 * is out of reach (no refusal, just silence) gets the provider a clean 503 and its retry rather
 * than a timeout, with time left for the rest of the request. A refused connection fails at once.
 */
const CONNECT_TIMEOUT_MS = 3000;

/** A row when the server was built with lz4 TOAST compression (PostgreSQL ≥ 14 with lz4). */
const LZ4_PROBE = `select 1 from pg_settings where name = 'default_toast_compression' and 'lz4' = any(enumvals)`;

async function openPostgres(url: string, poolSize: number): Promise<Store> {
  const pool = new pg.Pool({
    connectionString: url,
    max: poolSize,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    // A server that vanished without closing its sockets (host down, failover) is noticed.
    keepAlive: true,
  });
  // A client losing its server (crash, restart, failover) emits 'error'. The pool listens on idle
  // clients and drops them; a checked-out one (inside a transaction) has no listener, and an
  // unheard 'error' would crash the process. Its query in flight rejects on its own, and the pool
  // discards a client that is no longer queryable when it is released; new connections are made
  // on demand, so a restarted server is simply reconnected to.
  pool.on('error', () => {});
  pool.on('connect', (client) => client.on('error', () => {}));
  markConnectErrors(pool);
  const db = drizzleNodePg(pool, { schema }) as unknown as Db;
  const dialect = new PgDialect();
  preparedRunners.set(db, async (name, query) => {
    const { sql: text, params } = dialect.sqlToQuery(query);
    try {
      return (await pool.query({ name, text, values: params })).rows;
    } catch (err) {
      // The shape Drizzle gives every other query's error, which the outage checks read.
      throw new DrizzleQueryError(text, params, err as Error);
    }
  });
  // Raw bodies and event data are mostly larger than the 2 KB at which values are compressed: lz4
  // compresses them several times faster than the default pglz, where the server has it (a
  // session setting: every connection from now on starts with it, and so does the first one).
  if ((await pool.query(LZ4_PROBE)).rows.length > 0) {
    (pool as unknown as { options: pg.PoolConfig }).options.options = '-c default_toast_compression=lz4';
    await pool.query('set default_toast_compression = lz4');
  }
  return {
    db,
    kind: 'postgres',
    notifier: postgresNotifier(url, pool),
    async withLock(lockId, fn) {
      const client = await pool.connect();
      try {
        await client.query('select pg_advisory_lock($1)', [lockId]);
        try {
          return await fn(drizzleNodePg(client, { schema }) as unknown as Db);
        } finally {
          await client.query('select pg_advisory_unlock($1)', [lockId]);
        }
      } finally {
        client.release();
      }
    },
    async ping() {
      await pool.query('select 1');
    },
    async close() {
      await pool.end();
    },
  };
}

const LISTEN_RETRY_MAX_MS = 5000;

function postgresNotifier(url: string, pool: pg.Pool): Notifier {
  return {
    async notify(channel, payload) {
      await pool.query('select pg_notify($1, $2)', [channel, payload]);
    },
    listen(channel, onNotify) {
      let closed = false;
      let client: pg.Client | undefined;
      let retryMs = 100;
      let timer: NodeJS.Timeout | undefined;
      const connect = async () => {
        if (closed) return;
        const c = new pg.Client({
          connectionString: url,
          connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
          keepAlive: true,
        });
        client = c;
        const retry = () => {
          if (closed || client !== c) return;
          client = undefined;
          c.end().catch(() => {});
          timer = setTimeout(connect, retryMs);
          retryMs = Math.min(LISTEN_RETRY_MAX_MS, retryMs * 2);
        };
        c.on('error', retry);
        c.on('end', retry);
        c.on('notification', (n) => {
          if (n.channel === channel) onNotify(n.payload ?? '');
        });
        try {
          await c.connect();
          // The channel is an identifier: quoted, as our own constant it holds no quote.
          await c.query(`listen "${channel}"`);
          retryMs = 100;
        } catch {
          retry();
        }
      };
      void connect();
      return {
        async close() {
          closed = true;
          clearTimeout(timer);
          const c = client;
          client = undefined;
          await c?.end().catch(() => {});
        },
      };
    },
  };
}

/** `bytea`'s type OID. */
const BYTEA = 17;

/**
 * PGlite's own bytea codec goes byte by byte through JavaScript arrays and strings (a group
 * commit's 500 KB of bodies took it tens of milliseconds); Node's hex codec does the same at once.
 */
const BYTEA_CODEC = {
  serializers: {
    [BYTEA]: (value: Uint8Array) =>
      `\\x${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex')}`,
  },
  parsers: { [BYTEA]: (text: string) => Buffer.from(text.slice(2), 'hex') },
};

/**
 * The types Drizzle asks PGlite to leave as text (it maps them itself): dates, timestamps and
 * intervals, their arrays, and numeric[]. Drizzle says so with a `parsers` option on every query,
 * and PGlite then copies its whole table of ~320 parsers to merge them in, at every query (about
 * 0.1 ms, as much as running a prepared statement). So the client itself leaves these types as
 * text, and Drizzle's option is dropped (`cachingPglite`); `queryPrepared` parses them as PGlite
 * would have (`parseTextTypes`), so what every caller gets is unchanged.
 */
const TEXT_TYPES = new Map<number, number | null>([
  // type → its element type, for arrays
  [types.DATE, null],
  [types.TIMESTAMP, null],
  [types.TIMESTAMPTZ, null],
  [types.INTERVAL, null],
  [1182, types.DATE],
  [1115, types.TIMESTAMP],
  [1185, types.TIMESTAMPTZ],
  [1187, types.INTERVAL],
  [1231, types.NUMERIC],
]);
const asText = (value: string) => value;

/** True for a query option that only leaves some of TEXT_TYPES as text, which the client does already. */
function onlyTextParsers(options: QueryOptions | undefined): boolean {
  const parsers = options?.parsers;
  return parsers !== undefined && Object.keys(parsers).every((id) => TEXT_TYPES.has(Number(id)));
}

/** A TEXT_TYPES value as PGlite parses it by default: a Date, an array of them, text. */
function parseAsPglite(text: string, type: number): unknown {
  const element = TEXT_TYPES.get(type);
  return element
    ? types.arrayParser(text, (value: string) => types.parseType(value, element), type)
    : types.parseType(text, type);
}

/** A result's TEXT_TYPES columns parsed as PGlite would have, in place. */
function parseTextTypes(result: Results): Results {
  const columns = result.fields.filter((f) => TEXT_TYPES.has(f.dataTypeID));
  if (columns.length === 0) return result;
  for (const row of result.rows as Record<string, unknown>[]) {
    for (const { name, dataTypeID } of columns) {
      const value = row[name];
      if (typeof value === 'string') row[name] = parseAsPglite(value, dataTypeID);
    }
  }
  return result;
}

async function openPglite(dataDir: string | undefined): Promise<Store> {
  const release = dataDir ? lockDataDir(dataDir) : () => {};
  let client: PGlite;
  try {
    client = await PGlite.create({
      ...(dataDir ? { dataDir: join(dataDir, 'pgdata') } : {}),
      ...BYTEA_CODEC,
    });
    // The database's files hold personal data. PGlite writes them 0666 whatever the umask; the
    // data dir (0700, lockDataDir) keeps other users out, and the files themselves are made the
    // owner's alone after opening and after closing, so that a copy or a looser parent does not
    // expose them either.
    if (dataDir) restrictTree(join(dataDir, 'pgdata'));
  } catch (err) {
    release();
    throw err;
  }
  // With standard_conforming_strings on (PostgreSQL's default), a literal needs only its quotes doubled.
  const strings = await client.query<{ value: string }>(
    "select current_setting('standard_conforming_strings') as value",
  );
  const literalsSafe = strings.rows[0]?.value === 'on';
  // After create: its start-up gives every array type a parser of its own, these included.
  for (const type of TEXT_TYPES.keys()) client.parsers[type] = asText;
  const execute = pgliteStatements(client);
  const db = drizzlePglite(literalsSafe ? cachingPglite(client, execute) : client, {
    schema,
  }) as unknown as Db;
  if (literalsSafe) preparedRunners.set(db, pglitePrepared(client, execute));
  return {
    db,
    kind: 'pglite',
    // PGlite is one connection in one process: nothing else can interleave.
    withLock: (_lockId, fn) => fn(db),
    async ping() {
      await db.execute(sql`select 1`);
    },
    async close() {
      await client.close();
      if (dataDir) restrictTree(join(dataDir, 'pgdata'));
      release();
    },
  };
}

/**
 * PGlite must be opened by one process at a time; a second one would corrupt the files. A pid
 * file in the data dir says who has it; a stale one (its process gone) is taken over.
 */
function lockDataDir(dataDir: string): () => void {
  makePrivateDirectory(dataDir);
  const path = join(dataDir, 'pglite.pid');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o600);
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => rmSync(path, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number.parseInt(readFileSync(path, 'utf8'), 10);
      if (Number.isInteger(pid) && pid !== process.pid && isAlive(pid)) {
        throw new StoreLockedError(
          `the embedded database in ${dataDir} is in use by process ${pid}; ` +
            'stop it, or set DATABASE_URL to run several processes on PostgreSQL',
        );
      }
      rmSync(path, { force: true });
    }
  }
  throw new StoreLockedError(`could not lock the embedded database in ${dataDir}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Errors the pool failed to open a connection with: Drizzle wraps query errors, not these. */
const connectErrors = new WeakSet<object>();

type ConnectCallback = (
  err: Error | undefined,
  client: pg.PoolClient | undefined,
  done: (release?: unknown) => void,
) => void;

/** Marks every error of `pool.connect` (promise or callback, as `pool.query` uses it) as the database's. */
function markConnectErrors(pool: pg.Pool): void {
  const connect = pool.connect.bind(pool) as (cb?: ConnectCallback) => Promise<pg.PoolClient> | undefined;
  const mark = <E>(err: E): E => {
    if (typeof err === 'object' && err !== null) connectErrors.add(err);
    return err;
  };
  Object.assign(pool, {
    connect: (cb?: ConnectCallback) =>
      cb
        ? connect((err, client, done) => cb(mark(err), client, done))
        : (connect() as Promise<pg.PoolClient>).catch((err: unknown) => {
            throw mark(err);
          }),
  });
}

/** Socket errors of a server that is gone or out of reach. */
const UNREACHABLE = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/**
 * SQLSTATEs of a server that cannot serve now: connection exceptions (class 08, but not 08P01
 * protocol_violation), 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now
 * (starting up, shutting down, in recovery), 53300 too_many_connections.
 */
const UNAVAILABLE_STATE = new Set([
  '08000',
  '08001',
  '08003',
  '08004',
  '08006',
  '08007',
  '57P01',
  '57P02',
  '57P03',
  '53300',
]);

/** What node-postgres, pg-pool and PGlite say, without a code, when the connection is gone. */
const UNAVAILABLE_MESSAGE =
  /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Client was closed and is not queryable|Cannot use a pool after calling end|PGlite is closed)/;

/**
 * True when `err` says the database is down or unreachable (not that a query was wrong), so the
 * request may succeed later: a 503. Drizzle wraps driver errors (`DrizzleQueryError` with the
 * driver's error as `cause`), and a failed connect can be an AggregateError: the whole chain is
 * read. SQLSTATEs and the drivers' messages are the database's own words wherever they appear; a
 * bare socket error counts only from the database (under a DrizzleQueryError or from the pool's
 * connect), so an outbound HTTP call that was refused is not taken for a database outage.
 */
export function isDatabaseUnavailable(err: unknown): boolean {
  const seen = new Set<unknown>();
  const pending: [unknown, boolean][] = [[err, false]];
  while (pending.length > 0 && seen.size < 32) {
    const [e, underDb] = pending.shift() as [unknown, boolean];
    if (typeof e !== 'object' || e === null || seen.has(e)) continue;
    seen.add(e);
    const fromDb = underDb || e instanceof DrizzleQueryError || connectErrors.has(e);
    const { code, message, cause, errors } = e as {
      code?: unknown;
      message?: unknown;
      cause?: unknown;
      errors?: unknown;
    };
    if (typeof code === 'string' && (UNAVAILABLE_STATE.has(code) || (fromDb && UNREACHABLE.has(code))))
      return true;
    if (typeof message === 'string' && UNAVAILABLE_MESSAGE.test(message)) return true;
    pending.push([cause, fromDb]);
    if (Array.isArray(errors)) pending.push(...errors.map((x): [unknown, boolean] => [x, fromDb]));
  }
  return false;
}

/**
 * The driver's own error inside Drizzle's wrapper, for logs: `DrizzleQueryError`'s message carries
 * the query's parameters, which may be a provider's payload and its signature headers.
 */
export function driverError(err: unknown): unknown {
  let e = err;
  for (let depth = 0; depth < 8; depth++) {
    const cause = (e as { cause?: unknown } | null)?.cause;
    if (typeof cause !== 'object' || cause === null) break;
    e = cause;
  }
  return e;
}

/**
 * From this size on, a binary parameter reaches PGlite's server as the file `/dev/blob` (PGlite's
 * `blob` option writes it there for the one query; the statement reads it with
 * `pg_read_binary_file`) instead of a hex literal: a literal twice the size of the bytes goes
 * through the protocol and the server's parser, 7 ms for 256 KB against 1.2 ms as a file; below
 * about 4 KB the file's fixed cost makes the literal faster.
 */
const BLOB_MIN_BYTES = 8 * 1024;
const BLOB_FILE = "pg_read_binary_file('/dev/blob')";

/**
 * PGlite's API has no named statements, and it parses and plans every query it is given (a log
 * poll: 0.6 ms, of which 0.2 ms is the execution). A statement is PREPAREd once in SQL and then
 * run with EXECUTE, its parameters written as literals that take the prepared parameters' types,
 * as text parameters of the protocol would. A parameter with no literal form here (an array,
 * text holding U+0000) runs the statement the ordinary way. `execute` answers undefined when it did not run it.
 */
function pgliteStatements(client: PGlite) {
  // Each name is prepared once, by the first call; calls meanwhile wait for that one.
  const prepared = new Map<string, Promise<unknown>>();
  return async function execute(
    name: string,
    text: string,
    params: unknown[],
    options?: QueryOptions,
  ): Promise<Results | undefined> {
    // A large binary parameter (a group commit's bodies) goes in as a file PGlite's server reads,
    // not as a literal: see BLOB_MIN_BYTES.
    if (!/^[a-z_][a-z0-9_]*$/.test(name)) return undefined;
    let file: Uint8Array | undefined;
    const literals = params.map((param) => {
      if (file || !(param instanceof Uint8Array) || param.byteLength < BLOB_MIN_BYTES)
        return sqlLiteral(param);
      file = param;
      return BLOB_FILE;
    });
    if (literals.some((l) => l === undefined)) return undefined;
    const blob = file && new Blob([file]);
    let preparing = prepared.get(name);
    if (!preparing) {
      // One statement only: the extended protocol refuses several, which `exec` would run.
      preparing = client.query(`prepare ${name} as ${text}`);
      prepared.set(name, preparing);
      preparing.catch(() => prepared.delete(name));
    }
    await preparing;
    // In the simple protocol: one message and one sync, where `query` (the extended protocol) makes
    // six calls into PGlite's server (parse, two describes, bind, execute, sync) for a statement
    // that has no parameters left to bind: 72 µs against 101–126 for a one-row select. The rows,
    // their fields and `rowMode` come out as `query` gives them; the literals are quoted by
    // `sqlLiteral`, so the text is this one statement.
    const [result] = await client.exec(
      literals.length ? `execute ${name}(${literals.join(', ')})` : `execute ${name}`,
      blob ? { ...options, blob } : options,
    );
    // It ran: never answer undefined here, which would have the caller run it again.
    if (!result) throw new Error(`PGlite gave no result for execute ${name}`);
    return result;
  };
}

/** `queryPrepared` on PGlite: the statement under its own name. */
function pglitePrepared(client: PGlite, execute: ReturnType<typeof pgliteStatements>) {
  const dialect = new PgDialect();
  return async (name: string, query: SQL): Promise<unknown[]> => {
    const { sql: text, params } = dialect.sqlToQuery(query);
    try {
      return parseTextTypes((await execute(name, text, params)) ?? (await client.query(text, params))).rows;
    } catch (err) {
      // The shape Drizzle gives every other query's error, which the outage checks read.
      throw new DrizzleQueryError(text, params, err as Error);
    }
  };
}

/** Statements PGlite's cache keeps at most, and how often a text must come before it is kept. */
const PGLITE_STATEMENTS = 256;
const PGLITE_PREPARE_AFTER = 2;
const CACHEABLE = /^\s*(select|insert|update|delete|with)\b/i;

/**
 * The PGlite client Drizzle is given: a query whose text comes back (Drizzle's queries repeat
 * their text, only their parameters change) is prepared on its second call and executed from
 * then on, up to PGLITE_STATEMENTS texts; any other query, and every one in a transaction (its
 * own client), goes to PGlite as it is. A text the server cannot prepare is never tried again.
 */
function cachingPglite(client: PGlite, execute: ReturnType<typeof pgliteStatements>): PGlite {
  const seen = new Map<string, number>();
  const names = new Map<string, string | null>();
  const query = async (text: string, params: unknown[] = [], given?: QueryOptions) => {
    const options = onlyTextParsers(given) ? { ...given, parsers: undefined } : given;
    let name = names.get(text);
    if (name === undefined && CACHEABLE.test(text) && names.size < PGLITE_STATEMENTS) {
      const count = (seen.get(text) ?? 0) + 1;
      if (seen.size > 4 * PGLITE_STATEMENTS) seen.clear();
      seen.set(text, count);
      if (count >= PGLITE_PREPARE_AFTER) {
        name = `ic_s${names.size + 1}`;
        names.set(text, name);
        seen.delete(text);
      }
    }
    if (name) {
      try {
        const result = await execute(name, text, params, options);
        if (result) return result;
      } catch (err) {
        // Not preparable (its parameters' types cannot be told without values, say): run it as
        // it is from now on. A failure of the statement itself fails again below, as it would.
        if (!(await preparedAlready(client, name))) names.set(text, null);
        else throw err;
      }
    }
    return client.query(text, params, options);
  };
  return new Proxy(client, {
    get(target, key, receiver) {
      if (key === 'query') return query;
      const value = Reflect.get(target, key, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

async function preparedAlready(client: PGlite, name: string): Promise<boolean> {
  const { rows } = await client.query('select 1 from pg_prepared_statements where name = $1', [name]);
  return rows.length > 0;
}

/**
 * A parameter as an SQL literal (with standard_conforming_strings on, a quote is the only
 * character to double): text, numbers, booleans, dates and JSON as quoted strings the prepared
 * parameter's type reads, bytes in bytea's hex form; undefined for an array, and for text holding
 * U+0000 (it would end the statement's text; as a parameter the server refuses it with its code).
 */
export function sqlLiteral(value: unknown): string | undefined {
  if (value === null || value === undefined) return 'null';
  if (Array.isArray(value)) return undefined;
  let text: string;
  if (typeof value === 'string') text = value;
  else if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean')
    text = String(value);
  else if (value instanceof Date) text = value.toISOString();
  else if (value instanceof Uint8Array)
    text = `\\x${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex')}`;
  else text = JSON.stringify(value);
  if (text.includes('\u0000')) return undefined;
  return `'${text.replaceAll("'", "''")}'`;
}

/** Pools whose statements can be named (node-postgres keeps them per connection), by their Db. */
const preparedRunners = new WeakMap<Db, (name: string, query: SQL) => Promise<unknown[]>>();

/**
 * `queryRows` for a hot statement whose text never changes (only its parameters do): on a
 * PostgreSQL pool it runs as a named prepared statement, parsed once per connection and planned
 * from the server's plan cache instead of at every call; on PGlite, PREPAREd once and EXECUTEd
 * (`pglitePrepared`). In a transaction it is `queryRows`. `name` must stand for one statement
 * text only.
 */
export async function queryPrepared<T>(db: Db, name: string, query: SQL): Promise<T[]> {
  const run = preparedRunners.get(db);
  return run ? ((await run(name, query)) as T[]) : queryRows<T>(db, query);
}

/**
 * A json or jsonb column of a raw query's row as the driver gave it: parsed already, or (PGlite in
 * a transaction, where Drizzle's own parsers apply) as text. Only for columns holding objects,
 * arrays or null: a JSON string value would come parsed and be parsed again.
 */
export const jsonColumn = <T>(value: T | string): T =>
  typeof value === 'string' ? (JSON.parse(value) as T) : value;

/** Runs raw SQL and returns its rows: both drivers answer `{ rows }`, which Drizzle's generic type does not show. */
export async function queryRows<T>(db: Db, query: SQL): Promise<T[]> {
  const result = (await db.execute(query)) as unknown as { rows: T[] };
  return result.rows;
}
