// The worker role's own small HTTP listener, for monitoring: /healthz, /readyz and /metrics (the
// delivery and consumer metrics are this process's), on INTERCHANGE_WORKER_PORT. No API routes:
// those belong to the api role.
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import type { Logger } from 'pino';
import type { Metrics } from '../observability/metrics.ts';
import type { Store } from '../store/db.ts';
import { installErrorHandling } from './errors.ts';
import { healthRoutes } from './routes/health.ts';

export interface WorkerServerOptions {
  store: Store;
  metrics: Metrics;
  logger: Logger;
  /** INTERCHANGE_METRICS_TOKEN: /metrics requires it here as on the api. */
  metricsToken: string | undefined;
}

export async function buildWorkerServer(options: WorkerServerOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: options.logger.child({ listener: 'worker' }) as FastifyBaseLogger,
    return503OnClosing: true,
    forceCloseConnections: true,
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.decorate('store', options.store);
  app.decorate('metrics', options.metrics);
  installErrorHandling(app);
  await app.register(healthRoutes, { metricsToken: options.metricsToken });
  await app.ready();
  return app;
}
