// The `interchange` command as an operator runs it: a child process (bin/interchange.js) talking
// over real sockets, on the embedded default (PGlite in a data dir) and, with DATABASE_URL, on PostgreSQL.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { generateKey, keyId, parseKey } from '../src/crypto/secret-box.ts';
import { openStore, queryRows, type StoreOptions } from '../src/store/db.ts';
import { ORGANIZATION_SCOPES } from '../src/tenancy/scopes.ts';
import {
  type Cli as BaseCli,
  finished as finishedWithin,
  freePort,
  http,
  sleep,
  spawnCli as spawnChild,
} from './helpers/cli.ts';
import { createTestDatabase, onPostgres, type TestDatabase } from './helpers/database.ts';

/** The documented limit for the first embedded start to answer /healthz. */
const FIRST_START_MS = 15_000;
/** Bounds for everything else: not promises, only there so that a hang fails with its output. */
const START_MS = 45_000;
const COMMAND_MS = 45_000;

const root = mkdtempSync(join(tmpdir(), 'interchange-cli-'));
let dirs = 0;
/** A fresh directory under this file's scratch root (removed in afterAll). */
const freshDir = (name: string) => join(root, `${name}-${++dirs}`);

interface Cli extends BaseCli {
  /** Kept across tests of its describe (killed in afterAll, not afterEach). */
  keep: boolean;
}

const children = new Set<Cli>();

/** A command run in this file's scratch root, killed after its test unless `keep`. */
function spawnCli(args: string[], env: Record<string, string>, keep = false): Cli {
  const cli: Cli = Object.assign(spawnChild(args, env, root), { keep });
  children.add(cli);
  void cli.exited.then(() => children.delete(cli));
  return cli;
}

/** Waits for the command to exit, failing with its output after `ms`. */
const finished = (cli: Cli, ms = COMMAND_MS) => finishedWithin(cli, ms);

async function runCli(args: string[], env: Record<string, string>) {
  const cli = spawnCli(args, env);
  const { code } = await finished(cli);
  return { code, stdout: cli.stdout, stderr: cli.stderr, report: cli.report() };
}

async function stop(cli: Cli, signal: NodeJS.Signals = 'SIGTERM') {
  if (cli.exitCode === undefined) cli.proc.kill(signal);
  return finished(cli);
}

async function killAll(which: (cli: Cli) => boolean) {
  await Promise.all([...children].filter(which).map((cli) => stop(cli, 'SIGKILL').catch(() => {})));
}

afterEach(() => killAll((cli) => !cli.keep));
afterAll(async () => {
  await killAll(() => true);
  rmSync(root, { recursive: true, force: true });
});

/** Polls GET /healthz until this child (and no other process) answers 200 on `port`. */
async function waitUntilHealthy(cli: Cli, port: number, ms: number): Promise<void> {
  const until = Date.now() + ms;
  let last = 'no answer yet';
  while (Date.now() < until) {
    if (cli.exitCode !== undefined) throw new Error(`exited before answering /healthz\n${cli.report()}`);
    if (cli.stdout.includes(`Server listening at http://127.0.0.1:${port}`)) {
      try {
        const res = await http(port, 'GET', '/healthz', { timeoutMs: 1000 });
        if (res.status === 200) return;
        last = `${res.status} ${res.body}`;
      } catch (err) {
        last = String(err);
      }
    }
    await sleep(100);
  }
  throw new Error(`did not answer GET /healthz within ${ms} ms (last: ${last})\n${cli.report()}`);
}

interface Credentials {
  clientId: string;
  clientSecret: string;
}

const tokenResponse = z.object({
  access_token: z.string().min(1),
  token_type: z.literal('Bearer'),
  scope: z.string(),
});

