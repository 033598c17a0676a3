// Runs the `interchange` command as an operator or a supervisor does: a child process
// (bin/interchange.js) with its own environment, its output captured, and a free port to serve on.
import { type ChildProcessByStdio, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { CONFIG_KEYS } from '../../src/config.ts';

export const BIN = fileURLToPath(new URL('../../bin/interchange.js', import.meta.url));

/** This process's environment without Interchange's settings: each case says what it configures. */
export const baseEnv: NodeJS.ProcessEnv = Object.fromEntries(
  Object.entries(process.env).filter(([key]) => !CONFIG_KEYS.includes(key)),
);

export interface Cli {
  pid: number;
  stdout: string;
  stderr: string;
  /** undefined while it runs. */
  exitCode: number | null | undefined;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  proc: ChildProcessByStdio<null, Readable, Readable>;
  report(): string;
}

export function spawnCli(args: string[], env: Record<string, string>, cwd: string): Cli {
  const proc = spawn(process.execPath, [BIN, ...args], {
    cwd,
    env: { ...baseEnv, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const cli: Cli = {
    pid: proc.pid ?? -1,
    stdout: '',
    stderr: '',
    exitCode: undefined,
    proc,
    exited: new Promise((resolve) => {
      proc.on('error', (err) => {
        cli.stderr += `\n[spawn error] ${err.message}`;
        cli.exitCode = null;
        resolve({ code: null, signal: null });
      });
      proc.on('close', (code, signal) => {
        cli.exitCode = code;
        resolve({ code, signal });
      });
    }),
    report: () =>
      `$ interchange ${args.join(' ')} (exit ${String(cli.exitCode)})\n--- stdout\n${cli.stdout}\n--- stderr\n${cli.stderr}`,
  };
  proc.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    cli.stdout += chunk;
  });
  proc.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    cli.stderr += chunk;
  });
  return cli;
}

/** Waits for the command to exit, failing with its output after `ms`. */
export async function finished(cli: Cli, ms: number) {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`did not exit within ${ms} ms\n${cli.report()}`)), ms);
  });
  try {
    return await Promise.race([cli.exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export interface HttpResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One request on its own connection (no keep-alive: servers come and go on the same port). */
export function http(
  port: number,
  method: string,
  path: string,
  options: { headers?: Record<string, string>; body?: string; timeoutMs?: number } = {},
): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        agent: false,
        headers: options.headers,
        signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `GET path` on `port` until it answers 200, failing with the command's output after `ms`. */
export async function waitFor200(cli: Cli, port: number, path: string, ms: number): Promise<void> {
  const until = Date.now() + ms;
  let last = 'no answer yet';
  while (Date.now() < until) {
    if (cli.exitCode !== undefined) throw new Error(`exited before answering ${path}\n${cli.report()}`);
    try {
      const res = await http(port, 'GET', path, { timeoutMs: 1000 });
      if (res.status === 200) return;
      last = `${res.status} ${res.body}`;
    } catch (err) {
      last = String(err);
    }
    await sleep(100);
  }
  throw new Error(`did not answer GET ${path} within ${ms} ms (last: ${last})\n${cli.report()}`);
}

/**
 * Whether a process still runs (Linux: its /proc entry, a zombie counting as ended, as one whose
 * parent is gone may wait a while to be reaped; elsewhere: signal 0).
 */
export function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The state follows the command name, which is in parentheses and may contain spaces.
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && process.platform === 'linux') return false;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
