// Private files and directories (the embedded data dir, key file, first admin credentials):
// owner-only, and a file is on disk before it replaces the old one.
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { makePrivateDirectory, restrictTree, writePrivateFile } from './private-files.ts';

vi.mock('node:fs', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:fs')>();
  return { ...actual, fsyncSync: vi.fn(actual.fsyncSync), renameSync: vi.fn(actual.renameSync) };
});

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
  vi.mocked(fs.fsyncSync).mockClear();
  vi.mocked(fs.renameSync).mockClear();
});

describe('writePrivateFile', () => {
  it('writes mode 0600, syncs the content before the rename, and replaces the file whole', () => {
    const dir = fs.mkdtempSync(join(tmpdir(), 'interchange-keyring-'));
    dirs.push(dir);
    const path = join(dir, 'secret-keys.json');
    // A leftover temporary file of this process, readable by everyone, must not lend its mode.
    fs.writeFileSync(`${path}.${process.pid}.tmp`, 'stale', { mode: 0o644 });
    fs.chmodSync(`${path}.${process.pid}.tmp`, 0o644);

    writePrivateFile(path, '{"keys":["a"]}\n');

    expect(fs.readFileSync(path, 'utf8')).toBe('{"keys":["a"]}\n');
    expect(fs.statSync(path).mode & 0o777).toBe(0o600);
    expect(fs.readdirSync(dir)).toEqual(['secret-keys.json']);
    const fsync = vi.mocked(fs.fsyncSync).mock.invocationCallOrder;
    const rename = vi.mocked(fs.renameSync).mock.invocationCallOrder;
    expect(rename).toHaveLength(1);
    expect(fsync.length).toBeGreaterThanOrEqual(1);
    // The content is synced before the rename that makes it the file.
    expect(Math.min(...fsync)).toBeLessThan(rename[0] as number);
  });
});

/** Every path under `dir` (and `dir`) whose mode lets the group or others in, with that mode. */
function sharedEntries(dir: string): string[] {
  const paths = [dir, ...fs.readdirSync(dir, { recursive: true }).map((p) => join(dir, String(p)))];
  return paths
    .filter((p) => (fs.lstatSync(p).mode & 0o077) !== 0)
    .map((p) => `${p} ${(fs.lstatSync(p).mode & 0o777).toString(8)}`);
}

describe('makePrivateDirectory and restrictTree', () => {
  it('create the directory 0700 and take back what others could read or write under it', () => {
    const root = fs.mkdtempSync(join(tmpdir(), 'interchange-private-'));
    dirs.push(root);
    const dir = join(root, 'data');
    makePrivateDirectory(join(dir, 'nested'));
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
    expect(fs.statSync(join(dir, 'nested')).mode & 0o777).toBe(0o700);

    // An existing directory as an older version left it: 0755, files 0666 and 0644.
    fs.chmodSync(dir, 0o755);
    fs.mkdirSync(join(dir, 'pgdata', 'base'), { recursive: true, mode: 0o777 });
    fs.chmodSync(join(dir, 'pgdata'), 0o777);
    fs.writeFileSync(join(dir, 'pgdata', 'base', 'wal'), 'x', { mode: 0o666 });
    fs.chmodSync(join(dir, 'pgdata', 'base', 'wal'), 0o666);
    fs.writeFileSync(join(dir, 'pgdata', 'run.sh'), 'x', { mode: 0o755 });
    fs.chmodSync(join(dir, 'pgdata', 'run.sh'), 0o755);
    const outside = join(root, 'outside');
    fs.writeFileSync(outside, 'x', { mode: 0o644 });
    fs.chmodSync(outside, 0o644);
    fs.symlinkSync(outside, join(dir, 'pgdata', 'link'));
    expect(sharedEntries(dir).length).toBeGreaterThan(3);

    makePrivateDirectory(dir);
    restrictTree(join(dir, 'pgdata'));
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
    expect(sharedEntries(dir).filter((e) => !e.includes('/link '))).toEqual([]);
    // The owner keeps what it had (an executable stays executable).
    expect(fs.statSync(join(dir, 'pgdata', 'run.sh')).mode & 0o777).toBe(0o700);
    expect(fs.statSync(join(dir, 'pgdata', 'base', 'wal')).mode & 0o777).toBe(0o600);
    // A link is not followed out of the directory.
    expect(fs.statSync(outside).mode & 0o777).toBe(0o644);
  });
});
