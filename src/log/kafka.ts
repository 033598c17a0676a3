// The event log on Kafka. PostgreSQL stays the system of record: append writes the Postgres log in the
// caller's transaction (the outbox), a relay publishes it to Kafka, and consumer groups are Kafka's own.
import { Admin, ListOffsetTimestamps, Producer, stringSerializers } from '@platformatic/kafka';
import type { Logger } from 'pino';
import { TOPICS, type Topic } from '../events/types.ts';
import type { Db, Notifier } from '../store/db.ts';
import { startKafkaConsumer } from './kafka-consumer.ts';
import { RELAY_GROUP, startRelay } from './kafka-relay.ts';
import { DEFAULT_PARTITIONS, murmur2 } from './partitioner.ts';
import type { Consumer, EventLog, LagRow } from './port.ts';
import { createPostgresLog } from './postgres.ts';

export interface KafkaLogOptions {
  db: Db;
  logger: Logger;
  /** Wakes the relay of another process when this one commits to the outbox (PostgreSQL). */
  notifier?: Notifier | undefined;
  /** `host:port` of one or more brokers (KAFKA_BROKERS). */
  brokers: readonly string[];
  /** Put before every topic name (KAFKA_TOPIC_PREFIX), so several environments can share a cluster. */
  topicPrefix?: string;
  clientId?: string;
  /** Partitions of the topics this log creates when they are missing (default 16, as the Postgres log). */
  partitions?: number;
  /** Replication factor of the topics it creates (default: the broker's default.replication.factor). */
  replicas?: number;
  /**
   * Where the relay runs: `on-consume` (default) starts it with the first consumer of this process,
   * so in worker processes and not in api-only ones; `always`; or `never` (another process relays).
   */
  relay?: 'on-consume' | 'always' | 'never';
}

/**
 * The EventLog on Kafka.
 *
 * @example
 * const log = config.kafkaBrokers.length > 0
 *   ? createKafkaLog({ db, logger, brokers: config.kafkaBrokers, topicPrefix: config.kafkaTopicPrefix })
 *   : createPostgresLog({ db, logger });
 */
