// The Kafka event log: the EventLog contract against a real broker (only with KAFKA_BROKERS), and what
// holds without one: the relay's messages and commits, the partitioner, and failing soft with no broker.
import { randomBytes } from 'node:crypto';
import { Admin, compatibilityPartitioner, type MessageToProduce } from '@platformatic/kafka';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createKafkaLog } from '../src/log/kafka.ts';
import { RELAY_GROUP, REPLAY_HEADER, startRelay } from '../src/log/kafka-relay.ts';
import { murmur2, partitionOf } from '../src/log/partitioner.ts';
import { createPostgresLog } from '../src/log/postgres.ts';
import { onPostgres } from './helpers/database.ts';
import { eventLogContract } from './helpers/log-contract.ts';
import { type LogFixture, openLogFixture, until } from './helpers/log-fixture.ts';

const brokers = process.env.KAFKA_BROKERS?.split(',').filter(Boolean) ?? [];
/** Every topic of this run starts with it, so runs never read each other's records (deleted afterwards). */
const RUN_PREFIX = `interchange-test-${randomBytes(4).toString('hex')}-`;

describe(`kafka log parts that need no broker (on ${onPostgres ? 'PostgreSQL' : 'PGlite'})`, () => {
  let f: LogFixture;
  beforeEach(async () => {
    f = await openLogFixture();
  }, 60_000);
  afterEach(() => f.close(), 60_000);

  it('relays each record as a keyed CloudEvents message, in order, committing only after a send succeeds', async () => {
    const outbox = createPostgresLog({ db: f.store.db, logger: f.logger });
    const sent: MessageToProduce<string, string, string, string>[] = [];
    let failures = 1;
    const relay = startRelay({
      outbox,
      topicName: (t) => `staging.${t}`,
      ensureTopics: async () => {},
      leaseMs: 2000,
      producer: {
        async send(o) {
          if (failures-- > 0) throw new Error('broker unavailable');
          sent.push(...o.messages);
          return {};
        },
      },
    });
    const key = 'relay-shop.myshopify.com';
    const appended = await f.append(outbox, [
      { key },
      { key },
      { key: 'other-shop', topic: 'customer-events' },
    ]);
    // append returns entries grouped by partition: pick them out by key.
    const [first, second] = appended.filter((a) => a.partitionKey === key);
    const third = appended.find((a) => a.partitionKey === 'other-shop');
    if (!first || !second || !third) throw new Error('not appended');
    await f.replay(outbox, [first]);
    await until(() => sent.length >= 4, 10_000, 'four messages');
    await until(
      async () => (await outbox.lag()).filter((r) => r.group === RELAY_GROUP).every((r) => r.lag === 0),
      5000,
      'the relay to commit',
    );
    await relay.stop();
    await outbox.close();

    expect(failures, 'the failed send was tried again').toBeLessThan(0);
    const ofKey = sent.filter((m) => m.key === key);
    expect(ofKey.map((m) => JSON.parse(m.value ?? '').id)).toEqual([
      first.eventId,
      second.eventId,
      first.eventId,
    ]);
    expect(ofKey.map((m) => m.topic)).toEqual(Array(3).fill('staging.order-events'));
    expect(ofKey.map((m) => (m.headers as Record<string, string>)[REPLAY_HEADER])).toEqual([
      undefined,
      undefined,
      'true',
    ]);
    const other = sent.find((m) => m.key === 'other-shop');
    expect(other?.topic).toBe('staging.customer-events');
    const value = JSON.parse(other?.value ?? '');
    expect(value).toMatchObject({
      specversion: '1.0',
      id: third.eventId,
      type: 'customer.updated',
      partitionkey: 'other-shop',
      organization: f.organizationId,
    });
    expect(other?.headers).toMatchObject({
      'content-type': 'application/cloudevents+json; charset=UTF-8',
      ce_id: value.id,
      ce_type: 'customer.updated',
      ce_source: value.source,
      ce_specversion: '1.0',
    });
  });

  it("keeps appends in Postgres, reports the relay's lag, and stops promptly when no broker answers", async () => {
    const log = createKafkaLog({ db: f.store.db, logger: f.logger, brokers: ['127.0.0.1:1'] });
    const appended = await f.append(log, [{ key: 'offline-shop' }, { key: 'offline-shop' }]);
    expect(appended.map((a) => a.offset)).toEqual([0, 1]);
    const consumer = log.consume({ group: 'offline', topics: ['order-events'], handler: async () => {} });
    expect(log.kind).toBe('kafka');
    await until(
      async () => (await log.lag()).some((r) => r.group === RELAY_GROUP && r.lag === 2),
      20_000,
      'the relay group to show 2 unpublished records',
    );
    expect(consumer.assignment()).toEqual([]);
    const started = Date.now();
    await consumer.stop();
    await log.close();
    expect(Date.now() - started).toBeLessThan(20_000);
  }, 60_000);
});

describe('the partitioner', () => {
  it("puts a key where Kafka's Java client would, and where the Postgres log does", () => {
    for (let i = 0; i < 500; i++) {
      const key = Buffer.from(`shop-${i}-${'x'.repeat(i % 7)}.myshopify.com`);
      const ours = murmur2(key) & 0x7fffffff;
      expect(ours).toBe(compatibilityPartitioner({ topic: 't' }, key));
      expect(ours % 16).toBe(partitionOf(key.toString(), 16));
    }
  });
});

describe.skipIf(brokers.length === 0)('kafka log on a broker (skipped: KAFKA_BROKERS is not set)', () => {
  afterAll(async () => {
    const admin = new Admin({ clientId: 'interchange-test-cleanup', bootstrapBrokers: brokers });
    try {
      const topics = (await admin.listTopics()).filter((t) => t.startsWith(RUN_PREFIX));
      if (topics.length > 0) await admin.deleteTopics({ topics });
    } finally {
      await admin.close();
    }
  });

  eventLogContract(
    'EventLog contract: kafka log',
    (f) =>
      createKafkaLog({
        db: f.store.db,
        logger: f.logger,
        brokers,
        topicPrefix: `${RUN_PREFIX}${f.scope}.`,
        partitions: 4,
        replicas: 1,
      }),
    { leaseMs: 6000, takeoverMs: 30_000, waitMs: 30_000, settleMs: 3000 },
  );
});
