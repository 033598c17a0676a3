// CLI entry: `interchange start | migrate | admin ... | secrets ...`. Every command reads the
// same environment (see .env.example) and fails with one clear line on a bad value.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import cliProgress from 'cli-progress';
import { Command, InvalidArgumentError, Option } from 'commander';
import pino from 'pino';
import { type App, createApp, openMigratedStore, VERSION } from './app.ts';
import { type Config, ConfigError, loadConfig } from './config.ts';
import { RotationRefusedError, rotateSecrets } from './crypto/rotate.ts';
import { generateKey, SecretKeyError } from './crypto/secret-box.ts';
import { AppError } from './errors.ts';
import { fdDestination, loggerOptions } from './observability/logger.ts';
import { writePrivateFile } from './private-files.ts';
import { StoreLockedError } from './store/db.ts';
import { insertClient } from './tenancy/api-clients.ts';
import { createOrganizationService } from './tenancy/organizations.ts';
import {
  ADMIN_SCOPE,
  ORGANIZATION_SCOPES,
  type Scope,
  scopeSchema,
  TIERS,
  type Tier,
} from './tenancy/scopes.ts';

const ROLES = ['all', 'api', 'worker'] as const;

function config(overrides: Record<string, string> = {}): Config {
  return loadConfig({ ...process.env, ...overrides });
}

function credentialsFile(cfg: Config): string {
  return join(cfg.dataDir, 'admin-credentials.json');
}

function printAdminCredentials(cfg: Config, creds: { clientId: string; clientSecret: string }): void {
  const lines = [
    'Interchange created its first admin client. The secret is shown only now:',
    `  client_id:     ${creds.clientId}`,
    `  client_secret: ${creds.clientSecret}`,
  ];
  if (cfg.embedded) {
    writePrivateFile(
      credentialsFile(cfg),
      `${JSON.stringify({ client_id: creds.clientId, client_secret: creds.clientSecret }, null, 2)}\n`,
    );
    lines.push(`  (also written to ${credentialsFile(cfg)}, readable by you only)`);
  }
  // Deliberately not through the logger: log pipelines must never carry the secret.
  process.stderr.write(`\n${lines.join('\n')}\n\n`);
}

async function start(opts: { role: (typeof ROLES)[number]; port?: number }): Promise<void> {
  const cfg = config(opts.port === undefined ? {} : { PORT: String(opts.port) });
  // Signals are handled from the first moment: one that arrives while the app is still starting
  // is acted on as soon as it has started, so a half-open embedded database is never left behind.
  let app: App | undefined;
  let stopping: string | undefined;
  const shutdown = async (signal: string) => {
    if (stopping) {
      process.stderr.write(`interchange: second ${signal}: exiting now\n`);
      process.exit(1);
    }
    stopping = signal;
    if (!app) return;
    const log = app.server.log;
    log.info({ signal }, 'shutting down: no new requests, finishing in-flight ones');
    try {
      await app.close();
      log.info('shut down cleanly');
      process.exit(0);
    } catch (err) {
      log.error({ err }, 'error during shutdown');
      process.exit(1);
    }
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));

  app = await createApp(cfg);
  const log = app.server.log;
  if (app.adminCredentials) printAdminCredentials(cfg, app.adminCredentials);
  if (stopping) {
    const signal = stopping;
    stopping = undefined;
    return shutdown(signal);
  }

  if (opts.role === 'all' || opts.role === 'api') {
    await listening('PORT', cfg.port, () => app.server.listen({ port: cfg.port, host: cfg.host }));
  } else {
    await app.server.ready();
  }
  // A worker-only process has no API port: a listener of its own serves health and metrics.
  const monitoring =
    opts.role === 'worker' && cfg.workerPort !== undefined
      ? await listening('INTERCHANGE_WORKER_PORT', cfg.workerPort, () =>
          app.listenWorkerMonitoring(cfg.workerPort as number, cfg.host),
        )
      : undefined;
  if (opts.role === 'all' || opts.role === 'worker') app.startWorker();
  const port = (app.server.server.address() as { port?: number } | null)?.port ?? cfg.port;
  const url = process.env.PUBLIC_URL?.trim() ? cfg.publicUrl : `http://localhost:${port}`;
  log.info(
    {
      role: opts.role,
      version: VERSION,
      storage: app.store.kind,
      data_dir: cfg.embedded ? cfg.dataDir : undefined,
      rate_limits: cfg.redisUrl ? 'redis' : 'memory',
    },
    opts.role !== 'worker'
      ? `Interchange listening on ${url} (docs: ${url}/docs)`
      : monitoring
        ? `worker started: routing events and sending deliveries; health and metrics on ${monitoring}`
        : 'worker started: routing events and sending deliveries (INTERCHANGE_WORKER_PORT=off: no health or metrics listener)',
  );
}

