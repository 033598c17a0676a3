// Shared by the reliability scenarios: whole `interchange start` processes (started, killed with
// SIGKILL, restarted), a fresh database for each scenario, and a tenant with a token made over
// HTTP, as a real deployment would be driven.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateKey } from '../../src/crypto/secret-box.ts';

const BIN = fileURLToPath(new URL('../../bin/interchange.js', import.meta.url));

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
      .once('error', reject)
      .listen(0, '127.0.0.1', () => {
        const address = srv.address();
        const port = typeof address === 'object' && address ? address.port : 0;
        srv.close(() => resolve(port));
      });
  });
}

export interface HubProcess {
  role: 'all' | 'api' | 'worker';
  /** http://127.0.0.1:PORT for roles with an API. */
  url: string;
  proc: ChildProcess;
  /** Everything the process wrote (stdout and stderr). */
  output(): string;
  exited: Promise<number | null>;
  /** SIGKILL: no shutdown at all, as in a crash. */
  kill(): Promise<void>;
  /** SIGTERM and wait for a clean exit. */
  stop(): Promise<number | null>;
}

export interface HubEnv {
  [key: string]: string;
}

/** A base environment: a fresh data dir and key, the test receiver allowed, quiet logs. */
const dataDirs: string[] = [];
// The scenario's data dirs go when its test process ends (an embedded database is large).
process.once('exit', () => {
  for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
});

export function hubEnv(extra: HubEnv = {}): HubEnv {
  const dataDir = mkdtempSync(join(tmpdir(), 'interchange-rel-'));
  dataDirs.push(dataDir);
  return {
    INTERCHANGE_DATA_DIR: dataDir,
    INTERCHANGE_SECRET_KEY: generateKey(),
    INTERCHANGE_EGRESS_ALLOW: '127.0.0.1/32',
    LOG_LEVEL: 'warn',
    ...extra,
  };
}

/** Starts `interchange start --role <role>`; resolves once /healthz answers (api roles) or the process is up. */
export async function startHub(role: HubProcess['role'], env: HubEnv, port?: number): Promise<HubProcess> {
  const p = port ?? (await freePort());
  const base: NodeJS.ProcessEnv = { ...process.env };
  for (const key of ['DATABASE_URL', 'REDIS_URL', 'KAFKA_BROKERS']) delete base[key];
  const proc = spawn(process.execPath, [BIN, 'start', '--role', role, '--port', String(p)], {
    // A worker says it has started at info level, which is how this waits for it.
    env: { ...base, ...env, ...(role === 'worker' ? { LOG_LEVEL: 'info' } : {}) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout?.on('data', (d) => (out += d));
  proc.stderr?.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const hub: HubProcess = {
    role,
    url: `http://127.0.0.1:${p}`,
    proc,
    output: () => out,
    exited,
    async kill() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      return exited;
    },
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (proc.exitCode !== null)
      throw new Error(`interchange (${role}) exited with ${proc.exitCode}:\n${out}`);
    if (role === 'worker') {
      if (/worker started/.test(out) || Date.now() > deadline) break;
    } else {
      try {
        if ((await fetch(`${hub.url}/healthz`)).ok) break;
      } catch {}
    }
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`interchange (${role}) did not start in 60 s:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return hub;
}

/** The first admin client's credentials, as the first start printed them once. */
export function adminCredentials(output: string): { clientId: string; clientSecret: string } {
  const id = /client_id:\s+(\S+)/.exec(output)?.[1];
  const secret = /client_secret:\s+(\S+)/.exec(output)?.[1];
  if (!id || !secret) throw new Error(`no admin credentials in the first start's output:\n${output}`);
  return { clientId: id, clientSecret: secret };
}

async function json(res: Response): Promise<Record<string, unknown>> {
  const body = (await res.json()) as Record<string, unknown>;
  if (!res.ok) throw new Error(`${res.status} ${JSON.stringify(body)}`);
  return body;
}

export async function tokenFor(
  url: string,
  creds: { clientId: string; clientSecret: string },
): Promise<string> {
  const res = await fetch(`${url}/oauth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      grant_type: 'client_credentials',
      client_id: creds.clientId,
      client_secret: creds.clientSecret,
    }),
  });
  return (await json(res)).access_token as string;
}

/** An organization and an enterprise-tier client with every organization scope; its token. */
export async function tenant(url: string, admin: { clientId: string; clientSecret: string }, name = 'Acme') {
  const adminToken = await tokenFor(url, admin);
  const headers = { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' };
  const org = await json(
    await fetch(`${url}/v1/organizations`, { method: 'POST', headers, body: JSON.stringify({ name }) }),
  );
  const client = await json(
    await fetch(`${url}/v1/api-clients`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ name: `${name} backend`, organization_id: org.id, tier: 'enterprise' }),
    }),
  );
  const creds = { clientId: client.id as string, clientSecret: client.client_secret as string };
  return { organizationId: org.id as string, creds, token: await tokenFor(url, creds) };
}

/** `fetch` with a bearer token and a JSON body; answers status and parsed JSON. */
export async function api(url: string, token: string, method: string, path: string, body?: unknown) {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {}
  return { status: res.status, body: parsed as Record<string, unknown> & { data?: unknown[] } };
}

/** Prints a scenario's figures in one block, so a CI log shows them. */
export function report(scenario: string, figures: Record<string, string | number>): void {
  const lines = Object.entries(figures).map(([k, v]) => `  ${k.padEnd(34)} ${v}`);
  process.stdout.write(`\n[reliability] ${scenario}\n${lines.join('\n')}\n`);
}
