// Config from the environment (defaults, one-line errors naming the variable, frozen result) and
// where the secret box's keys come from (INTERCHANGE_SECRET_KEY or the embedded key file).
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './config.ts';
import { keyFilePath, loadSecretBox, writeKeyFile } from './crypto/keyring.ts';
import { generateKey, keyId, parseKey } from './crypto/secret-box.ts';

/** The ConfigError loadConfig throws for `env` (fails the test if it does not throw one). */
function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`loadConfig(${JSON.stringify(env)}) did not throw`);
}

function expectOneLineNaming(err: Error, key: string): void {
  expect(err.message).not.toContain('\n');
  expect(err.message).toMatch(new RegExp(`^invalid configuration: ${key}\\b`));
}

describe('loadConfig', () => {
  it('has defaults for everything', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      port: 3000,
      host: '127.0.0.1',
      publicUrl: 'http://localhost:3000',
      databaseUrl: undefined,
      redisUrl: undefined,
      kafkaBrokers: [],
      secretKey: undefined,
      tokenTtlSeconds: 3600,
      dbPoolSize: 10,
      logLevel: 'info',
      embedded: true,
    });
    expect(isAbsolute(config.dataDir)).toBe(true);
    expect(config.dataDir).toBe(join(process.cwd(), '.interchange'));
  });

  it('reads and converts the variables it is given', () => {
    const key = generateKey();
    const config = loadConfig({
      PORT: ' 8080 ',
      PUBLIC_URL: 'https://hub.example.com/',
      DATABASE_URL: 'postgres://u:p@db.example.com:5432/interchange',
      INTERCHANGE_SECRET_KEY: key,
      INTERCHANGE_DATA_DIR: 'relative/data',
      KAFKA_BROKERS: 'k1:9092,k2:9092',
      LOG_LEVEL: 'debug',
    });
    expect(config).toMatchObject({
      port: 8080,
      publicUrl: 'https://hub.example.com',
      databaseUrl: 'postgres://u:p@db.example.com:5432/interchange',
      secretKey: key,
      kafkaBrokers: ['k1:9092', 'k2:9092'],
      logLevel: 'debug',
      embedded: false,
    });
    expect(config.dataDir).toBe(join(process.cwd(), 'relative/data'));
  });

  it('counts empty and blank strings as unset', () => {
    const config = loadConfig({
      PORT: '',
      HOST: '  ',
      DATABASE_URL: '',
      INTERCHANGE_SECRET_KEY: '   ',
      INTERCHANGE_DATA_DIR: '',
      LOG_LEVEL: '',
      PUBLIC_URL: '',
    });
    expect(config).toMatchObject({
      port: 3000,
      host: '127.0.0.1',
      databaseUrl: undefined,
      secretKey: undefined,
      logLevel: 'info',
      embedded: true,
    });
    expect(config.dataDir).toBe(join(process.cwd(), '.interchange'));
  });

  it('rejects a bad PORT with one line naming PORT', () => {
    for (const port of ['abc', '70000', '-1', '80.5']) {
      const err = configError({ PORT: port });
      expectOneLineNaming(err, 'PORT');
    }
  });

  it('reads INTERCHANGE_WORKER_PORT: 9091 by default, a port, or off', () => {
    expect(loadConfig({}).workerPort).toBe(9091);
    expect(loadConfig({ INTERCHANGE_WORKER_PORT: '9100' }).workerPort).toBe(9100);
    expect(loadConfig({ INTERCHANGE_WORKER_PORT: 'off' }).workerPort).toBeUndefined();
    for (const value of ['abc', '70000', '-1', 'no']) {
      expect(configError({ INTERCHANGE_WORKER_PORT: value }).message).toBe(
        `invalid configuration: INTERCHANGE_WORKER_PORT must be off or an integer from 0 to 65535 (got "${value}")`,
      );
    }
  });

  it('says which whole numbers a numeric variable takes, and what it got', () => {
    const cases: Array<[string, string, string]> = [
      ['PORT', 'abc', 'must be an integer from 0 to 65535 (got "abc")'],
      ['PORT', '80.5', 'must be an integer from 0 to 65535 (got "80.5")'],
      ['PORT', '1e3', 'must be an integer from 0 to 65535 (got "1e3")'],
      ['PORT', '0x50', 'must be an integer from 0 to 65535 (got "0x50")'],
      ['PORT', '70000', 'must be an integer from 0 to 65535 (got "70000")'],
      ['INTERCHANGE_TOKEN_TTL', 'an hour', 'must be an integer from 60 to 86400 (got "an hour")'],
      ['INTERCHANGE_TOKEN_TTL', '59', 'must be an integer from 60 to 86400 (got "59")'],
      ['INTERCHANGE_DB_POOL_SIZE', 'ten', 'must be an integer from 1 to 200 (got "ten")'],
      ['INTERCHANGE_DB_POOL_SIZE', '0', 'must be an integer from 1 to 200 (got "0")'],
    ];
    for (const [key, value, message] of cases) {
      expect(configError({ [key]: value }).message, `${key}=${value}`).toBe(
        `invalid configuration: ${key} ${message}`,
      );
    }
    expect(
      loadConfig({ PORT: '0', INTERCHANGE_TOKEN_TTL: '86400', INTERCHANGE_DB_POOL_SIZE: '200' }),
    ).toMatchObject({ port: 0, tokenTtlSeconds: 86_400, dbPoolSize: 200 });
  });

  it('rejects a bad DATABASE_URL naming it, without echoing the URL', () => {
    for (const url of ['mysql://admin:hunter2@db.internal:3306/app', 'hunter2@db.internal/app']) {
      const err = configError({ DATABASE_URL: url, INTERCHANGE_SECRET_KEY: generateKey() });
      expectOneLineNaming(err, 'DATABASE_URL');
      expect(err.message).not.toContain('hunter2');
      expect(err.message).not.toContain('db.internal');
    }
  });

  it('requires INTERCHANGE_SECRET_KEY with DATABASE_URL', () => {
    const err = configError({ DATABASE_URL: 'postgres://admin:hunter2@db.internal/app' });
    expect(err.message).not.toContain('\n');
    expect(err.message).toContain('INTERCHANGE_SECRET_KEY');
    expect(err.message).not.toContain('hunter2');
  });

  it('reads INTERCHANGE_MAX_DESTINATIONS, 100 by default, and rejects a bad one naming it', () => {
    expect(loadConfig({}).maxDestinations).toBe(100);
    expect(loadConfig({ INTERCHANGE_MAX_DESTINATIONS: '5' }).maxDestinations).toBe(5);
    for (const value of ['0', '-3', '2.5', 'many', '1000000']) {
      expectOneLineNaming(
        configError({ INTERCHANGE_MAX_DESTINATIONS: value }),
        'INTERCHANGE_MAX_DESTINATIONS',
      );
    }
  });

  it('reads INTERCHANGE_METRICS_TOKEN, unset by default', () => {
    expect(loadConfig({}).metricsToken).toBeUndefined();
    expect(loadConfig({ INTERCHANGE_METRICS_TOKEN: '  0123456789abcdef  ' }).metricsToken).toBe(
      '0123456789abcdef',
    );
  });

  it('rejects a short or spaced INTERCHANGE_METRICS_TOKEN naming it, without echoing it', () => {
    for (const token of [
      'hunter2-short',
      'hunter2 with a space',
      'hunter2-\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9',
    ]) {
      const err = configError({ INTERCHANGE_METRICS_TOKEN: token });
      expectOneLineNaming(err, 'INTERCHANGE_METRICS_TOKEN');
      expect(err.message).not.toContain('hunter2');
    }
    expect(configError({ INTERCHANGE_METRICS_TOKEN: 'hunter2-short' }).message).toContain(
      'at least 16 characters',
    );
  });

  it('rejects a bad LOG_LEVEL naming it', () => {
    const err = configError({ LOG_LEVEL: 'verbose' });
    expectOneLineNaming(err, 'LOG_LEVEL');
  });

  it('reads the limits of the HTTP edge, failed authentications and ingest', () => {
    expect(loadConfig({})).toMatchObject({
      requestTimeoutMs: 30_000,
      headersTimeoutMs: 10_000,
      keepAliveTimeoutMs: 72_000,
      maxConnections: 1000,
      trustProxy: [],
      authFailureWindowMs: 60_000,
      authFailuresPerAddress: 30,
      authFailuresPerClient: 20,
      ingestQueueLimit: 1000,
      ingestQueueBytes: 64 * 1024 * 1024,
      maxEventLoopDelayMs: 1000,
    });
    const config = loadConfig({
      INTERCHANGE_REQUEST_TIMEOUT: '2m',
      INTERCHANGE_HEADERS_TIMEOUT: '500ms',
      INTERCHANGE_MAX_CONNECTIONS: '50',
      INTERCHANGE_TRUST_PROXY: '10.0.0.0/8, 192.168.1.7,::1',
      INTERCHANGE_INGEST_QUEUE_BYTES: '512kb',
    });
    expect(config).toMatchObject({
      requestTimeoutMs: 120_000,
      headersTimeoutMs: 500,
      maxConnections: 50,
      trustProxy: ['10.0.0.0/8', '192.168.1.7', '::1'],
      ingestQueueBytes: 512 * 1024,
    });
  });

  it('rejects bad limits with one line naming the variable', () => {
    const bad: Record<string, string> = {
      INTERCHANGE_REQUEST_TIMEOUT: '30',
      INTERCHANGE_MAX_CONNECTIONS: '0',
      INTERCHANGE_TRUST_PROXY: 'proxy.internal',
      INTERCHANGE_AUTH_FAILURES_PER_ADDRESS: '2.5',
      INTERCHANGE_INGEST_QUEUE_BYTES: '64 megabytes',
      INTERCHANGE_MAX_EVENT_LOOP_DELAY: '-1s',
    };
    for (const [key, value] of Object.entries(bad)) expectOneLineNaming(configError({ [key]: value }), key);
    const err = configError({ INTERCHANGE_REQUEST_TIMEOUT: '5s', INTERCHANGE_HEADERS_TIMEOUT: '10s' });
    expectOneLineNaming(err, 'INTERCHANGE_HEADERS_TIMEOUT');
  });

  it('returns a frozen config', () => {
    const config = loadConfig({ KAFKA_BROKERS: 'k1:9092' });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.kafkaBrokers)).toBe(true);
    expect(() => {
      (config as { port: number }).port = 1;
    }).toThrow(TypeError);
    expect(() => {
      (config.kafkaBrokers as string[]).push('evil:1');
    }).toThrow(TypeError);
    expect(config.port).toBe(3000);
  });
});

