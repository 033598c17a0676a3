// Shared pieces of the benchmarks: child processes, free ports, autocannon runs, our API, scratch
// databases, percentiles, progress bars, tables, the machine and a process's memory, and the marked
// blocks of BENCHMARKS.md.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, loadavg, totalmem } from 'node:os';
import autocannon from 'autocannon';
import cliProgress from 'cli-progress';
import pg from 'pg';

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

export interface Child {
  proc: ChildProcess;
  output(): string;
  stop(): Promise<void>;
}

export function startChild(args: string[], env: NodeJS.ProcessEnv): Child {
  const proc = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  proc.stdout?.on('data', (d) => {
    output += d;
  });
  proc.stderr?.on('data', (d) => {
    output += d;
  });
  return {
    proc,
    output: () => output,
    stop: () =>
      new Promise((resolve) => {
        if (proc.exitCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.kill('SIGTERM');
      }),
  };
}

export async function waitFor(url: string, child: Child, deadlineMs = 30_000): Promise<void> {
  const start = Date.now();
  while (Date.now() - start < deadlineMs) {
    if (child.proc.exitCode !== null) throw new Error(`process exited early:\n${child.output()}`);
    try {
      if ((await fetch(url)).ok) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not answer within ${deadlineMs} ms:\n${child.output()}`);
}

export interface LoadResult {
  rps: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
  total: number;
}

/** Offers load at a fixed concurrency for `seconds`; `request()` makes each request's path, headers and body. */
export async function load(
  url: string,
  connections: number,
  seconds: number,
  request: () => { path: string; headers: Record<string, string>; body: string },
): Promise<LoadResult> {
  const result = await autocannon({
    url,
    connections,
    duration: seconds,
    method: 'POST',
    requests: [
      {
        setupRequest: (req) => {
          const r = request();
          return { ...req, method: 'POST', path: r.path, headers: r.headers, body: r.body };
        },
      },
    ],
  });
  return {
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors,
    total: result.requests.total,
  };
}

export function table(headers: string[], rows: (string | number)[][]): string {
  const lines = [`| ${headers.join(' | ')} |`, `| ${headers.map(() => '---').join(' | ')} |`];
  for (const row of rows) lines.push(`| ${row.join(' | ')} |`);
  return lines.join('\n');
}

/** JSON over HTTP to our own API (loosely typed: a benchmark script); throws on a non-2xx answer. */
export async function api(url: string, init: RequestInit & { token?: string } = {}) {
  const res = await fetch(url, {
    ...init,
    headers: {
      'content-type': 'application/json',
      ...(init.token ? { authorization: `Bearer ${init.token}` } : {}),
      ...init.headers,
    },
  });
  // biome-ignore lint/suspicious/noExplicitAny: loosely typed JSON of our own API, for a benchmark script.
  const body = (await res.json()) as Record<string, any>;
  if (!res.ok) throw new Error(`${init.method ?? 'GET'} ${url}: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

/** A fresh database on the PostgreSQL server at `server`; `drop()` removes it (connections and all). */
export async function scratchPostgres(
  server: string,
): Promise<{ name: string; url: string; drop(): Promise<void> }> {
  const name = `ic_bench_${randomBytes(4).toString('hex')}`;
  const run = async (query: string) => {
    const client = new pg.Client({ connectionString: server });
    await client.connect();
    try {
      await client.query(query);
    } finally {
      await client.end();
    }
  };
  await run(`create database ${name}`);
  const url = new URL(server);
  url.pathname = `/${name}`;
  return { name, url: url.toString(), drop: () => run(`drop database if exists ${name} with (force)`) };
}

/** The p-th percentile (0–100) of `sorted`, ascending; NaN when empty. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}

/**
 * Progress bars on stderr, one per label, when it is a terminal; silent otherwise (CI logs). Under
 * `bench/run.ts` (BENCH_PROGRESS=1) they become `@@progress` lines that the orchestrator draws.
 */
export function progressBars(total: number, labels: readonly string[]) {
  if (process.env.BENCH_PROGRESS === '1') {
    const last = new Map<string, number>();
    return {
      update: (label: string, value: number) => {
        const v = Math.min(value, total);
        if (v < total && Date.now() - (last.get(label) ?? 0) < 250) return;
        last.set(label, Date.now());
        reportProgress(label, v, total);
      },
      stop: () => {},
    };
  }
  if (!process.stderr.isTTY) return { update: (_label: string, _value: number) => {}, stop: () => {} };
  const width = Math.max(...labels.map((l) => l.length));
  const multi = new cliProgress.MultiBar(
    { format: '{label} [{bar}] {value}/{total} {eta_formatted}', stream: process.stderr, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  const bars = new Map(labels.map((l) => [l, multi.create(total, 0, { label: l.padEnd(width) })]));
  return {
    update: (label: string, value: number) => bars.get(label)?.update(Math.min(value, total)),
    stop: () => multi.stop(),
  };
}

/** Replaces the text between `<!-- name:start -->` and `<!-- name:end -->` in `path`; throws if absent. */
export function replaceMarked(path: string, name: string, text: string): void {
  const doc = readFileSync(path, 'utf8');
  const start = `<!-- ${name}:start -->`;
  const end = `<!-- ${name}:end -->`;
  const from = doc.indexOf(start);
  const to = doc.indexOf(end);
  if (from < 0 || to < from) throw new Error(`${path} has no ${start} … ${end} block`);
  writeFileSync(path, `${doc.slice(0, from + start.length)}\n${text}${doc.slice(to)}`);
}

/** A progress line for `bench/run.ts`, which draws one bar per phase from them (BENCH_PROGRESS=1). */
export function reportProgress(label: string, value: number, total: number): void {
  if (process.env.BENCH_PROGRESS === '1')
    process.stderr.write(`@@progress ${JSON.stringify({ label, value, total })}\n`);
}

/** The 1-min load average now: other work on the same cores shows in every figure. */
export const loadAverage = (): number => loadavg()[0] as number;

/** "2 cores (AMD EPYC), 24 GiB, Node v20.x, 2026-01-15": what every table's header names. */
export function machine(): string {
  const gib = Math.round(totalmem() / 2 ** 30);
  return `${cpus().length} cores (${cpus()[0]?.model.trim()}), ${gib} GiB, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}`;
}

/** Resident memory (VmRSS) of a process in MiB, from /proc; undefined off Linux or once it exited. */
export function rssMiB(pid: number | undefined): number | undefined {
  try {
    const kib = readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+) kB/m)?.[1];
    return kib === undefined ? undefined : Number(kib) / 1024;
  } catch {
    return undefined;
  }
}

/** The V8 heap in use (MiB) as the hub's `/metrics` reports it; undefined if it does not answer. */
export async function heapMiB(base: string): Promise<number | undefined> {
  try {
    const text = await (await fetch(`${base}/metrics`)).text();
    const bytes = text.match(/^interchange_nodejs_heap_size_used_bytes(?:\{[^}]*\})? (\S+)/m)?.[1];
    return bytes === undefined ? undefined : Number(bytes) / 2 ** 20;
  } catch {
    return undefined;
  }
}

/** "182 MiB (heap 61 MiB)": a hub process's memory now, for a table cell. */
export async function memoryCell(pid: number | undefined, base?: string): Promise<string> {
  const rss = rssMiB(pid);
  const heap = base ? await heapMiB(base) : undefined;
  if (rss === undefined) return '—';
  return heap === undefined ? `${rss.toFixed(0)} MiB` : `${rss.toFixed(0)} MiB (heap ${heap.toFixed(0)} MiB)`;
}

/** The machine's CPU time so far, busy and idle (ms summed over cores), from /proc/stat; undefined off Linux. */
export function machineCpuMs(): { busy: number; idle: number } | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    // cpu  user nice system idle iowait irq softirq steal: 100 Hz clock ticks
    const [user, nice, system, idle, iowait, irq, softirq, steal] = line
      .trim()
      .split(/\s+/)
      .slice(1, 9)
      .map(Number);
    const ticks = [user, nice, system, irq, softirq, steal].reduce<number>((a, b) => a + (b ?? 0), 0);
    return { busy: ticks * 10, idle: ((idle ?? 0) + (iowait ?? 0)) * 10 };
  } catch {
    return undefined;
  }
}

/** CPU time (user + system, ms) of a process so far, from /proc; undefined off Linux or once it exited. */
export function cpuMsOf(pid: number | undefined): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10; // utime + stime, in 100 Hz clock ticks
  } catch {
    return undefined;
  }
}

/**
 * CPU time so far (ms) of each PostgreSQL backend connected to `database` on the local server (the
 * one in DATABASE_URL, default local), by pid. Compare two readings with `backendsCpuDiff`.
 */
export async function backendsCpuMs(server: string, database: string): Promise<Map<number, number>> {
  const client = new pg.Client({ connectionString: server });
  await client.connect();
  try {
    const { rows } = await client.query<{ pid: number }>(
      'select pid from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()',
      [database],
    );
    const out = new Map<number, number>();
    for (const { pid } of rows) {
      const ms = cpuMsOf(pid);
      if (ms !== undefined) out.set(pid, ms);
    }
    return out;
  } finally {
    await client.end();
  }
}

/** CPU ms the backends spent between two readings (a backend started in between counts in full). */
export function backendsCpuDiff(before: Map<number, number>, after: Map<number, number>): number {
  let ms = 0;
  for (const [pid, now] of after) ms += now - (before.get(pid) ?? 0);
  return ms;
}
