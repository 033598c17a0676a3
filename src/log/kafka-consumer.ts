// One member of a Kafka consumer group behind the EventLog port: each partition's records go to the
// handler in offset order and are committed when it resolves; a handler that outlives maxPollIntervalMs
// (default: its lease) makes it leave.
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import {
  Consumer as KafkaConsumer,
  type Message,
  MessagesStreamFallbackModes,
  MessagesStreamModes,
  stringDeserializers,
} from '@platformatic/kafka';
import type { Logger } from 'pino';
import { envelopeSchema } from '../events/envelope.ts';
import { TOPICS, type Topic } from '../events/types.ts';
import { REPLAY_HEADER } from './kafka-relay.ts';
import type { Consumer, ConsumerOptions, LogRecord } from './port.ts';

export interface KafkaConsumerContext {
  brokers: string[];
  logger: Logger;
  topicName(topic: Topic): string;
  /** The log topic of a Kafka topic name, or undefined when it is not one of this log's. */
  topicOf(name: string): Topic | undefined;
  ensureTopics(): Promise<void>;
}

/** Brokers refuse session timeouts below group.min.session.timeout.ms (6 s unless changed). */
export const MIN_SESSION_MS = 6000;
const DEFAULT_LEASE_MS = 30_000;

type StringMessage = Message<string, string, string, string>;
type StringConsumer = KafkaConsumer<string, string, string, string>;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Joins `options.group` (Kafka's own group protocol; the session timeout is `leaseMs`, at least
 * MIN_SESSION_MS). A new group starts at the earliest retained record, as a new Postgres group does.
 */
