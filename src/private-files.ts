// Files only the hub's user may read: the embedded data directory (0700: the database, the
// generated key, the first admin credentials) and private files in it (0600, written whole).
import {
  chmodSync,
  closeSync,
  fchmodSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';

/** Permission bits of the group and of others. */
const SHARED_BITS = 0o077;

/** Creates `dir` (and its parents) if needed, and makes it the owner's alone (0700), as it is kept. */
export function makePrivateDirectory(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
}

/**
 * Takes the group's and others' permissions off everything under `dir` (and `dir` itself): files
 * that an earlier version, or a loose umask, left readable or writable by other users. Symbolic
 * links are left alone (chmod would follow them out of the directory).
 */
export function restrictTree(dir: string): void {
  const restrict = (path: string) => {
    const stat = lstatSync(path, { throwIfNoEntry: false });
    if (stat && !stat.isSymbolicLink() && (stat.mode & SHARED_BITS) !== 0)
      chmodSync(path, stat.mode & 0o7777 & ~SHARED_BITS);
  };
  restrict(dir);
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    restrict(join(entry.parentPath, entry.name));
  }
}

/**
 * Writes a file readable by its owner only, atomically and durably: the content reaches the disk
 * (fsync) before the rename makes it the file, and the rename itself is synced with its directory,
 * so a crash leaves the old file or the new one, never an empty or partial key file.
 */
export function writePrivateFile(path: string, content: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    // A leftover temporary file keeps its old mode through open: set it.
    fchmodSync(fd, 0o600);
    writeFileSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  syncDirectory(dirname(path));
}

function syncDirectory(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // Some platforms and file systems cannot sync a directory: the file itself is synced.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
