// The inbound path: find the installation, verify on the raw bytes (fail closed), de-duplicate,
// normalize into canonical events, and persist the raw request and its events in one
// transaction (group commit). The caller answers 2xx only once `receive` resolves.
import type { Logger } from 'pino';
import {
  type AnyConnector,
  ConnectorError,
  type EventDraft,
  type InboundRequest,
  parseJson,
} from '../connectors/sdk.ts';
import { AppError, type ErrorCode } from '../errors.ts';
import { isEventType, parseEventData, topicOf } from '../events/types.ts';
import { newId, uuidv7 } from '../ids.ts';
import type { CachedInstallation, InstallationService } from '../installations/installations.ts';
import type { Committer, IngestItem, PreparedEvent } from './committer.ts';
import type { CustomerLookup } from './customer-of.ts';

const HIDDEN_HEADERS = new Set(['authorization', 'cookie', 'proxy-authorization', 'x-api-key']);

export interface ReceiveResult {
  status: 'accepted' | 'duplicate' | 'ignored';
  requestId: string | null;
  eventIds: string[];
}

export interface IngestOptions {
  installations: InstallationService;
  committer: Committer;
  logger: Logger;
  /** The customer of an earlier event, for drafts with `customerFrom`. */
  customerOf: CustomerLookup;
}

