// The delivery worker: claims due deliveries, sends each destination's share through its
// connector (batched up to the connector's batch size, at the slots the rate limit booked), and
// settles every result. Sends run concurrently, so a slow endpoint holds only its own slots.
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { inArray } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { AnyConnector, DeliveryItem, DeliveryResult, HttpClient } from '../connectors/sdk.ts';
import { type EventRow, toEnvelope } from '../events/envelope.ts';
import type { CachedInstallation, InstallationService } from '../installations/installations.ts';
import type { EventLog } from '../log/port.ts';
import type { DeliveryMetrics } from '../observability/metrics.ts';
import type { Db } from '../store/db.ts';
import { events, installations } from '../store/schema.ts';
import { type AttemptRecord, createSettler, type Settled } from './outcome.ts';
import { type Claimed, claimDeliveries } from './queue.ts';
import type { RetryPolicy } from './retry.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

type Destination = CachedInstallation;

export interface SenderOptions {
  db: Db;
  log: EventLog;
  installations: InstallationService;
  catalog: (id: string) => AnyConnector | undefined;
  http: HttpClient;
  logger: Logger;
  metrics?: DeliveryMetrics | undefined;
  policy: RetryPolicy;
  disableAfterMs: number;
  timeoutMs: number;
  leaseMs: number;
  /** Deliveries in flight in this worker at most. */
  concurrency?: number;
  /** … and per destination. */
  perDestination?: number;
  pollMs?: number;
}