/** Runs `listen`, turning a port already in use into one line naming the variable that set it. */
async function listening<T>(variable: string, port: number, listen: () => Promise<T>): Promise<T> {
  try {
    return await listen();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new ConfigError(`${variable}: port ${port} is already in use; choose another one`);
    }
    throw err;
  }
}

async function migrateCommand(): Promise<void> {
  const cfg = config();
  const store = await openMigratedStore(cfg);
  await store.close();
  process.stdout.write(`migrations applied (${store.kind})\n`);
}

function parseScopes(value: string): Scope[] {
  const scopes = value.split(/[ ,]+/).filter(Boolean);
  for (const s of scopes) {
    if (!scopeSchema.safeParse(s).success) throw new InvalidArgumentError(`unknown scope "${s}"`);
  }
  return scopes as Scope[];
}

async function createClientCommand(opts: {
  name: string;
  organization?: string;
  scopes?: Scope[];
  tier?: Tier;
}) {
  const cfg = config();
  const store = await openMigratedStore(cfg);
  try {
    const organizationId = opts.organization ?? null;
    if (organizationId) await createOrganizationService(store.db).get(organizationId);
    const scopes = opts.scopes ?? (organizationId ? [...ORGANIZATION_SCOPES] : [ADMIN_SCOPE]);
    if ((organizationId === null) !== (scopes.length === 1 && scopes[0] === ADMIN_SCOPE)) {
      throw new InvalidArgumentError(
        'an admin client (no --organization) has exactly the admin scope; an organization client never has it',
      );
    }
    const { client, secret } = await insertClient(store.db, {
      name: opts.name,
      organizationId,
      scopes,
      tier: opts.tier ?? (organizationId ? 'free' : 'enterprise'),
    });
    process.stdout.write(
      `${JSON.stringify({ client_id: client.id, client_secret: secret, organization_id: organizationId, scopes, tier: client.tier }, null, 2)}\n`,
    );
  } finally {
    await store.close();
  }
}

async function createOrganizationCommand(opts: { name: string }) {
  const cfg = config();
  const store = await openMigratedStore(cfg);
  try {
    const org = await createOrganizationService(store.db).create({ name: opts.name });
    process.stdout.write(`${JSON.stringify({ id: org.id, name: org.name }, null, 2)}\n`);
  } finally {
    await store.close();
  }
}