export function createKafkaLog(options: KafkaLogOptions): EventLog {
  const { db, logger, topicPrefix = '', clientId = 'interchange', partitions = DEFAULT_PARTITIONS } = options;
  const brokers = [...options.brokers];
  const log = logger.child({ event_log: 'kafka' });
  const outbox = createPostgresLog({ db, logger, notifier: options.notifier });
  const topicName = (topic: Topic) => `${topicPrefix}${topic}`;
  const topicOf = (name: string) => TOPICS.find((t) => topicName(t) === name);

  const admin = new Admin({ clientId: `${clientId}-admin`, bootstrapBrokers: brokers });
  admin.on('error', (err) => log.warn({ err }, 'kafka admin error'));
  const producer = new Producer<string, string, string, string>({
    clientId: `${clientId}-relay`,
    bootstrapBrokers: brokers,
    serializers: stringSerializers,
    // Ordered, no duplicates from the client's own retries; bounded, so a dead cluster fails the send
    // (the relay then tries again) instead of holding it forever.
    idempotent: true,
    retries: 5,
    // Kafka's Java default partitioner (murmur2 made positive, modulo the count), as the Postgres log
    // uses: with 16 partitions a key lands in the same partition number in both.
    partitioner: (_message, key) => (key ? murmur2(key) & 0x7fffffff : 0),
  });
  producer.on('error', (err) => log.warn({ err }, 'kafka producer error'));

  let topicsReady: Promise<void> | undefined;
  function ensureTopics(): Promise<void> {
    topicsReady ??= createMissingTopics().catch((err: unknown) => {
      topicsReady = undefined;
      throw err;
    });
    return topicsReady;
  }
  async function createMissingTopics(): Promise<void> {
    const names = TOPICS.map(topicName);
    const existing = new Set(await admin.listTopics());
    const missing = names.filter((n) => !existing.has(n));
    if (missing.length === 0) return;
    try {
      await admin.createTopics({ topics: missing, partitions, replicas: options.replicas ?? -1 });
      log.info({ topics: missing, partitions }, 'created Kafka topics');
    } catch (err) {
      // Another process may have created them at the same moment.
      const now = new Set(await admin.listTopics());
      if (missing.some((n) => !now.has(n))) throw err;
    }
  }

  let relay: Consumer | undefined;
  const startRelayOnce = () => {
    relay ??= startRelay({ outbox, producer, topicName, ensureTopics });
  };
  if (options.relay === 'always') startRelayOnce();

  const consumers = new Set<Consumer>();
  const context = { brokers, logger, topicName, topicOf, ensureTopics };

  /**
   * What is not yet published (the relay's Postgres group), then each Kafka group's uncommitted
   * records. Without the cluster, only the former: it is what grows during a Kafka outage.
   */
  async function lag(): Promise<LagRow[]> {
    const rows = (await outbox.lag()).filter((r) => r.group === RELAY_GROUP);
    try {
      rows.push(...(await kafkaLag()));
    } catch (err) {
      log.warn({ err }, 'could not read consumer lag from Kafka');
    }
    return rows.sort((a, b) => a.group.localeCompare(b.group) || a.topic.localeCompare(b.topic));
  }

  async function kafkaLag(): Promise<LagRow[]> {
    const rows: LagRow[] = [];
    const existing = new Set(await admin.listTopics());
    const names = TOPICS.map(topicName).filter((n) => existing.has(n));
    const groups = [...(await admin.listGroups()).keys()];
    if (names.length === 0 || groups.length === 0) return rows;
    const metadata = await admin.metadata({ topics: names });
    const indexes = (name: string) =>
      Array.from({ length: metadata.topics.get(name)?.partitionsCount ?? 0 }, (_, i) => i);
    const offsets = async (timestamp: bigint) => {
      const listed = await admin.listOffsets({
        topics: names.map((name) => ({
          name,
          partitions: indexes(name).map((partitionIndex) => ({ partitionIndex, timestamp })),
        })),
      });
      return new Map(
        listed.flatMap((t) => t.partitions.map((p) => [`${t.name}/${p.partitionIndex}`, p.offset])),
      );
    };
    const [latest, earliest] = await Promise.all([
      offsets(ListOffsetTimestamps.LATEST),
      offsets(ListOffsetTimestamps.EARLIEST),
    ]);
    const committed = await admin.listConsumerGroupOffsets({
      groups: groups.map((groupId) => ({
        groupId,
        topics: names.map((name) => ({ name, partitionIndexes: indexes(name) })),
      })),
    });
    for (const group of committed) {
      for (const t of group.topics) {
        const topic = topicOf(t.name);
        // A group that never committed on a topic does not read it.
        if (!topic || !t.partitions.some((p) => p.committedOffset >= 0n)) continue;
        let sum = 0n;
        for (const p of t.partitions) {
          const key = `${t.name}/${p.partitionIndex}`;
          const end = latest.get(key) ?? 0n;
          const from = p.committedOffset >= 0n ? p.committedOffset : (earliest.get(key) ?? 0n);
          if (end > from) sum += end - from;
        }
        rows.push({ group: group.groupId, topic, lag: Number(sum) });
      }
    }
    return rows;
  }

  return {
    kind: 'kafka',
    // The Postgres rows are the outbox: they commit (or not) with the caller's transaction.
    append: (tx, entries) => outbox.append(tx, entries),
    appendCtes: (source) => outbox.appendCtes(source),
    partitionOf: (key) => outbox.partitionOf(key),
    // The relay reads the outbox: it publishes at once.
    committed: () => outbox.committed(),
    consume(consumerOptions) {
      if ((options.relay ?? 'on-consume') === 'on-consume') startRelayOnce();
      const consumer = startKafkaConsumer(context, consumerOptions);
      consumers.add(consumer);
      return {
        memberId: consumer.memberId,
        assignment: () => consumer.assignment(),
        async stop() {
          consumers.delete(consumer);
          await consumer.stop();
        },
      };
    },
    lag,
    async close() {
      await Promise.all([...consumers].map((c) => c.stop()));
      consumers.clear();
      await relay?.stop();
      await outbox.close();
      await Promise.allSettled([producer.close(), admin.close()]);
    },
  };
}
