// Prometheus metrics. One registry per app (not prom-client's global one), so several apps in
// one process, as in tests, do not collide.
import { collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
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
  return { registry, httpDuration };
}

export type Metrics = ReturnType<typeof createMetrics>;

/** Consumer lag per group and topic, read from the log when Prometheus scrapes. */
export function trackConsumerLag(metrics: Metrics, log: EventLog): void {
  new Gauge({
    name: 'interchange_consumer_lag',
    help: 'Records in the event log a consumer group has not committed yet, by group and topic',
    labelNames: ['group', 'topic'] as const,
    registers: [metrics.registry],
    async collect() {
      const rows = await log.lag();
      this.reset();
      for (const row of rows) this.set({ group: row.group, topic: row.topic }, row.lag);
    },
  });
}
