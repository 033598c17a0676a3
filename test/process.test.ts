// The hub as a process among others: a supervisor that reads its output through pipes and goes
// away before it.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { BIN, baseEnv, freePort, isRunning, sleep } from './helpers/cli.ts';

const root = mkdtempSync(join(tmpdir(), 'interchange-process-'));
let dirs = 0;
const freshDir = (name: string) => join(root, `${name}-${++dirs}`);
/** Processes a test started that its parent no longer watches: killed after each test. */
const orphans = new Set<number>();

afterEach(() => {
  for (const pid of orphans) {
    if (isRunning(pid)) process.kill(pid, 'SIGKILL');
    orphans.delete(pid);
  }
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

/**
 * A supervisor in miniature: spawns the hub with its stdout and stderr on pipes, reads them until
 * the hub says it listens, prints the hub's pid and exits, closing the pipes' reading ends.
 */
const SUPERVISOR = `
import { spawn } from 'node:child_process';
const [bin, args] = [process.env.HUB_BIN, JSON.parse(process.env.HUB_ARGS)];
const hub = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
let output = '';
const read = (chunk) => {
  output += chunk;
  if (output.includes('Interchange listening')) {
    process.stdout.write(String(hub.pid));
    process.exit(0);
  }
};
hub.stdout.on('data', read);
hub.stderr.on('data', read);
hub.on('exit', (code) => {
  process.stderr.write('hub exited early (' + code + '):\\n' + output);
  process.exit(1);
});
`;

/** Starts the hub under SUPERVISOR and resolves with its pid once the supervisor has exited. */
async function startOrphanedHub(env: Record<string, string>): Promise<number> {
  const script = join(root, 'supervisor.mjs');
  writeFileSync(script, SUPERVISOR);
  const supervisor = spawn(process.execPath, [script], {
    env: { ...baseEnv, ...env, HUB_BIN: BIN, HUB_ARGS: JSON.stringify(['start']) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  supervisor.stdout.setEncoding('utf8').on('data', (c: string) => {
    stdout += c;
  });
  supervisor.stderr.setEncoding('utf8').on('data', (c: string) => {
    stderr += c;
  });
  const code = await new Promise<number | null>((resolve) => supervisor.on('close', resolve));
  expect(code, stderr).toBe(0);
  const pid = Number(stdout);
  expect(Number.isInteger(pid) && pid > 0, stdout).toBe(true);
  orphans.add(pid);
  return pid;
}

describe('SIGTERM once the reader of the hub’s output is gone', () => {
  it('stops the hub (its log writes fail with EPIPE and must not hold it)', async () => {
    const pid = await startOrphanedHub({
      INTERCHANGE_DATA_DIR: freshDir('orphan'),
      PORT: String(await freePort()),
    });
    // At once: the first log line written after the supervisor left is the shutdown's own.
    process.kill(pid, 'SIGTERM');
    // Generous: a plain start stops in about a second and a half.
    const until = Date.now() + 20_000;
    while (isRunning(pid) && Date.now() < until) await sleep(100);
    expect(isRunning(pid), `hub ${pid} still runs 20 s after SIGTERM`).toBe(false);
  }, 60_000);
});
