// Installations: a connector configured for one organization. Config is validated by the
// connector's schema; secrets are sealed by the secret box as one JSON object and never returned.
import { and, asc, eq, gt, sql } from 'drizzle-orm';
import type { z } from 'zod';
import type { AnyConnector, InstallationWarning } from '../connectors/sdk.ts';
import { aadFor, type SecretBox } from '../crypto/secret-box.ts';
import { EgressBlockedError, type EgressGuard, EgressLookupError } from '../delivery/egress.ts';
import {
  matchesPattern,
  SubscriptionError,
  type SubscriptionInput,
  toSettings,
} from '../delivery/subscription.ts';
import { AppError } from '../errors.ts';
import { isId, newId } from '../ids.ts';
import { type Db, queryRows } from '../store/db.ts';
import { decodeCursor, type Page, toPage } from '../store/pagination.ts';
import { installations } from '../store/schema.ts';

export type InstallationRow = typeof installations.$inferSelect;
export type Installation = Omit<InstallationRow, 'secrets'>;

export interface InstallationInput {
  connector: string;
  name?: string | undefined;
  config?: Record<string, unknown> | undefined;
  secrets?: Record<string, unknown> | undefined;
  /** Destinations: which events they receive and how; default every event. */
  subscription?: SubscriptionInput | undefined;
}

export interface InstallationPatch {
  name?: string | undefined;
  /** Replaces the config (validated whole). */
  config?: Record<string, unknown> | undefined;
  /** Merged into the secrets; a null value removes that secret. */
  secrets?: Record<string, unknown> | undefined;
  subscription?: SubscriptionInput | undefined;
}

/** How long a cached installation may be served (see `cached`). */
export const CACHE_MS = 2000;

export interface CachedInstallation {
  row: InstallationRow;
  secrets: Record<string, unknown>;
}

/** An installation as saved, with what its settings will keep from being delivered. */
export type SavedInstallation = Installation & { warnings: InstallationWarning[] };

/** A new installation, with the secrets the hub generated for it: shown this once. */
export type CreatedInstallation = SavedInstallation & { revealedSecrets: Record<string, string> };

const notFound = (id: string) => new AppError('installation_not_found', `installation ${id} not found`);

function fieldErrors(prefix: string, error: z.ZodError) {
  return error.issues.map((i) => ({ path: [prefix, ...i.path.map(String)].join('.'), message: i.message }));
}

/** The connector's warnings about settings about to be saved (see `ConnectorDefinition.warnings`). */
function warningsFor(
  connector: AnyConnector,
  row: InstallationRow,
  secrets: Record<string, unknown>,
): InstallationWarning[] {
  const settings = row.destination;
  if (!connector.warnings || !settings) return [];
  const accepts = connector.destination?.accepts ?? (() => true);
  return connector.warnings({
    config: row.config,
    secrets,
    subscribes: (type) => accepts(type) && settings.eventTypes.some((p) => matchesPattern(p, type)),
  });
}

function present(row: InstallationRow): Installation {
  const { secrets: _sealed, ...rest } = row;
  return rest;
}

export interface InstallationLimits {
  /** Destinations one organization may have (those not uninstalled). */
  maxDestinations: number;
}

