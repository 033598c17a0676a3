// Prometheus metrics. One registry per app (not prom-client's global one), so several apps in
// one process, as in tests, do not collide.
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { DeliveryService } from '../delivery/deliveries.ts';
import type { EventLog } from '../log/port.ts';

export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'interchange_' });
  const httpDuration = new Histogram({
    name: 'interchange_http_request_duration_seconds',
    help: 'HTTP request latency by method, route template and status code',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const delivery = {
    attempts: new Counter({
      name: 'interchange_delivery_attempts_total',
      help: 'Delivery attempts settled by this process, by destination connector and what became of the delivery',
      labelNames: ['connector', 'outcome'] as const,
      registers: [registry],
    }),
    latency: new Histogram({
      name: 'interchange_delivery_latency_seconds',
      help: 'From the event entering the hub to its successful delivery, by destination connector',
      labelNames: ['connector'] as const,
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200],
      registers: [registry],
    }),
    claimFailures: new Counter({
      name: 'interchange_delivery_claim_failures_total',
      help: 'Claims of queued deliveries that failed, by scope: one rate-limited destination (passed over for a while; its id is in the log) or the whole claim',
      labelNames: ['scope'] as const,
      registers: [registry],
    }),
    filterExhausted: new Counter({
      name: 'interchange_filter_budget_exhausted_total',
      help: "Events not routed to a destination because its subscription filter used its whole work budget, or the event's",
      registers: [registry],
    }),
  };
  return { registry, httpDuration, delivery };
}

export type DeliveryMetrics = ReturnType<typeof createMetrics>['delivery'];

export type Metrics = ReturnType<typeof createMetrics>;

/** Consumer lag per group and topic, read from the log when Prometheus scrapes. */
export function trackConsumerLag(metrics: Metrics, log: EventLog): void {
  new Gauge({
    name: 'interchange_consumer_lag',
    help: 'Records in the event log a consumer group has not committed yet, by group and topic',
    labelNames: ['group', 'topic'] as const,
    registers: [metrics.registry],
    async collect() {
      // During a database outage the last values stay, and the rest of /metrics still answers.
      const rows = await log.lag().catch(() => undefined);
      if (!rows) return;
      this.reset();
      for (const row of rows) this.set({ group: row.group, topic: row.topic }, row.lag);
    },
  });
}

/** Queue depth and age of the oldest waiting delivery per destination, read when Prometheus scrapes. */
export function trackDeliveryQueue(metrics: Metrics, deliveries: DeliveryService): void {
  let pending: Promise<Awaited<ReturnType<DeliveryService['stats']>>> | undefined;
  // Both gauges collect from one query per scrape.
  const read = () => {
    pending ??= deliveries.stats(null, 1).finally(() => setTimeout(() => (pending = undefined), 100));
    // During a database outage the gauges keep their last values (collect returns early).
    return pending.catch(() => undefined);
  };
  type Row = Awaited<ReturnType<DeliveryService['stats']>>[number];
  const gauge = (name: string, help: string, value: (r: Row) => number | null) =>
    new Gauge({
      name,
      help,
      labelNames: ['destination', 'connector'] as const,
      registers: [metrics.registry],
      async collect() {
        const rows = await read();
        if (!rows) return;
        this.reset();
        for (const r of rows) {
          const v = value(r);
          if (v !== null) this.set({ destination: r.destinationId, connector: r.connector }, v);
        }
      },
    });
  gauge(
    'interchange_delivery_queue_depth',
    'Deliveries not yet ended (pending, delivering, waiting to retry), by destination',
    (r) => r.queueDepth,
  );
  gauge(
    'interchange_delivery_oldest_pending_seconds',
    'Age of the oldest delivery not yet ended, by destination (absent when none waits)',
    (r) => r.oldestPendingAgeSeconds,
  );
}
