// Private files (the embedded key file, the first admin credentials): owner-only, and on disk
// before they replace the old file.
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { writePrivateFile } from './keyring.ts';

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