async function tokenFor(port: number, creds: Credentials, headers: Record<string, string> = {}) {
  const res = await http(port, 'POST', '/oauth/token', {
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams({
      grant_type: 'client_credentials',
      client_id: creds.clientId,
      client_secret: creds.clientSecret,
    }).toString(),
  });
  expect(res.status, res.body).toBe(200);
  return { ...tokenResponse.parse(JSON.parse(res.body)), res };
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** The credentials of the first-start banner on stderr; fails unless it appears exactly once. */
function printedCredentials(cli: Cli): Credentials {
  const ids = [...cli.stderr.matchAll(/client_id:\s+(\S+)/g)];
  const secrets = [...cli.stderr.matchAll(/client_secret:\s+(\S+)/g)];
  expect(ids.length, cli.report()).toBe(1);
  expect(secrets.length, cli.report()).toBe(1);
  return { clientId: ids[0]?.[1] as string, clientSecret: secrets[0]?.[1] as string };
}

const countOf = (text: string, needle: string) => text.split(needle).length - 1;

function jsonLines(text: string): Array<Record<string, unknown>> {
  return text
    .split('\n')
    .filter((line) => line.trim().startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

const modeOf = (path: string) => statSync(path).mode & 0o777;
const keyFile = z.object({ keys: z.array(z.string()) });
const readKeys = (dataDir: string) =>
  keyFile.parse(JSON.parse(readFileSync(join(dataDir, 'secret-keys.json'), 'utf8'))).keys;

describe('interchange start on the embedded default (first start healthy within 15 s)', () => {
  const dataDir = freshDir('embedded');
  const env = () => ({ INTERCHANGE_DATA_DIR: dataDir, PORT: String(port) });
  let port: number;
  let first: Cli;
  let admin: Credentials;
  /** Issued by the first process: later processes on the same data dir and port must accept it. */
  let firstToken: string;

  beforeAll(async () => {
    port = await freePort();
    first = spawnCli(['start'], env(), true);
    await waitUntilHealthy(first, port, FIRST_START_MS);
  }, FIRST_START_MS + 10_000);

  it('prints the admin credentials once on stderr and writes them and the key file with mode 0600', () => {
    admin = printedCredentials(first);
    expect(admin.clientId).toMatch(/^cli_[0-9a-f]{32}$/);
    expect(admin.clientSecret).toMatch(/^ics_[A-Za-z0-9_-]{43}$/);
    expect(countOf(first.stderr, admin.clientSecret)).toBe(1);
    expect(first.stdout).not.toContain(admin.clientSecret);

    const credentialsPath = join(dataDir, 'admin-credentials.json');
    expect(JSON.parse(readFileSync(credentialsPath, 'utf8'))).toEqual({
      client_id: admin.clientId,
      client_secret: admin.clientSecret,
    });
    expect(modeOf(credentialsPath)).toBe(0o600);
    const keys = readKeys(dataDir);
    expect(keys).toHaveLength(1);
    expect(parseKey(keys[0] as string)).toHaveLength(32);
    expect(modeOf(join(dataDir, 'secret-keys.json'))).toBe(0o600);
  });

  it('the printed credentials get a token from POST /oauth/token that the API accepts', async () => {
    const { access_token, scope } = await tokenFor(port, admin);
    expect(scope).toBe('admin');
    firstToken = access_token;
    const created = await http(port, 'POST', '/v1/organizations', {
      headers: { ...bearer(access_token), 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Acme' }),
    });
    expect(created.status, created.body).toBe(201);
    const listed = await http(port, 'GET', '/v1/organizations', { headers: bearer(access_token) });
    expect(listed.status).toBe(200);
    expect(listed.body).toContain('"name":"Acme"');
    expect((await http(port, 'GET', '/v1/organizations')).status).toBe(401);
    const wrong = await http(port, 'POST', '/oauth/token', {
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `grant_type=client_credentials&client_id=${admin.clientId}&client_secret=ics_wrong`,
    });
    expect(wrong.status).toBe(401);
  });

  it('logs JSON lines with request_id, echoes X-Request-Id, and never logs the secret or a token', async () => {
    const callerId = `cli-test-${randomBytes(4).toString('hex')}`;
    const byJson = await http(port, 'POST', '/oauth/token', {
      headers: { 'content-type': 'application/json', 'x-request-id': callerId },
      body: JSON.stringify({
        grant_type: 'client_credentials',
        client_id: admin.clientId,
        client_secret: admin.clientSecret,
      }),
    });
    expect(byJson.status, byJson.body).toBe(200);
    expect(byJson.headers['x-request-id']).toBe(callerId);
    const jsonToken = tokenResponse.parse(JSON.parse(byJson.body)).access_token;

    const basic = Buffer.from(`${admin.clientId}:${admin.clientSecret}`).toString('base64');
    const byBasic = await http(port, 'POST', '/oauth/token', {
      headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=client_credentials',
    });
    expect(byBasic.status, byBasic.body).toBe(200);
    const generatedId = byBasic.headers['x-request-id'];
    expect(generatedId).toMatch(/^[0-9a-f-]{36}$/);
    const basicToken = tokenResponse.parse(JSON.parse(byBasic.body)).access_token;

    const apiCall = await http(port, 'GET', '/v1/organizations', {
      headers: { ...bearer(jsonToken), 'x-request-id': `${callerId}-api` },
    });
    expect(apiCall.status).toBe(200);
    expect(apiCall.headers['x-request-id']).toBe(`${callerId}-api`);
    const tampered = await http(port, 'GET', '/v1/organizations', {
      headers: { ...bearer(`${basicToken}x`), 'x-request-id': `${callerId}-bad` },
    });
    expect(tampered.status).toBe(401);

    // Log lines are written as requests complete: wait (bounded) for the last one.
    const until = Date.now() + 10_000;
    while (!first.stdout.includes(`"request_id":"${callerId}-bad"`) && Date.now() < until) await sleep(50);

    const stdoutLines = first.stdout.split('\n').filter((line) => line.trim() !== '');
    for (const line of stdoutLines) expect(() => JSON.parse(line), line).not.toThrow();
    const logs = [...jsonLines(first.stdout), ...jsonLines(first.stderr)];
    const text = logs.map((l) => JSON.stringify(l)).join('\n');
    for (const secret of [admin.clientSecret, jsonToken, basicToken, firstToken, basic]) {
      expect(text).not.toContain(secret);
    }
    // The banner is the only place the secret was ever shown.
    expect(countOf(first.stdout + first.stderr, admin.clientSecret)).toBe(1);

    const requestLines = logs.filter((l) => 'req' in l || 'res' in l);
    expect(requestLines.length).toBeGreaterThanOrEqual(8);
    for (const line of requestLines)
      expect(line.request_id, JSON.stringify(line)).toEqual(expect.any(String));
    const ids = requestLines.map((l) => l.request_id);
    for (const id of [callerId, `${callerId}-api`, `${callerId}-bad`, generatedId]) expect(ids).toContain(id);
    expect(requestLines).toContainEqual(
      expect.objectContaining({
        request_id: callerId,
        req: expect.objectContaining({ url: '/oauth/token' }),
      }),
    );
  });

  it('a second start on the same data dir while the first runs fails fast with one line', async () => {
    const second = spawnCli(['start'], { INTERCHANGE_DATA_DIR: dataDir, PORT: String(await freePort()) });
    const { code } = await finished(second, 30_000);
    expect(code, second.report()).toBe(1);
    const lines = second.stderr.trim().split('\n');
    expect(lines, second.report()).toHaveLength(1);
    expect(lines[0]).toContain(`in use by process ${first.pid}`);
    expect(second.stdout).toBe('');
    // The running server is unharmed.
    expect((await http(port, 'GET', '/healthz')).status).toBe(200);
    await tokenFor(port, admin);
  });

  it('SIGTERM: exits with code 0 and logs "shut down cleanly"', async () => {
    const { code, signal } = await stop(first, 'SIGTERM');
    expect({ code, signal }, first.report()).toEqual({ code: 0, signal: null });
    expect(jsonLines(first.stdout).map((l) => l.msg)).toContain('shut down cleanly');
    expect(existsSync(join(dataDir, 'pglite.pid'))).toBe(false);
    await expect(http(port, 'GET', '/healthz', { timeoutMs: 2000 })).rejects.toThrow();
  });

  it('a restart on the same data dir prints no new secret and the same credentials still work', async () => {
    await stop(first);
    const credentialsBefore = readFileSync(join(dataDir, 'admin-credentials.json'), 'utf8');
    const keysBefore = readKeys(dataDir);
    const again = spawnCli(['start', '--port', String(port)], { INTERCHANGE_DATA_DIR: dataDir });
    await waitUntilHealthy(again, port, START_MS);
    expect(again.stderr).not.toContain('client_secret');
    expect(again.stdout + again.stderr).not.toContain(admin.clientSecret);
    expect(readFileSync(join(dataDir, 'admin-credentials.json'), 'utf8')).toBe(credentialsBefore);
    expect(readKeys(dataDir)).toEqual(keysBefore);

    const { access_token } = await tokenFor(port, admin);
    expect((await http(port, 'GET', '/v1/organizations', { headers: bearer(access_token) })).status).toBe(
      200,
    );
    const old = await http(port, 'GET', '/v1/organizations', { headers: bearer(firstToken) });
    expect(old.status, old.body).toBe(200);
    expect((await stop(again)).code, again.report()).toBe(0);
  }, 60_000);

  it('secrets rotate leaves one new key in the key file, and the next start still serves the old credentials', async () => {
    await stop(first);
    const [oldKey] = readKeys(dataDir);
    const rotated = await runCli(['secrets', 'rotate'], { INTERCHANGE_DATA_DIR: dataDir });
    expect(rotated.code, rotated.report).toBe(0);

    const keys = readKeys(dataDir);
    expect(keys).toHaveLength(1);
    const [newKey] = keys as [string];
    expect(newKey).not.toBe(oldKey);
    expect(modeOf(join(dataDir, 'secret-keys.json'))).toBe(0o600);
    expect(rotated.stdout).toContain(`1 secret(s) re-sealed under key ${keyId(parseKey(newKey))}.`);

    const after = spawnCli(['start'], env());
    await waitUntilHealthy(after, port, START_MS);
    expect(after.stderr).not.toContain('client_secret');
    const { access_token } = await tokenFor(port, admin);
    expect((await http(port, 'GET', '/v1/organizations', { headers: bearer(access_token) })).status).toBe(
      200,
    );
    // Same signing key, re-sealed: a token issued before the rotation is still good.
    const old = await http(port, 'GET', '/v1/organizations', { headers: bearer(firstToken) });
    expect(old.status, old.body).toBe(200);
    expect((await stop(after)).code, after.report()).toBe(0);

    // And the data really moved: the old key alone no longer opens it.
    const withOldKey = await runCli(['start'], { ...env(), INTERCHANGE_SECRET_KEY: oldKey as string });
    expect(withOldKey.code, withOldKey.report).toBe(1);
    expect(withOldKey.stderr).toContain('no key with id');
  }, 90_000);
});

describe('interchange migrate and admin commands', () => {
  const dataDir = freshDir('admin');
  let db: TestDatabase | undefined;
  let env: Record<string, string>;
  let store: StoreOptions;
  let organizationId: string;

  beforeAll(async () => {
    if (onPostgres) {
      db = await createTestDatabase();
      const url = db.url as string;
      env = { DATABASE_URL: url, INTERCHANGE_SECRET_KEY: generateKey(), INTERCHANGE_DATA_DIR: dataDir };
      store = { kind: 'postgres', url, poolSize: 1 };
    } else {
      env = { INTERCHANGE_DATA_DIR: dataDir };
      store = { kind: 'pglite', dataDir };
    }
  });
  afterAll(async () => {
    await killAll(() => true);
    await db?.drop();
  });

  /** Reads the database the commands wrote to (after they exited: PGlite has one owner at a time). */
  async function query<T>(text: string): Promise<T[]> {
    const s = await openStore(store);
    try {
      return await queryRows<T>(s.db, sql.raw(text));
    } finally {
      await s.close();
    }
  }

  it('migrate applies the migrations and exits 0, again and again', async () => {
    const journal = z
      .object({ entries: z.array(z.unknown()) })
      .parse(
        JSON.parse(
          readFileSync(new URL('../src/store/migrations/meta/_journal.json', import.meta.url), 'utf8'),
        ),
      );
    for (let run = 0; run < 2; run++) {
      const migrated = await runCli(['migrate'], env);
      expect(migrated.code, migrated.report).toBe(0);
      expect(migrated.stdout).toBe(`migrations applied (${onPostgres ? 'postgres' : 'pglite'})\n`);
      const [state] = await query<{ applied: number; organizations: string | null; clients: string | null }>(
        `select (select count(*)::int from drizzle.__drizzle_migrations) as applied,
                to_regclass('public.organizations')::text as organizations,
                to_regclass('public.api_clients')::text as clients`,
      );
      expect(state).toEqual({
        applied: journal.entries.length,
        organizations: 'organizations',
        clients: 'api_clients',
      });
    }
  }, 90_000);

  it('create-organization and create-client print JSON credentials that get a token once the server runs', async () => {
    const org = await runCli(['admin', 'create-organization', '--name', 'Northwind'], env);
    expect(org.code, org.report).toBe(0);
    const created = z.object({ id: z.string(), name: z.string() }).parse(JSON.parse(org.stdout));
    expect(created).toEqual({ id: expect.stringMatching(/^org_[0-9a-f]{32}$/), name: 'Northwind' });
    organizationId = created.id;

    const client = await runCli(
      [
        'admin',
        'create-client',
        '--name',
        'Northwind backend',
        '--organization',
        organizationId,
        '--tier',
        'basic',
      ],
      env,
    );
    expect(client.code, client.report).toBe(0);
    const creds = z
      .object({
        client_id: z.string(),
        client_secret: z.string(),
        organization_id: z.string(),
        scopes: z.array(z.string()),
        tier: z.string(),
      })
      .parse(JSON.parse(client.stdout));
    expect(creds).toMatchObject({
      organization_id: organizationId,
      tier: 'basic',
      scopes: [...ORGANIZATION_SCOPES],
    });
    expect(client.stderr).toBe('');

    const port = await freePort();
    const server = spawnCli(['start'], { ...env, PORT: String(port) });
    await waitUntilHealthy(server, port, START_MS);
    const { access_token, scope } = await tokenFor(port, {
      clientId: creds.client_id,
      clientSecret: creds.client_secret,
    });
    expect(scope.split(' ').sort()).toEqual([...ORGANIZATION_SCOPES].sort());
    expect((await http(port, 'GET', '/v1/users', { headers: bearer(access_token) })).status).toBe(200);
    const notAdmin = await http(port, 'GET', '/v1/organizations', { headers: bearer(access_token) });
    expect(notAdmin.status).toBe(403);

    // The organization is the one the admin API sees, and the client has the tier asked for.
    const admin = await tokenFor(port, printedCredentials(server));
    const seen = await http(port, 'GET', `/v1/organizations/${organizationId}`, {
      headers: bearer(admin.access_token),
    });
    expect(seen.status, seen.body).toBe(200);
    expect(JSON.parse(seen.body)).toMatchObject({ id: organizationId, name: 'Northwind' });
    const seenClient = await http(port, 'GET', `/v1/api-clients/${creds.client_id}`, {
      headers: bearer(admin.access_token),
    });
    expect(JSON.parse(seenClient.body)).toMatchObject({ organization_id: organizationId, tier: 'basic' });
    expect((await stop(server)).code, server.report()).toBe(0);
  }, 120_000);

  it('create-client refuses an unknown scope, an unknown organization and a mixed admin client, creating nothing', async () => {
    const unknownScope = await runCli(
      [
        'admin',
        'create-client',
        '--name',
        'Telepath',
        '--organization',
        organizationId,
        '--scopes',
        'users:read,telepathy',
      ],
      env,
    );
    expect(unknownScope.code, unknownScope.report).not.toBe(0);
    expect(unknownScope.stderr).toContain('unknown scope "telepathy"');
    expect(unknownScope.stdout).toBe('');

    const missing = `org_${'0'.repeat(32)}`;
    const unknownOrg = await runCli(
      ['admin', 'create-client', '--name', 'Telepath', '--organization', missing],
      env,
    );
    expect(unknownOrg.code, unknownOrg.report).toBe(1);
    expect(unknownOrg.stderr.trim().split('\n'), unknownOrg.report).toEqual([
      `interchange: organization ${missing} not found`,
    ]);

    const mixed = await runCli(
      ['admin', 'create-client', '--name', 'Telepath', '--scopes', 'users:read'],
      env,
    );
    expect(mixed.code, mixed.report).toBe(1);
    expect(mixed.stderr).toContain('an admin client (no --organization) has exactly the admin scope');

    const rows = await query<{ n: number }>(
      "select count(*)::int as n from api_clients where name = 'Telepath'",
    );
    expect(rows[0]?.n).toBe(0);
  }, 90_000);
});

describe('interchange help, keys and bad configuration', () => {
  it('--help, start --help, admin --help, admin create-client --help and secrets --help list their options and subcommands', async () => {
    const cases: Array<[string[], string[]]> = [
      [['--help'], ['start', 'migrate', 'admin', 'secrets', '--version']],
      [
        ['start', '--help'],
        ['--role <role>', '"all"', '"api"', '"worker"', '--port <n>'],
      ],
      [
        ['admin', '--help'],
        ['create-client', 'create-organization'],
      ],
      [
        ['admin', 'create-client', '--help'],
        ['--name <name>', '--organization <id>', '--scopes', '--tier'],
      ],
      [
        ['secrets', '--help'],
        ['rotate', 'generate-key'],
      ],
    ];
    const results = await Promise.all(cases.map(([args]) => runCli(args, {})));
    cases.forEach(([args, mentions], i) => {
      const result = results[i];
      expect(result?.code, result?.report).toBe(0);
      expect(result?.stdout).toMatch(new RegExp(`^Usage: interchange ${args.slice(0, -1).join(' ')}`.trim()));
      for (const mention of mentions) expect(result?.stdout, args.join(' ')).toContain(mention);
    });
  }, 60_000);

  it('secrets generate-key prints a new 44-character base64 key each time, touching nothing', async () => {
    const dataDir = freshDir('keys');
    const [a, b] = await Promise.all([
      runCli(['secrets', 'generate-key'], { INTERCHANGE_DATA_DIR: dataDir }),
      runCli(['secrets', 'generate-key'], { INTERCHANGE_DATA_DIR: dataDir }),
    ]);
    for (const run of [a, b]) {
      expect(run?.code, run?.report).toBe(0);
      expect(run?.stdout).toMatch(/^[A-Za-z0-9+/]{43}=\n$/);
      expect(parseKey(run?.stdout ?? '')).toHaveLength(32);
    }
    expect(a?.stdout).not.toBe(b?.stdout);
    expect(existsSync(dataDir)).toBe(false);
  }, 60_000);

  it('a bad PORT stops start-up with exit code 1 and one line naming PORT', async () => {
    const dataDir = freshDir('bad-port');
    const run = await runCli(['start'], { PORT: 'abc', INTERCHANGE_DATA_DIR: dataDir });
    expect(run.code, run.report).toBe(1);
    const lines = run.stderr.trim().split('\n');
    expect(lines, run.report).toHaveLength(1);
    expect(lines[0]).toMatch(/^interchange: invalid configuration: PORT /);
    expect(run.stdout).toBe('');
    expect(existsSync(dataDir)).toBe(false);
  }, 60_000);

  it('DATABASE_URL without INTERCHANGE_SECRET_KEY stops start-up with one line naming INTERCHANGE_SECRET_KEY', async () => {
    const dataDir = freshDir('no-key');
    const run = await runCli(['start'], {
      DATABASE_URL: 'postgres://x:hunter2@127.0.0.1:1/db',
      INTERCHANGE_DATA_DIR: dataDir,
    });
    expect(run.code, run.report).toBe(1);
    const lines = run.stderr.trim().split('\n');
    expect(lines, run.report).toHaveLength(1);
    expect(lines[0]).toContain('INTERCHANGE_SECRET_KEY is required when DATABASE_URL is set');
    expect(run.stdout + run.stderr).not.toContain('hunter2');
    expect(existsSync(dataDir)).toBe(false);
  }, 60_000);
});

describe('interchange start on PostgreSQL (requires DATABASE_URL)', () => {
  async function withDatabase(fn: (url: string) => Promise<void>) {
    const db = await createTestDatabase();
    try {
      await fn(db.url as string);
    } finally {
      await killAll(() => true);
      await db.drop();
    }
  }

  it.runIf(onPostgres)(
    'answers /readyz, prints the admin credentials once and never writes them to disk (requires DATABASE_URL)',
    () =>
      withDatabase(async (url) => {
        const dataDir = freshDir('postgres');
        const port = await freePort();
        const env = {
          DATABASE_URL: url,
          INTERCHANGE_SECRET_KEY: generateKey(),
          INTERCHANGE_DATA_DIR: dataDir,
          PORT: String(port),
        };
        const first = spawnCli(['start'], env);
        await waitUntilHealthy(first, port, START_MS);
        const ready = await http(port, 'GET', '/readyz');
        expect(ready.status, ready.body).toBe(200);
        expect(JSON.parse(ready.body)).toEqual({ status: 'ready' });
        const admin = printedCredentials(first);
        expect(first.stderr).not.toContain('also written to');
        expect(existsSync(join(dataDir, 'admin-credentials.json'))).toBe(false);
        expect(existsSync(join(dataDir, 'secret-keys.json'))).toBe(false);
        expect(jsonLines(first.stdout)).toContainEqual(expect.objectContaining({ storage: 'postgres' }));
        await tokenFor(port, admin);
        expect((await stop(first)).code, first.report()).toBe(0);

        const again = spawnCli(['start'], env);
        await waitUntilHealthy(again, port, START_MS);
        expect(again.stderr).not.toContain('client_secret');
        expect((await http(port, 'GET', '/readyz')).status).toBe(200);
        await tokenFor(port, admin);
        expect((await stop(again)).code, again.report()).toBe(0);
      }),
    90_000,
  );

  it.runIf(onPostgres)(
    'secrets rotate with INTERCHANGE_SECRET_KEY="NEW,OLD" lets a server with NEW alone serve the old credentials (requires DATABASE_URL)',
    () =>
      withDatabase(async (url) => {
        const port = await freePort();
        const [oldKey, newKey] = [generateKey(), generateKey()];
        const env = (key: string) => ({
          DATABASE_URL: url,
          INTERCHANGE_SECRET_KEY: key,
          INTERCHANGE_DATA_DIR: freshDir('postgres-rotate'),
          PORT: String(port),
        });
        const first = spawnCli(['start'], env(oldKey));
        await waitUntilHealthy(first, port, START_MS);
        const admin = printedCredentials(first);
        const before = await tokenFor(port, admin);
        expect((await stop(first)).code, first.report()).toBe(0);

        const rotated = await runCli(['secrets', 'rotate'], env(`${newKey},${oldKey}`));
        expect(rotated.code, rotated.report).toBe(0);
        expect(rotated.stdout).toContain(`1 secret(s) re-sealed under key ${keyId(parseKey(newKey))}.`);
        expect(rotated.stdout).toContain(`the others (${keyId(parseKey(oldKey))}) can be removed`);

        const after = spawnCli(['start'], env(newKey));
        await waitUntilHealthy(after, port, START_MS);
        const fresh = await tokenFor(port, admin);
        for (const token of [fresh.access_token, before.access_token]) {
          const res = await http(port, 'GET', '/v1/organizations', { headers: bearer(token) });
          expect(res.status, res.body).toBe(200);
        }
        expect((await stop(after)).code, after.report()).toBe(0);
      }),
    90_000,
  );
});
