// Where the master keys come from: INTERCHANGE_SECRET_KEY (comma-separated, first encrypts), or in
// embedded mode a key file generated on first start in the data dir with mode 0600.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import type { Config } from '../config.ts';
import { ConfigError } from '../config.ts';
import { makePrivateDirectory, writePrivateFile } from '../private-files.ts';
import { generateKey, parseKey, SecretBox, type SecretBoxOptions, SecretKeyError } from './secret-box.ts';

const keyFileSchema = z.object({ keys: z.array(z.string()).min(1) });

export function keyFilePath(config: Config): string {
  return join(config.dataDir, 'secret-keys.json');
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
    makePrivateDirectory(config.dataDir);
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

export function loadSecretBox(config: Config, options: SecretBoxOptions = {}): SecretBox {
  const { keys, source } = loadKeyTexts(config);
  try {
    return new SecretBox(keys.map(parseKey), options);
  } catch (err) {
    if (err instanceof SecretKeyError) {
      const where = source === 'env' ? 'INTERCHANGE_SECRET_KEY' : keyFilePath(config);
      throw new ConfigError(`invalid configuration: ${where}: ${err.message}`);
    }
    throw err;
  }
}