export function createInstallationService(
  db: Db,
  box: SecretBox,
  catalog: (id: string) => AnyConnector | undefined,
  egress: Pick<EgressGuard, 'check'>,
  limits: InstallationLimits,
) {
  const seal = (id: string, secrets: Record<string, unknown>) =>
    Object.keys(secrets).length === 0
      ? null
      : box.encrypt(JSON.stringify(secrets), aadFor('installations', 'secrets', id));

  function connectorOf(id: string): AnyConnector {
    const connector = catalog(id);
    if (!connector) {
      throw new AppError('validation_failed', `unknown connector ${JSON.stringify(id)}`, {
        details: [
          { path: 'body.connector', message: 'not a connector of this hub (see GET /v1/connectors)' },
        ],
      });
    }
    return connector;
  }

  function validate(connector: AnyConnector, config: unknown, secrets: unknown) {
    const c = connector.config.safeParse(config);
    if (!c.success)
      throw new AppError('validation_failed', 'config is invalid', {
        details: fieldErrors('body.config', c.error),
      });
    // Secrets may be set one at a time: validate the ones given, the full set is checked where used.
    const partial = (connector.secrets as unknown as z.ZodObject).partial().strict().safeParse(secrets);
    if (!partial.success) {
      throw new AppError('validation_failed', 'secrets are invalid', {
        details: fieldErrors('body.secrets', partial.error),
      });
    }
    return { config: c.data as Record<string, unknown>, secrets: partial.data as Record<string, unknown> };
  }

  /** The connector's required secrets are all set (400 naming the first missing one otherwise). */
  function requireSecrets(connector: AnyConnector, secrets: Record<string, unknown>): void {
    const missing = (connector.requiredSecrets ?? []).filter((key) => secrets[key] === undefined);
    if (missing.length === 0) return;
    throw new AppError('validation_failed', `secrets.${missing[0]} is required`, {
      details: missing.map((key) => ({
        path: `body.secrets.${key}`,
        message: `required: ${connector.name} webhooks are verified with it, and all refused without it`,
      })),
    });
  }

  /** A destination's URLs must be reachable and allowed by the egress guard (400 otherwise). */
  async function checkUrls(connector: AnyConnector, config: Record<string, unknown>): Promise<void> {
    for (const url of connector.destination?.urls?.(config) ?? []) {
      try {
        await egress.check(url);
      } catch (err) {
        if (err instanceof EgressBlockedError) {
          throw new AppError('url_blocked', `${url} may not be called: ${err.reason}`, {
            details: [{ path: 'body.config', message: err.message }],
          });
        }
        if (err instanceof EgressLookupError) {
          throw new AppError('url_unresolvable', err.message, {
            details: [{ path: 'body.config', message: err.message }],
          });
        }
        throw err;
      }
    }
  }

  function settingsFor(
    connector: AnyConnector,
    input: SubscriptionInput | undefined,
    previous?: InstallationRow,
  ) {
    if (!connector.destination) {
      if (input) {
        const what = connector.inbound
          ? `${connector.name} is a source: its installation receives webhooks and takes no destination subscription`
          : `${connector.name} is not a destination: it takes no subscription`;
        throw new AppError('not_a_destination', what, {
          details: [{ path: 'body.subscription', message: 'only destination installations take one' }],
        });
      }
      return null;
    }
    const prior = previous?.destination ?? undefined;
    if (!input) return prior ?? toSettings({ event_types: ['*'] });
    try {
      return toSettings(input, prior);
    } catch (err) {
      if (!(err instanceof SubscriptionError)) throw err;
      throw new AppError(err.code, err.message, { details: [{ path: err.path, message: err.message }] });
    }
  }

  async function find(organizationId: string, id: string): Promise<InstallationRow> {
    const [row] = isId('installation', id)
      ? await db
          .select()
          .from(installations)
          .where(and(eq(installations.organizationId, organizationId), eq(installations.id, id)))
      : [];
    if (!row) throw notFound(id);
    return row;
  }

  function routeConflict(err: unknown): boolean {
    for (let e: unknown = err; e && typeof e === 'object'; e = (e as { cause?: unknown }).cause) {
      const { code, message } = e as { code?: string; message?: string };
      if (
        code === '23505' &&
        (message?.includes('installations_org_route_idx') ||
          (e as { constraint?: string }).constraint === 'installations_org_route_idx')
      ) {
        return true;
      }
    }
    return false;
  }

  /**
   * Room for one more destination in the organization, inside the transaction that creates it:
   * the organization's row is locked first (FOR NO KEY UPDATE: other writes referencing it go on),
   * so concurrent creates count one after the other and never exceed the limit.
   */
  async function reserveDestination(tx: Db, organizationId: string): Promise<void> {
    await queryRows(tx, sql`select id from organizations where id = ${organizationId} for no key update`);
    const [counted] = await queryRows<{ n: number }>(
      tx,
      sql`select count(*)::int as n from installations
          where organization_id = ${organizationId} and destination is not null and status <> 'uninstalled'`,
    );
    if (Number(counted?.n ?? 0) >= limits.maxDestinations) {
      throw new AppError(
        'destination_limit_reached',
        `this organization has ${limits.maxDestinations} destinations, the most it may have: delete one first (INTERCHANGE_MAX_DESTINATIONS)`,
      );
    }
  }

  // Only this organization's own installations can clash: other organizations may install the
  // same account (two apps on one hub), and must not learn that anyone did.
  async function guarded<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (routeConflict(err)) {
        throw new AppError(
          'conflict',
          'this organization already has an active installation of this connector for that account',
        );
      }
      throw err;
    }
  }

  type Cached = CachedInstallation | CachedInstallation[] | undefined;
  const cache = new Map<string, { at: number; value: Promise<Cached> }>();
  function remember<T extends Cached>(key: string, load: () => Promise<T>): Promise<T> {
    const hit = cache.get(key);
    if (hit && Date.now() - hit.at < CACHE_MS) return hit.value as Promise<T>;
    if (cache.size > 10_000) cache.clear();
    const value = load();
    cache.set(key, { at: Date.now(), value });
    // A failed lookup (database down) is not remembered.
    value.catch(() => cache.delete(key));
    return value;
  }
  const routeCacheKey = (connectorId: string, routeKey: string) => `route:${connectorId}:${routeKey}`;
  function forget(id: string): void {
    for (const [key, entry] of cache) {
      if (key === id) cache.delete(key);
      else
        void entry.value.then(
          (v) => (Array.isArray(v) ? v.some((c) => c.row.id === id) : v?.row.id === id) && cache.delete(key),
          () => {},
        );
    }
  }
  /** A route's candidates changed (an installation of that account was added or moved). */
  function forgetRoute(connectorId: string, routeKey: string | null | undefined): void {
    if (routeKey) cache.delete(routeCacheKey(connectorId, routeKey));
  }

  return {
    connectorOf,

    async create(organizationId: string, input: InstallationInput): Promise<CreatedInstallation> {
      const connector = connectorOf(input.connector);
      const { config, secrets: given } = validate(connector, input.config ?? {}, input.secrets ?? {});
      const destination = settingsFor(connector, input.subscription);
      await checkUrls(connector, config);
      const generated = Object.fromEntries(
        Object.entries(connector.generateSecrets?.() ?? {}).filter(([k]) => given[k] === undefined),
      ) as Record<string, string>;
      const secrets = { ...given, ...generated };
      requireSecrets(connector, secrets);
      const id = newId('installation');
      const insert = (tx: Db) =>
        tx
          .insert(installations)
          .values({
            id,
            organizationId,
            connectorId: connector.id,
            name: input.name ?? connector.name,
            config,
            secrets: seal(id, secrets),
            secretKeys: Object.keys(secrets).sort(),
            routeKey: connector.routeKeyOf?.(config) ?? null,
            destination,
          })
          .returning();
      const [row] = await guarded(() =>
        destination
          ? db.transaction(async (tx) => {
              await reserveDestination(tx as unknown as Db, organizationId);
              return insert(tx as unknown as Db);
            })
          : insert(db),
      );
      forgetRoute(connector.id, row?.routeKey);
      const saved = row as InstallationRow;
      return {
        ...present(saved),
        warnings: warningsFor(connector, saved, secrets),
        revealedSecrets: generated,
      };
    },

    async get(organizationId: string, id: string): Promise<Installation> {
      return present(await find(organizationId, id));
    },

    /**
     * The row and its decrypted secrets for the hot paths (inbound webhooks, delivery), from a
     * short-lived cache: a webhook costs no lookup and no decryption. A change made through this
     * process is seen at once; one made by another process within CACHE_MS.
     */
    async cached(id: string): Promise<CachedInstallation | undefined> {
      return remember(id, async () => {
        const row = await this.load(id);
        return row && { row, secrets: this.secretsOf(row) };
      });
    },

    /** Like `cached`, for POST /hooks/<connector>: every active installation of one account, oldest first. */
    async cachedByRoute(connectorId: string, routeKey: string): Promise<CachedInstallation[]> {
      return remember(routeCacheKey(connectorId, routeKey), async () => {
        const rows = await this.findByRoute(connectorId, routeKey);
        return rows.map((row) => ({ row, secrets: this.secretsOf(row) }));
      });
    },

    /** Drops an installation from the cache (it changed). */
    forget,

    /** The row with its sealed secrets, for the ingest path (no tenant: the URL names the installation). */
    async load(id: string): Promise<InstallationRow | undefined> {
      if (!isId('installation', id)) return undefined;
      const [row] = await db.select().from(installations).where(eq(installations.id, id));
      return row;
    },

    /** Every organization's active installations for one account, oldest first (no tenant: see ingest). */
    async findByRoute(connectorId: string, routeKey: string): Promise<InstallationRow[]> {
      return db
        .select()
        .from(installations)
        .where(
          and(
            eq(installations.connectorId, connectorId),
            eq(installations.routeKey, routeKey),
            eq(installations.status, 'active'),
          ),
        )
        .orderBy(asc(installations.id));
    },

    secretsOf(row: InstallationRow): Record<string, unknown> {
      return row.secrets
        ? JSON.parse(box.decrypt(row.secrets, aadFor('installations', 'secrets', row.id)))
        : {};
    },

    async list(
      organizationId: string,
      query: { limit: number; cursor?: string | undefined; connector?: string | undefined },
    ): Promise<Page<Installation>> {
      const after = decodeCursor('installation', query.cursor);
      const rows = await db
        .select()
        .from(installations)
        .where(
          and(
            eq(installations.organizationId, organizationId),
            query.connector ? eq(installations.connectorId, query.connector) : undefined,
            after ? gt(installations.id, after) : undefined,
          ),
        )
        .orderBy(asc(installations.id))
        .limit(query.limit + 1);
      const page = toPage(rows, query.limit);
      return { ...page, data: page.data.map(present) };
    },

    async update(organizationId: string, id: string, patch: InstallationPatch): Promise<SavedInstallation> {
      const row = await find(organizationId, id);
      const connector = connectorOf(row.connectorId);
      const current = this.secretsOf(row);
      const removed = Object.entries(patch.secrets ?? {})
        .filter(([, v]) => v === null)
        .map(([k]) => k);
      const given = Object.fromEntries(Object.entries(patch.secrets ?? {}).filter(([, v]) => v !== null));
      const { config, secrets } = validate(connector, patch.config ?? row.config, given);
      const destination = settingsFor(connector, patch.subscription, row);
      if (patch.config) await checkUrls(connector, config);
      const merged = Object.fromEntries(
        Object.entries({ ...current, ...secrets }).filter(([k]) => !removed.includes(k)),
      );
      // Removing a required secret is refused; an installation made before it was required may
      // still be edited without it.
      if (removed.length > 0) requireSecrets(connector, merged);
      const [updated] = await guarded(() =>
        db
          .update(installations)
          .set({
            name: patch.name ?? row.name,
            config,
            secrets: seal(row.id, merged),
            secretKeys: Object.keys(merged).sort(),
            routeKey: connector.routeKeyOf?.(config) ?? null,
            destination,
            updatedAt: new Date(),
          })
          .where(eq(installations.id, row.id))
          .returning(),
      );
      forget(row.id);
      forgetRoute(row.connectorId, updated?.routeKey);
      if (!updated) throw notFound(id);
      return { ...present(updated), warnings: warningsFor(connector, updated, merged) };
    },

    /** New secrets by the connector's rotation (a webhook's old key signs on for 24 h); returned once. */
    async rotateSecrets(organizationId: string, id: string): Promise<Record<string, string>> {
      const row = await find(organizationId, id);
      const connector = connectorOf(row.connectorId);
      if (!connector.rotateSecrets) {
        throw new AppError(
          'rotation_unsupported',
          `${connector.name} installations have no secret the hub can rotate`,
        );
      }
      const { secrets, revealed } = connector.rotateSecrets(this.secretsOf(row), new Date());
      await db
        .update(installations)
        .set({
          secrets: seal(row.id, secrets),
          secretKeys: Object.keys(secrets).sort(),
          updatedAt: new Date(),
        })
        .where(eq(installations.id, row.id));
      forget(row.id);
      return revealed;
    },

    async remove(organizationId: string, id: string): Promise<void> {
      const row = await find(organizationId, id);
      await db.delete(installations).where(eq(installations.id, row.id));
      forget(row.id);
    },
  };
}

export type InstallationService = ReturnType<typeof createInstallationService>;
