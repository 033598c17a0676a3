// The Fastify server of the api role: request ids, logging, OpenAPI from the zod schemas, error
// mapping, metrics, and the routes. Resources register as plugins in their own scope.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { getHeapStatistics } from 'node:v8';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import underPressure, {
  type FastifyUnderPressureOptions,
  TYPE_EVENT_LOOP_DELAY,
} from '@fastify/under-pressure';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify';
import {
  jsonSchemaTransform,
  jsonSchemaTransformObject,
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from '../config.ts';
import { AppError } from '../errors.ts';
import { type Metrics, trackConsumerLag, trackDeliveryQueue } from '../observability/metrics.ts';
import type { Services } from '../services.ts';
import { unstorable } from '../storable.ts';
import type { Store } from '../store/db.ts';
import { TIER_LIMITS } from '../tenancy/scopes.ts';
import { installAuth } from './auth.ts';
import { createAuthThrottle } from './auth-throttle.ts';
import { clientErrorHandler, installErrorHandling, toErrorBody } from './errors.ts';
import { apiClientRoutes } from './routes/api-clients.ts';
import { connectorRoutes } from './routes/connectors.ts';
import { deliveryRoutes } from './routes/deliveries.ts';
import { eventRoutes } from './routes/events.ts';
import { healthRoutes } from './routes/health.ts';
import { hookRoutes } from './routes/hooks.ts';
import { inboundRequestRoutes } from './routes/inbound-requests.ts';
import { installationRoutes } from './routes/installations.ts';
import { oauthRoutes } from './routes/oauth.ts';
import { organizationRoutes } from './routes/organizations.ts';
import { userRoutes } from './routes/users.ts';

declare module 'fastify' {
  interface FastifyInstance {
    services: Services;
    store: Store;
    metrics: Metrics;
    /** PUBLIC_URL without a trailing slash. */
    publicUrl: string;
  }
}

export const BODY_LIMIT = 1024 * 1024;
const RATE_WINDOW_MS = 60 * 60 * 1000;
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export interface ServerOptions {
  config: Config;
  store: Store;
  services: Services;
  metrics: Metrics;
  redis?: Redis | undefined;
  logger: Logger;
  version: string;
}

function routerError(err: FastifyError, _req: FastifyRequest, reply: FastifyReply): void {
  if (err.code === 'FST_ERR_MAX_PARAM_LENGTH')
    reply.code(400).send(toErrorBody('validation_failed', 'a path parameter is too long'));
  else reply.code(400).send(toErrorBody('bad_request', 'the URL is not valid percent-encoding'));
}

/**
 * How often Node checks the headers and request timeouts: a quarter of the shorter one, at most
 * every second (Node's default, 30 s, would let a request run up to 30 s over its limit).
 */
function timeoutCheckInterval(config: Config): number {
  const shorter = Math.min(config.headersTimeoutMs, config.requestTimeoutMs);
  return Math.max(10, Math.min(1000, Math.floor(shorter / 4)));
}

/**
 * Limits on what a connection may cost before any route runs: a whole request must arrive within
 * the request timeout (a body trickled byte by byte is cut off with 408), its headers within the
 * headers timeout (for a new connection counted from its opening, so one that sends nothing is
 * closed too), an idle keep-alive connection is closed after the keep-alive timeout, and beyond
 * the connection cap new connections are closed as they arrive. A route's own work is not timed.
 */
function limitConnections(app: FastifyInstance, config: Config): void {
  const server = app.server;
  server.maxConnections = config.maxConnections;
  // Fastify's connectionTimeout is the socket's inactivity timer (Node destroys a silent socket):
  // it guards a connection until its request has arrived, then stops, so a slow route is not cut.
  server.on('request', (req: IncomingMessage) => req.socket.setTimeout(0));
}

/**
 * Webhooks are refused with 503 `overloaded` (and Retry-After) while the event loop lags or the
 * heap is nearly full: providers retry them, and the hub catches up instead of queueing more. The
 * API and the health routes are not shed.
 */
function shedLoad(config: Config): FastifyUnderPressureOptions {
  return {
    maxEventLoopDelay: config.maxEventLoopDelayMs,
    // Past 90 % of V8's limit (--max-old-space-size) the process is near running out of memory.
    maxHeapUsedBytes: Math.floor(getHeapStatistics().heap_size_limit * 0.9),
    pressureHandler: async (_req, _reply, type) => {
      throw new AppError(
        'overloaded',
        `the hub is overloaded (${type === TYPE_EVENT_LOOP_DELAY ? 'event loop delay' : 'memory'}); retry shortly`,
      );
    },
  };
}

export async function buildServer(options: ServerOptions): Promise<FastifyInstance> {
  const { config, metrics } = options;
  trackConsumerLag(metrics, options.services.log);
  trackDeliveryQueue(metrics, options.services.deliveries);
  const app = Fastify({
    loggerInstance: options.logger as FastifyBaseLogger,
    bodyLimit: BODY_LIMIT,
    requestTimeout: config.requestTimeoutMs,
    connectionTimeout: config.headersTimeoutMs,
    keepAliveTimeout: config.keepAliveTimeoutMs,
    http: {
      headersTimeout: config.headersTimeoutMs,
      connectionsCheckingInterval: timeoutCheckInterval(config),
    },
    logController: new LogController({ requestIdLogLabel: 'request_id' }),
    // Accept a caller's X-Request-Id when it is a sane token, so ids follow a request across services.
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
    // Behind trusted proxies, the client's address (for throttling) is the one they forwarded.
    trustProxy: config.trustProxy.length > 0 ? [...config.trustProxy] : false,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    // The router's own refusals (a path parameter that is not valid percent-encoding, or longer
    // than the router takes) get the API's error shape too, not Fastify's.
    frameworkErrors: routerError,
    clientErrorHandler,
  }).withTypeProvider<ZodTypeProvider>();
  limitConnections(app, config);

  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.decorate('services', options.services);
  app.decorate('store', options.store);
  app.decorate('metrics', metrics);
  app.decorate('publicUrl', config.publicUrl);
  installErrorHandling(app);
  app.decorate(
    'authThrottle',
    await createAuthThrottle(app, {
      redis: options.redis,
      windowMs: config.authFailureWindowMs,
      perAddress: config.authFailuresPerAddress,
      perClient: config.authFailuresPerClient,
    }),
  );

  app.addHook('onRequest', async (req, reply) => {
    reply.header('x-request-id', req.id);
  });
  app.addHook('onResponse', async (req, reply) => {
    metrics.httpDuration.observe(
      {
        method: req.method,
        route: req.routeOptions.url ?? 'unmatched',
        status_code: String(reply.statusCode),
      },
      reply.elapsedTime / 1000,
    );
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Interchange API',
        version: options.version,
        description:
          'Multi-tenant integration hub. Get a token from `POST /oauth/token` (client credentials), then call `/v1` ' +
          'with `Authorization: Bearer <token>`. Errors are `{ "error": { "code", "message", "details"? } }`; ' +
          "each operation lists the statuses it may answer and, in each one's description, the codes. " +
          'Any request may also be refused before it reaches an operation, on its connection: ' +
          '408 `request_timeout` when it does not arrive within the request timeout, 431 `headers_too_large` ' +
          'when its headers exceed 16 KiB, 400 `bad_request` when it is not valid HTTP; and while the hub shuts down, 503.',
        license: { name: 'MIT', identifier: 'MIT' },
      },
      servers: [{ url: config.publicUrl }],
      components: {
        securitySchemes: {
          bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
          metricsToken: {
            type: 'http',
            scheme: 'bearer',
            description: 'INTERCHANGE_METRICS_TOKEN, for GET /metrics when the hub sets one',
          },
          oauth2: { type: 'oauth2', flows: { clientCredentials: { tokenUrl: '/oauth/token', scopes: {} } } },
        },
      },
    },
    transform: jsonSchemaTransform,
    transformObject: jsonSchemaTransformObject,
  });
  await app.register(swaggerUi, { routePrefix: '/docs', staticCSP: true, logLevel: 'warn' });
  app.get('/openapi.json', { schema: { hide: true }, logLevel: 'warn' }, async () => app.swagger());

  await app.register(healthRoutes, { metricsToken: config.metricsToken });
  await app.register(oauthRoutes);
  await app.register(async (inbound) => {
    await inbound.register(underPressure, shedLoad(config));
    await inbound.register(hookRoutes);
  });
  await app.register(async (v1) => {
    installAuth(v1);
    // Text the database cannot store (U+0000, unpaired surrogates) or JSON nested too deep to
    // serialize is bad input wherever it is: refused before any route sees it.
    v1.addHook('preValidation', async (req) => {
      const parts = { params: req.params, querystring: req.query, body: req.body };
      for (const [part, value] of Object.entries(parts)) {
        const bad = unstorable(value);
        if (!bad) continue;
        const path = [part, bad.path].filter(Boolean).join('.');
        throw new AppError('validation_failed', `${path} ${bad.message}`, {
          details: [{ path, message: bad.message }],
        });
      }
    });
    await v1.register(rateLimit, {
      hook: 'onRequest',
      timeWindow: RATE_WINDOW_MS,
      max: (req) => (req.principal ? TIER_LIMITS[req.principal.tier] : TIER_LIMITS.free),
      keyGenerator: (req) => req.principal?.clientId ?? req.ip,
      enableDraftSpec: true,
      nameSpace: 'interchange:ratelimit:',
      redis: options.redis,
      // A Redis outage must not take the API down with it: requests pass and the error is logged.
      skipOnError: true,
      errorResponseBuilder: (_req, ctx) =>
        new AppError(
          'rate_limited',
          `rate limit of ${ctx.max} requests per hour exceeded; retry in ${ctx.after}`,
        ),
    });
    await v1.register(organizationRoutes);
    await v1.register(apiClientRoutes);
    await v1.register(userRoutes);
    await v1.register(connectorRoutes);
    await v1.register(installationRoutes);
    await v1.register(eventRoutes);
    await v1.register(inboundRequestRoutes);
    await v1.register(deliveryRoutes);
  });

  return app;
}
