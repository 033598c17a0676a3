// The delivery worker: claims due deliveries, sends each destination's share through its
// connector (batched up to the connector's batch size, at the slots the rate limit booked), and
// settles every result. Sends run concurrently, so a slow endpoint holds only its own slots.
// Rate-limited destinations are claimed on a schedule of their own (their claim is a transaction).
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { AnyConnector, DeliveryItem, DeliveryResult, HttpClient } from '../connectors/sdk.ts';
import { toEnvelope, toLazyEnvelope } from '../events/envelope.ts';
import type { CachedInstallation, InstallationService } from '../installations/installations.ts';
import type { EventLog } from '../log/port.ts';
import type { DeliveryMetrics } from '../observability/metrics.ts';
import { type Db, driverError } from '../store/db.ts';
import { type AttemptRecord, createSettler, type Settled } from './outcome.ts';
import { createPacer } from './pacer.ts';
import { type Claimed, type ClaimOptions, claimRateLimited, claimUnlimited } from './queue.ts';
import type { RetryPolicy } from './retry.ts';
import { effectiveRateLimit } from './subscription.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/**
 * `Handoff.room`: a destination short of room that answered nothing for `STALL_MS` is congested,
 * and the router does not wait for it for `CONGESTED_MS`.
 */
export const STALL_MS = 100;
export const CONGESTED_MS = 1000;

/** While the router waits for room, the sender still claims from the queue this often. */
export const CLAIM_WHILE_ROUTING_MS = 500;

/**
 * A rate-limited destination whose send slots could not be booked is passed over by this worker's
 * claims for this long (the others go on being claimed).
 */
export const BOOKING_BACKOFF_MS = 30_000;
/** After the whole rate-limited claim failed, it is tried again this much later. */
export const CLAIM_RETRY_MS = 1000;

/** A destination whose answers took less than this lately (moving average) is quick (`Handoff.quick`). */
export const QUICK_MS = 50;

type Destination = CachedInstallation;

/** How the router gives this worker's sender the deliveries it creates (see `startSender`). */
export interface Handoff {
  /** The lease owner the router writes, so that this sender settles them. */
  owner: string;
  leaseMs: number;
  /**
   * Waits, at most `ms`, until the sender has room for a fair share of `wanted` (per destination,
   * half of what one destination may have under way, or all it wants if less), passing over the
   * destinations it finds congested (short of room and silent for `STALL_MS`; then passed over for
   * `CONGESTED_MS`, so a slow endpoint holds the router up once, not at every batch). A busy but
   * healthy endpoint frees slots as fast as it answers: the router goes at its pace. Answers the
   * destinations still worth waiting for: none once the time is up.
   */
  room(wanted: ReadonlyMap<string, number>, ms: number): Promise<ReadonlySet<string>>;
  /** Reserves slots for up to `wanted` deliveries per destination; answers how many it got. */
  reserve(wanted: ReadonlyMap<string, number>): Map<string, number>;
  /** Sends the deliveries leased with the reservation, and gives back the slots left unused. */
  adopt(claimed: Claimed[], granted: ReadonlyMap<string, number>): void;
  /**
   * Whether the destination answers quickly (a moving average under `QUICK_MS`, or not heard from
   * yet): only then is it worth the router's while to wait for its outcomes, which write its
   * deliveries once (see `Unwritten`). Absent: every destination is.
   */
  quick?(installationId: string): boolean;
  /**
   * The router created deliveries that wait in the queue (pending): the sender claims soon, even
   * if its last claim found nothing due (it then waits for this, or for its poll interval).
   */
  queued?(): void;
}

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
  /** Deliveries in flight in this worker at most, from claim to settled. */
  concurrency?: number;
  /** Requests under way to one destination at most (from claim to its answer). */
  perDestination?: number;
  pollMs?: number;
}