describe('loadSecretBox', () => {
  const dirs: string[] = [];
  const tempDir = () => {
    const dir = mkdtempSync(join(tmpdir(), 'interchange-config-'));
    dirs.push(dir);
    return dir;
  };
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('creates a private key file in the data dir in embedded mode, and reuses it', () => {
    const dataDir = join(tempDir(), 'nested', 'data');
    const config = loadConfig({ INTERCHANGE_DATA_DIR: dataDir });
    expect(config.embedded).toBe(true);
    const path = keyFilePath(config);
    expect(path).toBe(join(dataDir, 'secret-keys.json'));
    expect(existsSync(path)).toBe(false);

    const first = loadSecretBox(config);
    expect(existsSync(path)).toBe(true);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const file = JSON.parse(readFileSync(path, 'utf8'));
    expect(file.keys).toHaveLength(1);
    expect(keyId(parseKey(file.keys[0]))).toBe(first.activeKeyId);

    const second = loadSecretBox(loadConfig({ INTERCHANGE_DATA_DIR: dataDir }));
    expect(second.activeKeyId).toBe(first.activeKeyId);
    const sealed = first.encrypt('survives a restart', 'aad');
    expect(second.decrypt(sealed, 'aad')).toBe('survives a restart');
    expect(JSON.parse(readFileSync(path, 'utf8'))).toEqual(file);
  });

  it('uses INTERCHANGE_SECRET_KEY when set (the first key encrypts) and writes no key file', () => {
    const dataDir = tempDir();
    const [a, b] = [generateKey(), generateKey()];
    const box = loadSecretBox(
      loadConfig({ INTERCHANGE_DATA_DIR: dataDir, INTERCHANGE_SECRET_KEY: `${a}, ${b}` }),
    );
    expect(box.activeKeyId).toBe(keyId(parseKey(a)));
    expect(box.keyIds).toEqual([keyId(parseKey(a)), keyId(parseKey(b))]);
    expect(existsSync(join(dataDir, 'secret-keys.json'))).toBe(false);
  });

  it('rejects a malformed INTERCHANGE_SECRET_KEY with a ConfigError naming it, without echoing it', () => {
    const dataDir = tempDir();
    for (const secretKey of ['not-a-key-hunter2', `${generateKey()},hunter2-second`, ',']) {
      const config = loadConfig({ INTERCHANGE_DATA_DIR: dataDir, INTERCHANGE_SECRET_KEY: secretKey });
      let error: unknown;
      try {
        loadSecretBox(config);
      } catch (err) {
        error = err;
      }
      expect(error, secretKey).toBeInstanceOf(ConfigError);
      const message = (error as Error).message;
      expect(message).toContain('INTERCHANGE_SECRET_KEY');
      expect(message).not.toContain('\n');
      expect(message).not.toContain('hunter2');
    }
  });

  it('names the key file when it holds a malformed key', () => {
    const dataDir = tempDir();
    const config = loadConfig({ INTERCHANGE_DATA_DIR: dataDir });
    writeKeyFile(keyFilePath(config), ['too-short']);
    expect(() => loadSecretBox(config)).toThrow(ConfigError);
    expect(() => loadSecretBox(config)).toThrow(keyFilePath(config));
  });
});