/** Maps a connector's error to the API's: authentication failures 401, payload problems 400. */
function toAppError(err: ConnectorError): AppError {
  const code: ErrorCode =
    err.code === 'provider_error'
      ? 'payload_invalid'
      : (err.code satisfies Exclude<ConnectorError['code'], 'provider_error'>);
  return new AppError(code, err.message);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function validDate(text: string | undefined): Date | undefined {
  const date = text ? new Date(text) : undefined;
  return date && !Number.isNaN(date.getTime()) ? date : undefined;
}

export function createIngestService({ installations, committer, logger, customerOf }: IngestOptions) {
  /**
   * The provider's customer of a draft: its own, else (with `customerFrom`) the earlier event's,
   * which is then written into the data's `customer_id` too.
   */
  async function customerOfDraft(draft: EventDraft, organizationId: string, installationId: string) {
    if (draft.customerExternalId) return draft.customerExternalId;
    if (!draft.customerFrom) return null;
    const found = await customerOf(organizationId, installationId, draft.customerFrom);
    if (found && isRecord(draft.data)) draft.data = { ...draft.data, customer_id: found };
    return found;
  }

  /**
   * The installations the request may be for, all of one connector: the one its URL names, or
   * for one-URL providers (POST /hooks/shopify) every active installation of the account, in any
   * organization. The signature decides among them (see `verified`).
   */
  async function candidates(target: string, req: InboundRequest) {
    if (target.startsWith('ins_')) {
      const found = await installations.cached(target);
      if (!found) throw new AppError('installation_not_found', `no installation for ${target}`);
      if (found.row.status === 'uninstalled')
        throw new AppError('installation_uninstalled', 'this installation was uninstalled');
      return { connector: installations.connectorOf(found.row.connectorId), found: [found] };
    }
    const connector = (() => {
      try {
        return installations.connectorOf(target);
      } catch {
        return undefined;
      }
    })();
    const key = connector?.inbound?.routeKey?.(req);
    // Only active installations are routed to: an uninstalled account answers 404 here.
    const found = connector && key ? await installations.cachedByRoute(connector.id, key) : [];
    if (!connector || found.length === 0)
      throw new AppError('installation_not_found', `no installation for ${target}`);
    return { connector, found };
  }

  /**
   * The first candidate whose secret verifies the request (an HMAC each, so trying several is
   * cheap). Two organizations installing one account with the same secret is one app installed
   * twice: the oldest installation gets the webhook. When none verifies, the error is that of the
   * first candidate that has a secret, so a lone installation answers exactly as before.
   */
  async function verified(
    connector: AnyConnector,
    inbound: NonNullable<AnyConnector['inbound']>,
    found: CachedInstallation[],
    req: InboundRequest,
  ) {
    let failure: ConnectorError | undefined;
    for (const { row, secrets } of found) {
      const ctx = { installationId: row.id, config: row.config, secrets, now: req.receivedAt };
      try {
        await inbound.verify(req, ctx);
        return { row, ctx };
      } catch (err) {
        if (!(err instanceof ConnectorError)) throw err;
        if (err.code === 'secret_missing') {
          logger.error(
            { installation_id: row.id, connector: connector.id },
            'configuration error: installation has no signing secret; webhook refused',
          );
        }
        if (!failure || (failure.code === 'secret_missing' && err.code !== 'secret_missing')) failure = err;
      }
    }
    throw toAppError(failure ?? new ConnectorError('signature_invalid', 'the signature does not verify'));
  }

  return {
    async receive(target: string, req: InboundRequest): Promise<ReceiveResult> {
      const { connector, found } = await candidates(target, req);
      const inbound = connector.inbound;
      if (!inbound)
        throw new AppError('installation_not_found', `${connector.name} installations receive no webhooks`);
      if (inbound.isHandshake?.(req)) return { status: 'ignored', requestId: null, eventIds: [] };
      const { row, ctx } = await verified(connector, inbound, found, req);

      const requestId = newId('inboundRequest');
      const base = {
        organizationId: row.organizationId,
        installationId: row.id,
        scope: row.id,
        requestId,
        request: {
          method: req.method,
          path: new URL(req.url).pathname,
          headers: Object.fromEntries(Object.entries(req.headers).filter(([k]) => !HIDDEN_HEADERS.has(k))),
          body: req.rawBody,
          receivedAt: req.receivedAt,
        },
      };
      // Past verification the request is the provider's: a bad one is kept for debugging, then refused.
      const reject = async (err: AppError): Promise<never> => {
        await committer.submit({
          ...base,
          dedupeKey: null,
          status: 'rejected',
          errorCode: err.code,
          events: [],
        });
        throw err;
      };

      let dedupeKey: string;
      let partitionKey: string;
      let account: string;
      let drafts: EventDraft[];
      try {
        const payload = inbound.parse ? inbound.parse(req) : parseJson(req);
        dedupeKey = inbound.dedupeKey(req, payload, ctx);
        partitionKey = inbound.partitionKey(req, payload, ctx);
        account = inbound.account(req, payload, ctx);
        drafts = inbound.normalize(req, payload, ctx);
      } catch (err) {
        if (err instanceof ConnectorError) return reject(toAppError(err));
        throw err;
      }
      for (const draft of drafts) {
        const checked = isEventType(draft.type) ? parseEventData(draft.type, draft.data) : undefined;
        if (!checked?.success) {
          const issue = checked?.error.issues[0];
          logger.error(
            { installation_id: row.id, type: draft.type, issue },
            'connector produced an event outside the canonical model',
          );
          return reject(
            new AppError('payload_invalid', `the payload lacks what a ${draft.type} event needs`),
          );
        }
        draft.data = checked.data;
      }

      const customers = await Promise.all(drafts.map((d) => customerOfDraft(d, row.organizationId, row.id)));
      const prepared: PreparedEvent[] = drafts.map((d, i) => ({
        id: uuidv7(),
        time: validDate(d.time) ?? req.receivedAt,
        source: `/installations/${row.id}`,
        type: d.type,
        subject: d.subject ?? null,
        partitionKey,
        topic: topicOf(d.type),
        userId: null,
        customer: customers[i] ? { platform: connector.id, account, externalId: customers[i] } : undefined,
        dedupeKey: d.dedupeKey,
        data: d.data,
      }));
      const item: IngestItem = { ...base, dedupeKey, status: 'accepted', events: prepared };
      const outcome = await committer.submit(item);
      if (outcome.status === 'rejected') throw new AppError('payload_invalid', 'rejected');
      // The uninstall is committed: answer 410 from now on, not what the cache remembers.
      if (outcome.status === 'accepted' && prepared.some((e) => e.type === 'app.uninstalled')) {
        installations.forget(row.id);
      }
      return { status: outcome.status, requestId: outcome.requestId, eventIds: outcome.eventIds };
    },
  };
}

export type IngestService = ReturnType<typeof createIngestService>;