export function startKafkaConsumer(ctx: KafkaConsumerContext, options: ConsumerOptions): Consumer {
  const memberId = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  const topics = options.topics.filter((t) => TOPICS.includes(t));
  const batchSize = options.batchSize ?? 100;
  const leaseMs = Math.max(MIN_SESSION_MS, options.leaseMs ?? DEFAULT_LEASE_MS);
  const pollMs = options.pollMs ?? 100;
  // The client heartbeats on its own timer, so the member keeps its partitions while a handler runs;
  // this bounds how long (the client has no max.poll.interval.ms of its own).
  const maxPollIntervalMs = options.maxPollIntervalMs ?? leaseMs;
  const maxBuffered = Math.max(1000, batchSize * 10);
  const log = ctx.logger.child({ consumer_group: options.group, member: memberId });
  let running = true;
  let client: StringConsumer | undefined;
  let wake: () => void = () => {};
  let signalStop: () => void = () => {};
  const stopped = new Promise<void>((resolve) => {
    signalStop = resolve;
  });

  function idle(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wake = () => {};
        resolve();
      }
      wake = done;
    });
  }

  const assigned = (kc: StringConsumer, topic: string, partition: number) =>
    kc.assignments?.some((a) => a.topic === topic && a.partitions.includes(partition)) ?? false;

  function toRecord(m: StringMessage): LogRecord[] {
    const topic = ctx.topicOf(m.topic);
    try {
      if (!topic) throw new Error('not a log topic');
      const event = envelopeSchema.parse(JSON.parse(m.value));
      const replay = m.headers.get(REPLAY_HEADER) === 'true';
      return [{ topic, partition: m.partition, offset: Number(m.offset), replay, event }];
    } catch {
      // A poison message would block its partition for good: it is logged (never its content) and passed over.
      log.error(
        { topic: m.topic, partition: m.partition, offset: String(m.offset) },
        'skipping a Kafka message that is not a CloudEvents envelope',
      );
      return [];
    }
  }

  /**
   * One membership: join, hand records over until stopped or failed. Returns the still-running
   * handler call when it outlived maxPollIntervalMs (the member has then left the group).
   */
  async function session(): Promise<Promise<void> | undefined> {
    await ctx.ensureTopics();
    const kc: StringConsumer = new KafkaConsumer({
      clientId: memberId,
      bootstrapBrokers: ctx.brokers,
      groupId: options.group,
      sessionTimeout: leaseMs,
      rebalanceTimeout: leaseMs * 2,
      heartbeatInterval: Math.floor(leaseMs / 3),
      autocommit: false,
      maxWaitTime: Math.min(1000, Math.max(50, pollMs * 5)),
      deserializers: stringDeserializers,
    });
    let failure: Error | undefined;
    // The client emits `error` when it could not rejoin the group: start over with a new membership.
    kc.on('error', (err) => {
      failure ??= err;
      wake();
    });
    client = kc;
    try {
      const stream = await kc.consume({
        topics: topics.map(ctx.topicName),
        mode: MessagesStreamModes.COMMITTED,
        fallbackMode: MessagesStreamFallbackModes.EARLIEST,
        autocommit: false,
      });
      const buffer: StringMessage[] = [];
      let paused = false;
      stream.on('data', (m) => {
        buffer.push(m);
        if (!paused && buffer.length >= maxBuffered) {
          paused = true;
          stream.pause();
        }
        wake();
      });
      stream.on('error', (err) => {
        failure ??= err;
        wake();
      });
      stream.on('close', () => {
        failure ??= new Error('the Kafka message stream closed');
        wake();
      });
      /** Per partition, the next offset this member has not handed over yet (a rejoin re-fetches from the committed one). */
      const next = new Map<string, bigint>();
      while (running && failure === undefined) {
        if (buffer.length === 0) {
          await idle(pollMs * 10);
          continue;
        }
        const taken = buffer.splice(0);
        if (paused) {
          paused = false;
          stream.resume();
        }
        for (const [key, messages] of byPartition(taken, next)) {
          for (let i = 0; i < messages.length; i += batchSize) {
            const chunk = messages.slice(i, i + batchSize);
            const last = chunk.at(-1);
            if (!last || !running || failure !== undefined) return undefined; // uncommitted: delivered again
            // Revoked meanwhile: its new owner reads on from the committed offset.
            if (!assigned(kc, last.topic, last.partition)) break;
            const records = chunk.flatMap(toRecord);
            if (records.length > 0) {
              const call = options.handler(records);
              if (!(await settlesWithin(call, maxPollIntervalMs))) {
                log.warn(
                  { max_poll_interval_ms: maxPollIntervalMs },
                  'handler outlived maxPollIntervalMs: leaving the group to live members',
                );
                return call.then(
                  () => {},
                  (err) => log.error({ err }, 'late handler failed'),
                );
              }
            }
            next.set(key, last.offset + 1n);
            if (assigned(kc, last.topic, last.partition)) await last.commit();
          }
        }
      }
      if (failure !== undefined) throw failure;
      return undefined;
    } finally {
      client = undefined;
      // force: close the stream too, then leave the group (the promise overload has no force flag).
      await new Promise<void>((resolve) => {
        kc.close(true, (err) => {
          if (err) log.warn({ err }, 'kafka consumer did not close cleanly');
          resolve();
        });
      });
    }
  }

  const loop = (async () => {
    while (running) {
      try {
        const late = await session();
        // Like a Postgres member, it comes back only once its handler has returned.
        if (late) await Promise.race([late, stopped]);
      } catch (err) {
        if (!running) break;
        log.error({ err }, 'kafka consumer failed; joining again');
        await Promise.race([sleep(Math.min(5000, Math.max(1000, pollMs * 10))), stopped]);
      }
    }
  })();

  return {
    memberId,
    assignment: () =>
      (client?.assignments ?? [])
        .flatMap((a) => {
          const topic = ctx.topicOf(a.topic);
          return topic ? a.partitions.map((p) => `${topic}/${p}`) : [];
        })
        .sort(),
    async stop() {
      running = false;
      signalStop();
      wake();
      await loop;
    },
  };
}

/**
 * Messages grouped by partition, in offset order, without what this member already handed over or
 * what a re-fetch after a rebalance repeats.
 */
function byPartition(messages: StringMessage[], next: Map<string, bigint>): Map<string, StringMessage[]> {
  const groups = new Map<string, StringMessage[]>();
  for (const m of messages) {
    const key = `${m.topic}/${m.partition}`;
    const list = groups.get(key) ?? [];
    const after = list.at(-1)?.offset ?? (next.get(key) ?? 0n) - 1n;
    if (m.offset <= after) continue;
    list.push(m);
    groups.set(key, list);
  }
  return groups;
}

/** True when `call` resolved within `ms` (rethrowing its error), false when it is still running. */
async function settlesWithin(call: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const done = call.then(() => true);
  done.catch(() => {}); // a failure after the deadline is the caller's to report
  try {
    return await Promise.race([done, new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
