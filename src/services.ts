// The services the HTTP routes, the workers and the CLI use, built from a store and the secret box.
import type { Logger } from 'pino';
import type { Config } from './config.ts';
import { connectorById } from './connectors/catalog.ts';
import type { SecretBox } from './crypto/secret-box.ts';
import { createDeliveryService } from './delivery/deliveries.ts';
import { createEgressGuard } from './delivery/egress.ts';
import { createHttpClient } from './delivery/http.ts';
import { createEventService } from './events/events.ts';
import { createCommitter } from './ingest/committer.ts';
import { createCustomerLookup } from './ingest/customer-of.ts';
import { createIngestService } from './ingest/ingest.ts';
import { createInboundRequestService } from './ingest/requests.ts';
import { createInstallationService } from './installations/installations.ts';
import type { EventLog } from './log/port.ts';
import { createPostgresLog } from './log/postgres.ts';
import type { Store } from './store/db.ts';
import { createApiClientService } from './tenancy/api-clients.ts';
import { createOrganizationService } from './tenancy/organizations.ts';
import { createTokenService } from './tenancy/tokens.ts';
import { createUserService } from './users/users.ts';

/**
 * `log`: the event log, when not the PostgreSQL one (the Kafka log: see `openEventLog`, which
 * loads the Kafka client only when KAFKA_BROKERS is set).
 */
export function createServices(
  config: Config,
  store: Store,
  box: SecretBox,
  logger: Logger,
  options: { log?: EventLog | undefined } = {},
) {
  const db = store.db;
  const log = options.log ?? createPostgresLog({ db, logger, notifier: store.notifier });
  const committer = createCommitter({
    store,
    log,
    logger,
    bounds: { maxWaiting: config.ingestQueueLimit, maxWaitingBytes: config.ingestQueueBytes },
  });
  // Every outbound request of a connector goes through the egress guard.
  const egress = createEgressGuard({
    allow: config.egressAllow,
    logger: logger.child({ component: 'egress' }),
  });
  const installations = createInstallationService(db, box, connectorById, egress, {
    maxDestinations: config.maxDestinations,
  });
  return {
    egress,
    http: createHttpClient(egress),
    organizations: createOrganizationService(db),
    apiClients: createApiClientService(db),
    users: createUserService(db),
    tokens: createTokenService({ db, box, issuer: config.tokenIssuer, ttlSeconds: config.tokenTtlSeconds }),
    installations,
    log,
    committer,
    ingest: createIngestService({ installations, committer, logger, customerOf: createCustomerLookup(db) }),
    events: createEventService(db, log, committer),
    inboundRequests: createInboundRequestService(db),
    deliveries: createDeliveryService(db),
  };
}

export type Services = ReturnType<typeof createServices>;

/** The Kafka event log when KAFKA_BROKERS is set (its client loaded only then), else none. */
export async function openEventLog(
  config: Config,
  store: Store,
  logger: Logger,
): Promise<EventLog | undefined> {
  if (config.kafkaBrokers.length === 0) return undefined;
  const { createKafkaLog } = await import('./log/kafka.ts');
  return createKafkaLog({
    db: store.db,
    notifier: store.notifier,
    logger,
    brokers: config.kafkaBrokers,
    topicPrefix: config.kafkaTopicPrefix,
  });
}
