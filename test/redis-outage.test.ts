// Redis away at start-up or mid-run: the hub starts and serves anyway (rate limits not enforced
// meanwhile), says so naming Redis (never its password), at most once per interval, reconnects in
// the background and says when Redis is back.
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { connectRedis } from '../src/redis.ts';
import { startTestApp, type TestApp } from './helpers/app.ts';
import { freePort, sleep } from './helpers/cli.ts';

const realRedis = process.env.REDIS_URL ? new URL(process.env.REDIS_URL) : undefined;
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Log lines (parsed) whose message mentions Redis. */
function redisLines(logs: string): Array<{ level: number; msg: string; redis?: string }> {
  return logs
    .split('\n')
    .filter((line) => line.includes('Redis'))
    .map((line) => JSON.parse(line));
}

/** A TCP proxy to the real Redis on `port`, which a test opens and closes to make Redis come and go. */
function redisProxy(port: number) {
  let server: Server | undefined;
  const sockets = new Set<Socket>();
  return {
    open: () =>
      new Promise<void>((resolve, reject) => {
        server = createServer((client) => {
          const upstream = netConnect(Number(realRedis?.port || 6379), realRedis?.hostname ?? '127.0.0.1');
          for (const s of [client, upstream]) {
            sockets.add(s);
            s.on('error', () => {
              client.destroy();
              upstream.destroy();
            });
            s.on('close', () => sockets.delete(s));
          }
          client.pipe(upstream).pipe(client);
        });
        server.once('error', reject);
        server.listen(port, '127.0.0.1', () => resolve());
      }),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        if (server) server.close(() => resolve());
        else resolve();
        server = undefined;
      }),
  };
}

async function waitFor(what: string, check: () => boolean, ms = 15_000) {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('REDIS_URL unreachable at start-up', () => {
  it('starts, warns once naming Redis without the password, and serves every request', async () => {
    const port = await freePort();
    let t: TestApp | undefined;
    try {
      t = await startTestApp({ REDIS_URL: `redis://default:hunter2@127.0.0.1:${port}/0` });
    } catch (err) {
      expect.fail(`start-up failed: ${(err as Error).message}`);
    }
    cleanups.push(() => t?.close());
    const token = await t.token(t.admin);
    for (let i = 0; i < 30; i++) {
      const res = await t.call('GET', '/v1/organizations', { token });
      expect(res.statusCode, res.body).toBe(200);
    }
    // Reconnection attempts go on meanwhile (every 200 ms, then up to every 2 s).
    await sleep(1500);
    const lines = redisLines(t.logs());
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 40, redis: `redis://127.0.0.1:${port}/0` });
    expect(lines[0]?.msg).toContain('REDIS_URL');
    expect(lines[0]?.msg).toContain('unreachable');
    expect(t.logs()).not.toContain('hunter2');
  }, 60_000);
});

describe.runIf(realRedis)('Redis coming and going (requires REDIS_URL)', () => {
  it('the app reconnects in the background once Redis answers, and counts in it again', async () => {
    const port = await freePort();
    const proxy = redisProxy(port);
    cleanups.push(() => proxy.close());
    const t = await startTestApp({ REDIS_URL: `redis://127.0.0.1:${port}` });
    cleanups.push(() => t.close());
    const org = await t.organization('Counted');
    expect(redisLines(t.logs()).map((l) => l.level)).toEqual([40]);

    await proxy.open();
    await waitFor('"reachable again"', () => t.logs().includes('reachable again'));
    const first = await t.call('GET', '/v1/users', { token: org.token });
    const second = await t.call('GET', '/v1/users', { token: org.token });
    // Counted in Redis: the second request sees the first one's count.
    expect(Number(second.headers['ratelimit-remaining'])).toBe(
      Number(first.headers['ratelimit-remaining']) - 1,
    );
  }, 60_000);

  it('a connected client logs an outage mid-run once per interval, and the recovery', async () => {
    const port = await freePort();
    const proxy = redisProxy(port);
    cleanups.push(() => proxy.close());
    await proxy.open();
    const lines: string[] = [];
    const logger = pino(
      { level: 'info' },
      new Writable({
        write(chunk, _enc, done) {
          lines.push(String(chunk));
          done();
        },
      }),
    );
    const redis = await connectRedis(`redis://127.0.0.1:${port}`, logger, 1000);
    cleanups.push(() => redis.disconnect());
    expect(redis.status).toBe('ready');
    expect(lines).toEqual([]);

    await proxy.close();
    await waitFor('a warning', () => redisLines(lines.join('')).length > 0);
    // Commands fail fast meanwhile (the rate limiter then lets requests pass).
    await expect(redis.incr('interchange:test:outage')).rejects.toThrow();
    await sleep(2500);
    const during = redisLines(lines.join(''));
    expect(during.every((l) => l.level === 40)).toBe(true);
    // Reconnection fails every 200 ms to 2 s; warned at most once a second.
    expect(during.length).toBeGreaterThanOrEqual(1);
    expect(during.length).toBeLessThanOrEqual(4);

    await proxy.open();
    await waitFor('"reachable again"', () => lines.join('').includes('reachable again'));
    expect(redisLines(lines.join('')).at(-1)?.level).toBe(30);
    await expect(redis.ping()).resolves.toBe('PONG');
  }, 60_000);
});