export function startSender(o: SenderOptions) {
  const owner = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  const concurrency = o.concurrency ?? 256;
  const perDestination = o.perDestination ?? 64;
  // A claim is worth a round trip once this many slots are free (or the queue ran dry).
  const claimAtLeast = Math.max(1, Math.floor(concurrency / 4));
  const pollMs = o.pollMs ?? 50;
  const log = o.logger.child({ component: 'delivery', worker: owner });
  // Requests under way per destination (until answered), and deliveries held (until settled).
  const busy = new Map<string, number>();
  const tasks = new Set<Promise<void>>();
  let inFlight = 0;
  let running = true;
  // Slots given back (answers and settles) since the last claim began; the loop waits for some.
  let released = 0;
  let wakeAfter = 1;
  let waiter: { ready: () => boolean; resolve: () => void } | undefined;
  let limitedAt = 0;
  // Rate-limited destinations whose booking failed, and until when they are passed over.
  const passedOver = new Map<string, number>();
  // The last claim found nothing due anywhere; `poke` (work queued in this process) ends the wait.
  let nothingDue = false;
  let poked = false;
  function poke() {
    poked = true;
    if (waiter?.ready()) waiter.resolve();
  }
  // When the unlimited claim last ran, and whether it saw work for rate-limited destinations.
  let unlimitedAt = 0;
  let rateLimitedWork = false;
  const settle = createSettler({
    db: o.db,
    log: o.log,
    policy: o.policy,
    disableAfterMs: o.disableAfterMs,
    owner,
  });
  // Booked slots that came due together (a held-up event loop) go out at the limit, not at once.
  const pacer = createPacer();
  const http: HttpClient = (url, req) => o.http(url, { timeoutMs: o.timeoutMs, ...req });

  function hold(c: Claimed) {
    busy.set(c.installationId, (busy.get(c.installationId) ?? 0) + 1);
    inFlight++;
    if (!lastAnswer.has(c.installationId)) lastAnswer.set(c.installationId, Date.now());
  }
  /** The destination's request slot: given back once answered, before the attempt is settled. */
  function answered(c: Pick<Claimed, 'installationId'>) {
    const n = (busy.get(c.installationId) ?? 0) - 1;
    lastAnyAnswer = Date.now();
    if (n > 0) {
      busy.set(c.installationId, n);
      lastAnswer.set(c.installationId, lastAnyAnswer);
    } else {
      busy.delete(c.installationId);
      lastAnswer.delete(c.installationId);
    }
    released++;
    if (waiter?.ready()) waiter.resolve();
    for (const check of roomWaiters) check();
  }
  /** The worker's slot, once settled (or given up on). */
  function done() {
    inFlight--;
    released++;
    if (waiter?.ready()) waiter.resolve();
    for (const check of roomWaiters) check();
  }
  // The router's waits for room (`handoff.room`); when each busy destination last answered (or
  // became busy), and when any did; the destinations that went silent while the router waited.
  const roomWaiters = new Set<() => void>();
  const lastAnswer = new Map<string, number>();
  let lastAnyAnswer = 0;
  const congestedUntil = new Map<string, number>();
  // How long each destination took to answer lately (a moving average, ms), for `handoff.quick`.
  const answerMs = new Map<string, number>();
  /** The destinations of `wanted` worth waiting for that lack room for a fair share of it. */
  function short(wanted: ReadonlyMap<string, number>): string[] {
    const now = Date.now();
    return [...wanted.keys()].filter((id) => isShort(id, wanted.get(id) ?? 0, now));
  }
  function isShort(id: string, n: number, now: number): boolean {
    if ((congestedUntil.get(id) ?? 0) > now) return false;
    const room = Math.min(concurrency - inFlight, perDestination - (busy.get(id) ?? 0));
    return room < Math.min(n, Math.ceil(perDestination / 2));
  }
  /** `short(wanted).length > 0`, without building the list: checked at every answer while the router waits. */
  function anyShort(wanted: ReadonlyMap<string, number>): boolean {
    const now = Date.now();
    for (const [id, n] of wanted) if (isShort(id, n, now)) return true;
    return false;
  }

  async function sendBatch(claimed: Claimed[], connectorId: string, destination: Destination | undefined) {
    const connector = o.catalog(connectorId);
    let startedAt = new Date();
    let t0 = performance.now();
    let results: DeliveryResult[];
    try {
      const items: DeliveryItem[] = claimed.map((c) => ({
        deliveryId: c.id,
        attempt: c.attempt,
        event: c.dataJson === undefined ? toEnvelope(c.event) : toLazyEnvelope(c.event),
        dataJson: c.dataJson,
        sourceConnector: c.sourceConnector,
      }));
      // Everything is ready: wait for the slot the rate limit booked, then send at once.
      const slot = Math.max(...claimed.map((c) => c.sendAt.getTime()));
      const rate = effectiveRateLimit(destination?.row.destination?.rateLimit);
      const wait = pacer.sendAt(claimed[0]?.installationId ?? '', rate, slot, Date.now()) - Date.now();
      if (wait > 0) await sleep(wait);
      startedAt = new Date();
      t0 = performance.now();
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
      results = claimed.map(() => ({ status: 'retry', error: (err as Error).message }));
    } finally {
      for (const c of claimed) answered(c);
    }
    const durationMs = performance.now() - t0;
    const id = claimed[0]?.installationId;
    if (id !== undefined) {
      const before = answerMs.get(id);
      answerMs.set(id, before === undefined ? durationMs : before * 0.8 + durationMs * 0.2);
    }
    await Promise.all(
      claimed.map(async (c, i) => {
        const result = results[i] as DeliveryResult;
        const record: AttemptRecord = {
          claimed: c,
          connector: connectorId,
          eventType: c.event.type,
          startedAt,
          durationMs,
          result,
        };
        let settled: Settled;
        try {
          settled = await settle(record);
        } catch (err) {
          // The lease will end and another attempt follows (handed over unwritten: the router
          // reads its batch again): at least once, never lost.
          log.error({ err, delivery_id: c.id }, 'could not record a delivery attempt');
          return;
        }
        o.metrics?.attempts.inc({ connector: connectorId, outcome: settled });
        // A retry may be due at once (the schedule's first step).
        if (settled === 'retrying') poke();
        if (settled === 'succeeded') {
          const created = c.event.createdAt;
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
    const byDestination = new Map<string, Claimed[]>();
    for (const c of claimed) {
      const list = byDestination.get(c.installationId);
      if (list) list.push(c);
      else byDestination.set(c.installationId, [c]);
    }
    // The destinations and their decrypted secrets, from the installations' short-lived cache,
    // all before the first send: when a lookup fails, nothing has been sent.
    const destinations = await Promise.all([...byDestination.keys()].map((id) => o.installations.cached(id)));
    for (const [n, list] of [...byDestination.values()].entries()) {
      const connectorId = (list[0] as Claimed).connectorId;
      const size = o.catalog(connectorId)?.destination?.batchSize ?? 1;
      const destination = destinations[n];
      for (let i = 0; i < list.length; i += size) {
        const chunk = list.slice(i, i + size);
        const task = sendBatch(chunk, connectorId, destination)
          .catch((err) => log.error({ err }, 'delivery batch failed'))
          .finally(() => {
            for (const _ of chunk) done();
            tasks.delete(task);
          });
        tasks.add(task);
      }
    }
  }

  /** Waits until `ready` (checked as slots are given back) or the poll interval, whichever is first. */
  const pause = (ready: () => boolean) =>
    // Stopping (stop() may have come while a claim ran) does not wait for the poll interval.
    ready() || !running
      ? Promise.resolve()
      : new Promise<void>((resolve) => {
          const timer = setTimeout(finish, pollMs);
          function finish() {
            clearTimeout(timer);
            waiter = undefined;
            resolve();
          }
          waiter = { ready: () => ready() || !running, resolve: finish };
        });
  const roomToClaim = () => concurrency - inFlight >= claimAtLeast;
  const enoughReleased = () => released >= wakeAfter;

  /**
   * Deliveries the router leases to this worker as it creates them (`createRouter`'s `handoff`):
   * sent at once, with no claim to wait for and no claim statement. Slots are reserved before the
   * router's statement and given back for what it did not lease (a paused or disabled destination).
   */
  const handoff: Handoff = {
    owner,
    leaseMs: o.leaseMs,
    room(wanted, ms) {
      const worthIt = () =>
        new Set([...wanted.keys()].filter((id) => (congestedUntil.get(id) ?? 0) <= Date.now()));
      if (!running || ms <= 0) return Promise.resolve(new Set<string>());
      if (!anyShort(wanted)) return Promise.resolve(worthIt());
      return new Promise((resolve) => {
        const check = () => {
          if (!running || !anyShort(wanted)) finish(worthIt());
        };
        // A destination short of room that answered nothing for a while is congested: the router
        // stops waiting for it (and does not wait for it again for a while).
        const stalls = setInterval(() => {
          const now = Date.now();
          for (const [id, until] of congestedUntil) if (until <= now) congestedUntil.delete(id);
          for (const id of short(wanted)) {
            if ((lastAnswer.get(id) ?? lastAnyAnswer) < now - STALL_MS)
              congestedUntil.set(id, now + CONGESTED_MS);
          }
          check();
        }, STALL_MS);
        const timer = setTimeout(() => finish(new Set()), ms);
        function finish(answer: ReadonlySet<string>) {
          clearInterval(stalls);
          clearTimeout(timer);
          roomWaiters.delete(check);
          resolve(answer);
          if (waiter?.ready()) waiter.resolve();
        }
        roomWaiters.add(check);
      });
    },
    reserve(wanted) {
      const granted = new Map<string, number>();
      if (!running) return granted;
      for (const [id, n] of wanted) {
        const k = Math.min(n, concurrency - inFlight, perDestination - (busy.get(id) ?? 0));
        if (k <= 0) continue;
        granted.set(id, k);
        busy.set(id, (busy.get(id) ?? 0) + k);
        inFlight += k;
        if (!lastAnswer.has(id)) lastAnswer.set(id, Date.now());
      }
      return granted;
    },
    quick: (installationId) => (answerMs.get(installationId) ?? 0) < QUICK_MS,
    queued: poke,
    adopt(claimed, granted) {
      const used = new Map<string, number>();
      for (const c of claimed) used.set(c.installationId, (used.get(c.installationId) ?? 0) + 1);
      for (const [installationId, n] of granted) {
        for (let i = used.get(installationId) ?? 0; i < n; i++) {
          answered({ installationId });
          done();
        }
      }
      if (claimed.length === 0) return;
      dispatch(claimed).catch((err) => {
        // Nothing was sent: the leases end and the deliveries are claimed again.
        log.error({ err }, 'could not send deliveries handed over by the router');
        for (const c of claimed) {
          answered(c);
          done();
        }
      });
    },
  };

  /**
   * The claim of rate-limited destinations. One whose slots could not be booked is logged with its
   * id, counted, and passed over for BOOKING_BACKOFF_MS; a failure of the whole claim is logged and
   * gives nothing, so that what the unlimited claim took still goes out.
   */
  async function claimLimited(options: ClaimOptions): Promise<Claimed[]> {
    const now = Date.now();
    for (const [id, until] of passedOver) if (until <= now) passedOver.delete(id);
    try {
      const { claimed, failed } = await claimRateLimited(o.db, {
        ...options,
        passOver: new Set(passedOver.keys()),
      });
      for (const { installationId, error } of failed) {
        passedOver.set(installationId, now + BOOKING_BACKOFF_MS);
        o.metrics?.claimFailures.inc({ scope: 'destination' });
        log.error(
          { err: driverError(error), destination_id: installationId, retry_in_ms: BOOKING_BACKOFF_MS },
          'could not book send slots of a rate-limited destination; passing it over',
        );
      }
      return claimed;
    } catch (err) {
      limitedAt = Date.now() + CLAIM_RETRY_MS;
      o.metrics?.claimFailures.inc({ scope: 'claim' });
      log.error({ err: driverError(err) }, 'claiming rate-limited destinations failed; retrying');
      return [];
    }
  }

  const loop = (async () => {
    while (running) {
      try {
        if (!roomToClaim() && inFlight > 0) {
          await pause(roomToClaim);
          continue;
        }
        const free = concurrency - inFlight;
        released = 0;
        const options = { owner, limit: free, leaseMs: o.leaseMs, busy, perDestination };
        // Slots given back go to the router first while it waits for room (`handoff.room`): it
        // holds fresh deliveries, which it creates leased to this sender, each row written once
        // (claiming them back later costs another version of every row and a claim statement).
        // Still, the queue is claimed from at least every CLAIM_WHILE_ROUTING_MS, so that retries
        // and other destinations' waiting deliveries go on during a long backlog.
        const claimed: Claimed[] = [];
        if (roomWaiters.size === 0 || Date.now() - unlimitedAt >= CLAIM_WHILE_ROUTING_MS) {
          unlimitedAt = Date.now();
          // Reset before the claim: work queued while it runs may have come too late for it.
          poked = false;
          const fast = await claimUnlimited(o.db, options);
          claimed.push(...fast.claimed);
          rateLimitedWork = fast.rateLimitedWork;
          nothingDue = fast.nothingDue && fast.claimed.length === 0;
        }
        for (const c of claimed) hold(c);
        // Rate-limited destinations cost a transaction: looked at once per poll interval (their
        // slots are booked a horizon ahead, so this keeps them busy), and only when they have work.
        if (rateLimitedWork && Date.now() >= limitedAt && concurrency - inFlight > 0) {
          limitedAt = Date.now() + pollMs;
          const limited = await claimLimited({ ...options, limit: concurrency - inFlight });
          for (const c of limited) hold(c);
          claimed.push(...limited);
        }
        if (claimed.length > 0) {
          await dispatch(claimed).catch((err) => {
            // Nothing was sent: the leases end and the deliveries are claimed again.
            for (const c of claimed) {
              answered(c);
              done();
            }
            throw err;
          });
        }
        // Claim again at once while there is work and room. Otherwise what is left waits for a
        // destination's cap or for new work: claim again once about half of what is held came back
        // (an answer and a settle count one each; those during the claim too), so claims stay
        // large, or after the poll interval.
        if (nothingDue && claimed.length === 0) {
          // Nothing is due: slots given back change nothing (each answer would cost a claim that
          // finds nothing, while the router hands a backlog over). Claim again after the poll
          // interval, or once this process queues work (`handoff.queued`, a retry), at once if it
          // did while the claim ran.
          await pause(() => poked);
        } else if (claimed.length === 0 || claimed.length < free) {
          wakeAfter = Math.max(1, inFlight);
          await pause(enoughReleased);
        }
      } catch (err) {
        log.error({ err }, 'delivery loop failed; retrying');
        await sleep(1000);
      }
    }
  })();

  return {
    owner,
    handoff,
    /** Stops claiming and waits for the sends under way to be settled. */
    async stop() {
      running = false;
      waiter?.resolve();
      await loop;
      await Promise.allSettled([...tasks]);
    },
  };
}

export type Sender = ReturnType<typeof startSender>;
