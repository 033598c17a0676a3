// The worker role: the `router` consumer group turning logged events into deliveries, the
// delivery sender, which takes the fresh deliveries it has room for straight from the router, and
// the `privacy` consumer group carrying out Shopify's redaction requests (src/ingest/redact.ts).
// Several worker processes may share one PostgreSQL: the consumer group splits the log's
// partitions among them and the queue's leases split the deliveries.
import type { Logger } from 'pino';
import type { Config } from './config.ts';
import { connectorById } from './connectors/catalog.ts';
import { EVENT_FILTER_WORK_BUDGET, FILTER_WORK_BUDGET } from './delivery/filter.ts';
import { createRouter, ROUTER_CONSUMER, type RouterHooks } from './delivery/router.ts';
import { startSender } from './delivery/sender.ts';
import { TOPICS } from './events/types.ts';
import { startPrivacyConsumer } from './ingest/redact.ts';
import type { Metrics } from './observability/metrics.ts';
import type { Services } from './services.ts';
import type { Store } from './store/db.ts';

export interface Worker {
  stop(): Promise<void>;
}

export function startWorker(parts: {
  config: Config;
  store: Store;
  services: Services;
  metrics: Metrics;
  logger: Logger;
}): Worker {
  const { config, store, services, metrics, logger } = parts;
  const sender = startSender({
    db: store.db,
    log: services.log,
    installations: services.installations,
    catalog: connectorById,
    http: services.http,
    logger,
    metrics: metrics.delivery,
    policy: { schedule: config.retrySchedule },
    disableAfterMs: config.disableAfterMs,
    timeoutMs: config.deliveryTimeoutMs,
    leaseMs: config.deliveryLeaseMs,
  });
  const router = services.log.consume({
    ...ROUTER_CONSUMER,
    topics: TOPICS,
    handler: createRouter(store.db, connectorById, sender.handoff, {
      filterExhausted: reportExhaustedFilters(metrics, logger),
    }),
  });
  const privacy = startPrivacyConsumer(store.db, services.log, logger);
  return {
    async stop() {
      // The router first: what it hands over while stopping still has a running sender.
      await Promise.all([router.stop(), privacy.stop()]);
      await sender.stop();
    },
  };
}

/** Counts every event a filter's work budget kept from its destination; logs it once a minute per destination. */
function reportExhaustedFilters(metrics: Metrics, logger: Logger): RouterHooks['filterExhausted'] {
  const loggedAt = new Map<string, number>();
  return ({ destinationId, organizationId, eventId, budget }) => {
    metrics.delivery.filterExhausted.inc();
    const now = Date.now();
    if (now - (loggedAt.get(destinationId) ?? 0) < 60_000) return;
    if (loggedAt.size >= 10_000) loggedAt.clear();
    loggedAt.set(destinationId, now);
    logger.warn(
      {
        destination_id: destinationId,
        organization_id: organizationId,
        event_id: eventId,
        work_budget: budget === 'event' ? EVENT_FILTER_WORK_BUDGET : FILTER_WORK_BUDGET,
      },
      budget === 'event'
        ? "the filters of the event's destinations used the event's whole work budget: the event is not routed to this destination (logged once a minute per destination)"
        : 'subscription filter used its whole work budget: the event is not routed to this destination (logged once a minute per destination)',
    );
  };
}
