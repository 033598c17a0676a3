// The outbox relay of the Kafka event log: a consumer group on the Postgres log that publishes each
// record to its Kafka topic (key: the partition key, value: the CloudEvents envelope) and commits after the acks.
import {
  type MessageToProduce,
  ProduceAcks,
  type ProduceResult,
  type SendOptions,
} from '@platformatic/kafka';
import { TOPICS, type Topic } from '../events/types.ts';
import type { Consumer, EventLog, LogRecord } from './port.ts';

/** The relay's consumer group on the Postgres log: at least once, its partitions leased across processes. */
export const RELAY_GROUP = 'kafka-relay';

/** Kafka header set to `true` on a record appended again by a replay. */
export const REPLAY_HEADER = 'interchange_replay';

/** What the relay needs of a producer: a `Producer<string, string, string, string>` is one. */
export interface Publisher {
  send(options: SendOptions<string, string, string, string>): Promise<ProduceResult>;
}
type StringMessage = MessageToProduce<string, string, string, string>;

/**
 * A log record as a Kafka message: CloudEvents structured mode (the whole envelope as JSON), with the
 * main attributes repeated as `ce_` headers so brokers' tools and routers can read them without parsing.
 */
export function toKafkaMessage(record: LogRecord, topicName: (topic: Topic) => string): StringMessage {
  const e = record.event;
  const headers: Record<string, string> = {
    'content-type': 'application/cloudevents+json; charset=UTF-8',
    ce_specversion: e.specversion,
    ce_id: e.id,
    ce_source: e.source,
    ce_type: e.type,
    ce_time: e.time,
  };
  if (e.subject !== null) headers.ce_subject = e.subject;
  if (record.replay) headers[REPLAY_HEADER] = 'true';
  return { topic: topicName(record.topic), key: e.partitionkey, value: JSON.stringify(e), headers };
}

export interface RelayOptions {
  /** The Postgres log the events are appended to (the outbox). */
  outbox: EventLog;
  producer: Publisher;
  topicName: (topic: Topic) => string;
  /** Resolves once the Kafka topics exist. */
  ensureTopics: () => Promise<void>;
  batchSize?: number;
  /** Longer than a send with all its retries may take: a relay that stops renewing loses its partitions. */
  leaseMs?: number;
}

/**
 * Starts relaying. Each handler call is one Postgres partition's records in offset order, sent in one
 * `send` and committed only after every broker acknowledged (acks=all, idempotent producer), so a
 * key's records reach their Kafka partition in order; a crash between send and commit sends again.
 */
export function startRelay(o: RelayOptions): Consumer {
  return o.outbox.consume({
    group: RELAY_GROUP,
    topics: TOPICS,
    batchSize: o.batchSize ?? 500,
    leaseMs: o.leaseMs ?? 60_000,
    pollMs: 50,
    handler: async (records) => {
      await o.ensureTopics();
      await o.producer.send({
        messages: records.map((r) => toKafkaMessage(r, o.topicName)),
        acks: ProduceAcks.ALL,
      });
    },
  });
}