async function rotateCommand(): Promise<void> {
  const cfg = config();
  const store = await openMigratedStore(cfg);
  const bar = process.stderr.isTTY
    ? new cliProgress.SingleBar(
        { format: 're-sealing [{bar}] {value}/{total}', stream: process.stderr },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  try {
    const result = await rotateSecrets(cfg, store, {
      progress: bar && {
        start: (total) => bar.start(total, 0),
        increment: (n) => bar.increment(n),
        stop: () => bar.stop(),
      },
    });
    const lines = [`${result.resealed} secret(s) re-sealed under key ${result.activeKeyId}.`];
    if (result.source === 'file') {
      lines.push('The new key replaced the old one in the key file.');
    } else if (result.retiredKeyIds.length > 0) {
      lines.push(
        `Every secret now uses the first key of INTERCHANGE_SECRET_KEY, and every running process seals with it: ` +
          `the others (${result.retiredKeyIds.join(', ')}) can be removed from every process's INTERCHANGE_SECRET_KEY.`,
      );
    } else {
      lines.push(
        "To rotate the key itself: put a new key (`interchange secrets generate-key`) first in every process's " +
          'INTERCHANGE_SECRET_KEY, keep the old one after a comma, restart them, run this again, then remove the old one.',
      );
    }
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await store.close();
  }
}

export function buildCli(): Command {
  const program = new Command('interchange')
    .description(
      'Interchange: a self-hostable, multi-tenant integration hub.\nConfiguration comes from the environment: see .env.example.',
    )
    .version(VERSION)
    .showHelpAfterError();

  program
    .command('start')
    .description('run the hub: the HTTP API (api), the consumers (worker), or both in one process (all)')
    .addOption(new Option('--role <role>', 'which role to run').choices(ROLES).default('all'))
    .option('--port <n>', 'HTTP port (overrides PORT)', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0 || n > 65535)
        throw new InvalidArgumentError('must be an integer from 0 to 65535');
      return n;
    })
    .action(start);

  program.command('migrate').description('apply database migrations and exit').action(migrateCommand);

  const admin = program
    .command('admin')
    .description('administration without the HTTP API (needs database access)');
  admin
    .command('create-client')
    .description(
      'create an API client and print its credentials once (an admin client unless --organization)',
    )
    .requiredOption('--name <name>', 'a name to recognise the client by')
    .option('--organization <id>', 'the organization the client acts for')
    .option(
      '--scopes <list>',
      `comma-separated scopes (default: all of the organization's) from: ${ORGANIZATION_SCOPES.join(', ')}`,
      parseScopes,
    )
    .addOption(new Option('--tier <tier>', 'rate-limit tier').choices(TIERS))
    .action(createClientCommand);
  admin
    .command('create-organization')
    .description('create an organization and print its id')
    .requiredOption('--name <name>', "the organization's name")
    .action(createOrganizationCommand);

  const secrets = program.command('secrets').description('the master key that seals secrets at rest');
  secrets
    .command('rotate')
    .description('re-seal every stored secret under the active key (embedded: generates a new key first)')
    .action(rotateCommand);
  secrets
    .command('generate-key')
    .description('print a new random key for INTERCHANGE_SECRET_KEY')
    .action(() => {
      process.stdout.write(`${generateKey()}\n`);
    });
  return program;
}

/** The database refused or could not be reached: say so in one line, no stack. */
function isConnectionError(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return ['ECONNREFUSED', 'ENOTFOUND', 'ETIMEDOUT', 'EHOSTUNREACH', '28P01', '28000', '3D000'].includes(
    code ?? '',
  );
}

export async function main(argv: string[]): Promise<void> {
  // Once whoever read our output is gone, writes fail with EPIPE: that must neither crash the
  // process nor keep it from stopping (the logger's own destination drops such lines too).
  for (const stream of [process.stdout, process.stderr]) stream.on('error', () => {});
  try {
    // Like most servers, read ./.env when there is one; variables already set win.
    if (existsSync('.env')) process.loadEnvFile('.env');
    await buildCli().parseAsync(argv);
  } catch (err) {
    if (
      err instanceof ConfigError ||
      err instanceof StoreLockedError ||
      err instanceof RotationRefusedError ||
      err instanceof InvalidArgumentError ||
      // A bad value the services refused (e.g. an unknown --organization): its message is for the user.
      err instanceof AppError
    ) {
      process.stderr.write(`interchange: ${err.message}\n`);
    } else if (err instanceof SecretKeyError) {
      process.stderr.write(
        `interchange: stored secrets cannot be opened (${err.message}): INTERCHANGE_SECRET_KEY must include the key they were sealed with\n`,
      );
    } else if (isConnectionError(err)) {
      process.stderr.write(
        `interchange: cannot reach the database at DATABASE_URL (${(err as Error).message})\n`,
      );
    } else {
      pino(loggerOptions('error'), fdDestination(2)).fatal({ err }, 'interchange failed');
    }
    process.exit(1);
  }
}

await main(process.argv);
