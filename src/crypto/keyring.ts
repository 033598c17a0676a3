// Where the master keys come from: INTERCHANGE_SECRET_KEY (comma-separated, first encrypts), or in
// embedded mode a key file generated on first start in the data dir with mode 0600.
import {
  closeSync,
  existsSync,
  fchmodSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import type { Config } from '../config.ts';
import { ConfigError } from '../config.ts';
import { generateKey, parseKey, SecretBox, SecretKeyError } from './secret-box.ts';

const keyFileSchema = z.object({ keys: z.array(z.string()).min(1) });

export function keyFilePath(config: Config): string {
  return join(config.dataDir, 'secret-keys.json');
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

export function readKeyFile(path: string): string[] {
  return keyFileSchema.parse(JSON.parse(readFileSync(path, 'utf8'))).keys;
}

export function writeKeyFile(path: string, keys: string[]): void {
  writePrivateFile(path, `${JSON.stringify({ keys }, null, 2)}\n`);
}

/** The configured keys as text, the first being the one that encrypts. Creates the embedded key file if needed. */
export function loadKeyTexts(config: Config): { keys: string[]; source: 'env' | 'file' } {
  if (config.secretKey) {
    return {
      keys: config.secretKey
        .split(',')
        .map((k) => k.trim())
        .filter(Boolean),
      source: 'env',
    };
  }
  const path = keyFilePath(config);
  if (!existsSync(path)) {
    mkdirSync(config.dataDir, { recursive: true });
    writeKeyFile(path, [generateKey()]);
  }
  try {
    return { keys: readKeyFile(path), source: 'file' };
  } catch (err) {
    throw new ConfigError(
      `invalid configuration: ${path} is not a key file Interchange wrote (${err instanceof SyntaxError ? 'not JSON' : 'unexpected shape'}); restore it from a backup`,
    );
  }
}

export function loadSecretBox(config: Config): SecretBox {
  const { keys, source } = loadKeyTexts(config);
  try {
    return new SecretBox(keys.map(parseKey));
  } catch (err) {
    if (err instanceof SecretKeyError) {
      const where = source === 'env' ? 'INTERCHANGE_SECRET_KEY' : keyFilePath(config);
      throw new ConfigError(`invalid configuration: ${where}: ${err.message}`);
    }
    throw err;
  }
}
