// A PostgreSQL cluster of a test's own: `initdb` in a temp dir, `pg_ctl` on a free port of
// 127.0.0.1 only, trust auth; stopped and started at will (an outage), removed afterwards. Never
// the machine's shared server. As root, the server programs run as `postgres`, who owns the dir.
import { execFile, execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface PgBinaries {
  initdb: string;
  pgCtl: string;
  /** Prefix that runs a program as the cluster's owner (`runuser -u postgres --`), empty when not root. */
  asOwner: string[];
  owner: { uid: number; gid: number } | undefined;
}

function inPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

/** Debian/Ubuntu keep the server programs out of PATH, one folder per major version. */
function debianBinDirs(): string[] {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .filter((v) => /^\d+$/.test(v))
    .sort((a, b) => Number(b) - Number(a))
    .map((v) => join(root, v, 'bin'));
}

function find(name: string): string | undefined {
  return (
    inPath(name) ??
    [...debianBinDirs(), '/usr/local/pgsql/bin'].map((d) => join(d, name)).find((p) => existsSync(p))
  );
}

/** The server programs, or one sentence saying exactly what is missing. */
export function findPgBinaries(): PgBinaries | { missing: string } {
  const initdb = find('initdb');
  const pgCtl = find('pg_ctl');
  const absent = [initdb ? undefined : 'initdb', pgCtl ? undefined : 'pg_ctl'].filter(Boolean);
  if (!initdb || !pgCtl) {
    return {
      missing:
        `${absent.join(' and ')} not found (looked in PATH, /usr/lib/postgresql/*/bin and /usr/local/pgsql/bin); ` +
        'install the PostgreSQL server programs (Debian: apt-get install postgresql)',
    };
  }
  if (process.getuid?.() !== 0) return { initdb, pgCtl, asOwner: [], owner: undefined };
  // PostgreSQL refuses to run as root.
  const runuser = inPath('runuser') ?? ['/usr/sbin/runuser', '/sbin/runuser'].find((p) => existsSync(p));
  if (!runuser)
    return {
      missing: 'running as root, and runuser (util-linux) is not installed to run initdb as postgres',
    };
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    return { initdb, pgCtl, asOwner: [runuser, '-u', 'postgres', '--'], owner: { uid, gid } };
  } catch {
    return { missing: 'running as root, and there is no postgres user to run initdb and pg_ctl as' };
  }
}

export interface PgCluster {
  /** postgres://postgres@127.0.0.1:PORT/postgres */
  url: string;
  port: number;
  dir: string;
  /** `pg_ctl start -w`: resolves once the server accepts connections. */
  start(): Promise<void>;
  /** `pg_ctl stop -w -m <mode>`: immediate is a crash (recovery on the next start), fast an orderly stop. */
  stop(mode: 'immediate' | 'fast'): Promise<void>;
  /** The server's own log, for failure messages. */
  log(): string;
  /** Stops the server if it runs and removes the directory. Safe to call twice. */
  destroy(): Promise<void>;
}

export async function createCluster(bin: PgBinaries, port: number): Promise<PgCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'interchange-pg-'));
  if (bin.owner) chownSync(dir, bin.owner.uid, bin.owner.gid);
  const data = join(dir, 'data');
  const logFile = join(dir, 'server.log');
  // cwd: the owner may not be allowed into the caller's working directory.
  const exec = (program: string, args: string[]) => {
    const [cmd, ...rest] = [...bin.asOwner, program, ...args] as [string, ...string[]];
    return run(cmd, rest, { cwd: dir, timeout: 90_000 });
  };
  const cluster: PgCluster = {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    dir,
    async start() {
      await exec(bin.pgCtl, [
        'start',
        '-D',
        data,
        '-l',
        logFile,
        '-w',
        '-t',
        '60',
        '-o',
        `-p ${port} -h 127.0.0.1 -k ${dir} -c max_connections=60`,
      ]);
    },
    async stop(mode) {
      await exec(bin.pgCtl, ['stop', '-D', data, '-w', '-t', '60', '-m', mode]);
    },
    log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''),
    async destroy() {
      // postmaster.pid: a server runs, or was started and may still be coming up.
      if (existsSync(join(data, 'postmaster.pid'))) await cluster.stop('immediate').catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await exec(bin.initdb, [
      '-D',
      data,
      '-A',
      'trust',
      '-U',
      'postgres',
      '-E',
      'UTF8',
      '--no-locale',
      '--no-sync',
    ]);
    await cluster.start();
  } catch (err) {
    await cluster.destroy();
    throw new Error(
      `could not create the test's PostgreSQL cluster: ${(err as Error).message}\n${cluster.log()}`,
    );
  }
  return cluster;
}