export function startSender(o: SenderOptions) {
  const owner = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  const concurrency = o.concurrency ?? 128;
  const perDestination = o.perDestination ?? 32;
  // A claim is worth a transaction once this many slots are free (or the queue ran dry).
  const claimAtLeast = Math.max(1, Math.floor(concurrency / 4));
  const pollMs = o.pollMs ?? 50;
  const log = o.logger.child({ component: 'delivery', worker: owner });
  const busy = new Map<string, number>();
  const tasks = new Set<Promise<void>>();
  let inFlight = 0;
  let running = true;
  let wake: (() => void) | undefined;
  let finished = 0;
  let wakeAfter = 1;
  const settle = createSettler({
    db: o.db,
    log: o.log,
    policy: o.policy,
    disableAfterMs: o.disableAfterMs,
    owner,
  });
  const http: HttpClient = (url, req) => o.http(url, { timeoutMs: o.timeoutMs, ...req });

  function track(installationId: string, delta: number) {
    const n = (busy.get(installationId) ?? 0) + delta;
    if (n > 0) busy.set(installationId, n);
    else busy.delete(installationId);
    inFlight += delta;
  }

  async function sendBatch(
    claimed: Claimed[],
    event: Map<string, EventRow>,
    connectorId: string,
    source: Map<string, string>,
    destination: Destination | undefined,
  ) {
    const connector = o.catalog(connectorId);
    const items: DeliveryItem[] = claimed.map((c) => {
      const e = event.get(c.eventId) as EventRow;
      return {
        deliveryId: c.id,
        attempt: c.attempt,
        event: toEnvelope(e),
        sourceConnector: (e.installationId && source.get(e.installationId)) || null,
      };
    });
    // Everything is ready: wait for the slot the rate limit booked, then send at once.
    const wait = Math.max(...claimed.map((c) => c.sendAt.getTime())) - Date.now();
    if (wait > 0) await sleep(wait);
    const startedAt = new Date();
    const t0 = performance.now();
    let results: DeliveryResult[];
    try {
      if (!destination || !connector?.destination)
        throw new Error('the destination is gone or not a destination');
      results = await connector.destination.deliver(items, {
        installationId: destination.row.id,
        config: destination.row.config,
        secrets: destination.secrets,
        now: startedAt,
        http,
      });
      if (results.length !== items.length)
        throw new Error(`${connectorId} returned ${results.length} results for ${items.length} items`);
    } catch (err) {
      results = items.map(() => ({ status: 'retry', error: (err as Error).message }));
    }
    const durationMs = performance.now() - t0;
    await Promise.all(
      claimed.map(async (c, i) => {
        const result = results[i] as DeliveryResult;
        const record: AttemptRecord = {
          claimed: c,
          connector: connectorId,
          eventType: event.get(c.eventId)?.type ?? 'unknown',
          startedAt,
          durationMs,
          result,
        };
        let settled: Settled;
        try {
          settled = await settle(record);
        } catch (err) {
          // The lease will end and another attempt follows: at least once, never lost.
          log.error({ err, delivery_id: c.id }, 'could not record a delivery attempt');
          return;
        }
        o.metrics?.attempts.inc({ connector: connectorId, outcome: settled });
        if (settled === 'succeeded') {
          const created = event.get(c.eventId)?.createdAt;
          if (created)
            o.metrics?.latency.observe({ connector: connectorId }, (Date.now() - created.getTime()) / 1000);
        } else if (settled === 'dead') {
          log.warn(
            {
              delivery_id: c.id,
              destination_id: c.installationId,
              error: record.result.status === 'delivered' ? undefined : record.result.error,
            },
            'delivery is dead',
          );
        }
      }),
    );
  }

  async function dispatch(claimed: Claimed[]) {
    const eventRows = await o.db
      .select()
      .from(events)
      .where(inArray(events.id, [...new Set(claimed.map((c) => c.eventId))]));
    const event = new Map(eventRows.map((e) => [e.id, e]));
    const sourceIds = [...new Set(eventRows.flatMap((e) => (e.installationId ? [e.installationId] : [])))];
    const destIds = [...new Set(claimed.map((c) => c.installationId))];
    const rows = await o.db
      .select({ id: installations.id, connectorId: installations.connectorId })
      .from(installations)
      .where(inArray(installations.id, [...new Set([...sourceIds, ...destIds])]));
    const connectorOf = new Map(rows.map((r) => [r.id, r.connectorId]));
    const byDestination = new Map<string, Claimed[]>();
    for (const c of claimed)
      byDestination.set(c.installationId, [...(byDestination.get(c.installationId) ?? []), c]);
    for (const [installationId, list] of byDestination) {
      const connectorId = connectorOf.get(installationId) ?? 'unknown';
      const size = o.catalog(connectorId)?.destination?.batchSize ?? 1;
      // The destination and its decrypted secrets, from the installations' short-lived cache.
      const destination = await o.installations.cached(installationId);
      for (let i = 0; i < list.length; i += size) {
        const chunk = list.slice(i, i + size);
        const task = sendBatch(chunk, event, connectorId, connectorOf, destination)
          .catch((err) => log.error({ err }, 'delivery batch failed'))
          .finally(() => {
            for (const c of chunk) track(c.installationId, -1);
            tasks.delete(task);
            // Claim again once half of what the last claim took is done: claims stay large.
            finished += chunk.length;
            if (finished >= wakeAfter) wake?.();
          });
        tasks.add(task);
      }
    }
  }

  /** Waits for a finished send or the poll interval, whichever comes first. */
  const pause = () =>
    new Promise<void>((resolve) => {
      wake = resolve;
      setTimeout(resolve, pollMs);
    }).then(() => {
      wake = undefined;
    });

  const loop = (async () => {
    while (running) {
      try {
        const free = concurrency - inFlight;
        if (free < claimAtLeast && inFlight > 0) {
          await pause();
          continue;
        }
        const claimed = await claimDeliveries(o.db, {
          owner,
          limit: free,
          leaseMs: o.leaseMs,
          busy,
          perDestination,
        });
        for (const c of claimed) track(c.installationId, 1);
        finished = 0;
        wakeAfter = Math.max(1, Math.floor(inFlight / 2));
        if (claimed.length > 0) {
          await dispatch(claimed).catch((err) => {
            // Nothing was sent: the leases end and the deliveries are claimed again.
            for (const c of claimed) track(c.installationId, -1);
            throw err;
          });
        }
        // Claim again at once while there is work and room; otherwise wait.
        if (claimed.length === 0 || claimed.length < free) await pause();
      } catch (err) {
        log.error({ err }, 'delivery loop failed; retrying');
        await sleep(1000);
      }
    }
  })();

  return {
    owner,
    /** Stops claiming and waits for the sends under way to be settled. */
    async stop() {
      running = false;
      wake?.();
      await loop;
      await Promise.allSettled([...tasks]);
    },
  };
}

export type Sender = ReturnType<typeof startSender>;
