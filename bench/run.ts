// bench/run: `npm run bench` runs every benchmark in turn (ingest, delivery on PGlite and on
// PostgreSQL, end to end, API), each in a process of its own, with a progress bar per phase, then
// prints a summary and, by default, has each rewrite its table in BENCHMARKS.md. Run: npm run bench
// [-- --only ingest,delivery,e2e,api --storage pglite,postgres --quick --no-write --write];
// --quick makes short runs that only print (unless --write). PostgreSQL is the server in
// DATABASE_URL (default local; each benchmark makes a scratch database there and drops it); if it
// does not answer, the PostgreSQL parts are left out and the summary says so.
import { spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import cliProgress from 'cli-progress';
import pg from 'pg';
import { DEFAULT_SERVER, type Storage } from './hub.ts';
import { loadAverage, machine, replaceMarked } from './lib.ts';

const args = process.argv.slice(2);
const option = (name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const quick = args.includes('--quick');
const write = !args.includes('--no-write') && (args.includes('--write') || !quick);
const only = option('--only')?.split(',');
const server = process.env.DATABASE_URL ?? DEFAULT_SERVER;
const PHASE_LIMIT_MS = 20 * 60_000;

interface Phase {
  name: string;
  script: string;
  args: string[];
  env?: Record<string, string | undefined>;
}

async function postgresAnswers(): Promise<boolean> {
  const client = new pg.Client({ connectionString: server, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.query('select 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

function phases(storages: Storage[]): Phase[] {
  const w = write ? ['--write'] : [];
  const list = storages.join(',');
  const all: Phase[] = [
    {
      name: 'ingest',
      script: 'bench/ingest.ts',
      args: [
        ...(quick ? ['--seconds', '2', '--levels', '1,32'] : []),
        ...(storages.length === 1 ? ['--only', storages[0] as string] : []),
        ...w,
      ],
      env: { DATABASE_URL: server },
    },
    ...storages.map(
      (s): Phase => ({
        name: `delivery (${s === 'pglite' ? 'PGlite' : 'PostgreSQL'})`,
        script: 'bench/delivery.ts',
        args: [...(quick ? ['--events', '300'] : []), ...(s === 'postgres' ? ['--postgres'] : []), ...w],
        // delivery.ts takes DATABASE_URL as "run on PostgreSQL": only for that run.
        env: { DATABASE_URL: s === 'postgres' ? server : undefined },
      }),
    ),
    {
      name: 'e2e',
      script: 'bench/e2e.ts',
      args: [...(quick ? ['--seconds', '3'] : []), '--storage', list, ...w],
      env: { DATABASE_URL: server },
    },
    {
      name: 'api',
      script: 'bench/api.ts',
      args: [
        ...(quick ? ['--seconds', '3', '--events', '300', '--users', '50'] : []),
        '--storage',
        list,
        ...w,
      ],
      env: { DATABASE_URL: server },
    },
  ];
  return all.filter((p) => !only || only.some((o) => p.name.startsWith(o)));
}

interface Outcome {
  phase: Phase;
  code: number;
  seconds: number;
  load: number;
  stdout: string;
}

const tty = process.stderr.isTTY;
const multi = tty
  ? new cliProgress.MultiBar(
      {
        format: '{phase} [{bar}] {percentage}% | {step} {value}/{total} | {duration_formatted}',
        stream: process.stderr,
        hideCursor: true,
        clearOnComplete: false,
        stopOnComplete: false,
      },
      cliProgress.Presets.shades_classic,
    )
  : undefined;
const log = (line: string) => {
  if (multi) multi.log(`${line}\n`);
  else process.stderr.write(`${line}\n`);
};

/** Runs one benchmark's process; its progress lines drive the phase's bar, the rest goes to the log. */
function run(phase: Phase, width: number, logFile: string): Promise<Outcome> {
  const load = loadAverage();
  const started = Date.now();
  const env: NodeJS.ProcessEnv = { ...process.env, BENCH_PROGRESS: '1' };
  for (const [k, v] of Object.entries(phase.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  const child = spawn(process.execPath, ['--import', 'tsx', phase.script, ...phase.args], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const bar = multi?.create(1, 0, { phase: phase.name.padEnd(width), step: 'starting' });
  if (!multi) log(`== ${phase.name}: node ${phase.script} ${phase.args.join(' ')} (load ${load.toFixed(2)})`);
  appendFileSync(logFile, `\n== ${phase.name}: ${phase.script} ${phase.args.join(' ')}\n`);
  let stdout = '';
  child.stdout.on('data', (d) => {
    stdout += d;
    appendFileSync(logFile, d);
  });
  createInterface({ input: child.stderr }).on('line', (line) => {
    const m = line.match(/^@@progress (.*)$/);
    if (m) {
      const p = JSON.parse(m[1] as string) as { label: string; value: number; total: number };
      bar?.setTotal(p.total);
      bar?.update(p.value, { step: p.label });
      return;
    }
    appendFileSync(logFile, `${line}\n`);
    if (line.trim()) log(`  ${phase.name}: ${line}`);
  });
  const timer = setTimeout(() => child.kill('SIGTERM'), PHASE_LIMIT_MS);
  return new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      const outcome = {
        phase,
        code: code ?? (signal ? 128 : 1),
        seconds: (Date.now() - started) / 1000,
        load,
        stdout,
      };
      bar?.update(bar.getTotal(), { step: outcome.code === 0 ? 'done' : `FAILED (exit ${outcome.code})` });
      bar?.stop();
      if (!multi)
        log(
          `== ${phase.name}: ${outcome.code === 0 ? 'done' : `FAILED (exit ${outcome.code})`} in ${outcome.seconds.toFixed(0)} s`,
        );
      resolve(outcome);
    });
  });
}

async function main() {
  const started = Date.now();
  const requested = (option('--storage') ?? 'pglite,postgres').split(',') as Storage[];
  const notes: string[] = [];
  let storages = requested;
  if (requested.includes('postgres') && !(await postgresAnswers())) {
    storages = requested.filter((s) => s !== 'postgres');
    notes.push(`PostgreSQL at ${server.replace(/\/\/[^@]*@/, '//')} did not answer: its runs were left out.`);
  }
  if (storages.length === 0) throw new Error('no storage to run on');
  const list = phases(storages);
  const logFile = join(tmpdir(), `interchange-bench-${new Date().toISOString().replace(/[:.]/g, '-')}.log`);
  const width = Math.max(...list.map((p) => p.name.length));
  const loadAtStart = loadAverage();
  const outcomes: Outcome[] = [];
  for (const phase of list) outcomes.push(await run(phase, width, logFile));
  multi?.stop();

  const minutes = (Date.now() - started) / 60_000;
  const failed = outcomes.filter((o) => o.code !== 0);
  console.log('\n# Summary\n');
  for (const o of outcomes)
    console.log(`## ${o.phase.name}\n${o.stdout.replace(/\nupdated BENCHMARKS.md\n?/, '\n').trim()}\n`);
  console.log('| phase | result | time | 1-min load before |');
  console.log('| --- | --- | --- | --- |');
  for (const o of outcomes)
    console.log(
      `| ${o.phase.name} | ${o.code === 0 ? 'ok' : `FAILED (exit ${o.code})`} | ${o.seconds.toFixed(0)} s | ${o.load.toFixed(2)} |`,
    );
  for (const n of notes) console.log(`\n${n}`);
  console.log(`\n${minutes.toFixed(1)} min in all; full output in ${logFile}`);

  if (write && !only) {
    const status = outcomes
      .map(
        (o) =>
          `${o.phase.name} ${o.code === 0 ? 'ok' : `failed (exit ${o.code}; a table it did not rewrite is from an earlier run)`} in ${o.seconds.toFixed(0)} s, load ${o.load.toFixed(2)} before`,
      )
      .join('; ');
    // A 1-min average: before each phase but the first it still holds the previous phase's own
    // load, which takes about a minute to fade. Only the start says whether other work was running.
    if (loadAtStart > cpus().length)
      notes.push(
        `The 1-min load average was ${loadAtStart.toFixed(2)} at the start, above the ${cpus().length} cores: other work (or a benchmark just before) was running, so read the absolute figures as a floor and the ratios as rough. The loads before later phases include the previous phase's own.`,
      );
    replaceMarked(
      'BENCHMARKS.md',
      'bench:run',
      `Last full run: ${machine()}; ${minutes.toFixed(0)} minutes; 1-min load average at the start ${loadAtStart.toFixed(2)}. Phases: ${status}.${notes.length ? ` ${notes.join(' ')}` : ''}\n`,
    );
    console.log('updated BENCHMARKS.md');
  }
  if (failed.length) {
    console.error(`\nFAILED: ${failed.map((o) => o.phase.name).join(', ')} (see above and ${logFile})`);
    process.exitCode = 1;
  }
}

await main();
