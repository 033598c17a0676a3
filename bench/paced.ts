// An open-loop load generator at a fixed offered rate: request i is due at start + i/rate whatever
// the earlier ones are doing (unlike autocannon's `overallRate`, which lets each connection send its
// per-second quota back to back at the top of every second). Latency is from the moment a request
// is handed to the socket pool to its full answer, with sub-millisecond resolution. A request due
// while `maxInFlight` are unanswered is skipped and counted: the level was not sustained.
import { Pool } from 'undici';
import { percentile } from './lib.ts';

/** Wall-clock milliseconds with sub-millisecond resolution, comparable across our processes. */
const now = () => performance.timeOrigin + performance.now();

export interface PacedRequest {
  method: 'GET' | 'POST';
  path: string;
  headers?: Record<string, string>;
  body?: string;
}

export interface Answer {
  index: number;
  status: number;
  body: string;
  sentAt: number;
  answeredAt: number;
}

export interface PacedResult {
  /** Requests due in the window (rate × seconds). */
  offered: number;
  sent: number;
  /** Due while `maxInFlight` requests were unanswered, so not sent. */
  skipped: number;
  ok: number;
  /** Non-2xx answers and network errors, with the first of them. */
  failed: number;
  firstFailure?: string;
  /** 2xx answers per second, from the first request to the last answer. */
  rate: number;
  p50: number;
  p99: number;
  /** How late the generator sent, at its p99 (ms behind schedule): its own health. */
  lagP99: number;
  answers: Answer[];
}

export async function paced(options: {
  origin: string;
  rate: number;
  seconds: number;
  maxInFlight: number;
  request: (index: number) => PacedRequest;
  /** Keep every answer's body (e.g. the ids the hub gave); otherwise only the first failure's. */
  keepBodies?: boolean;
  onAnswer?: (answer: Answer) => void;
  tick?: (due: number, total: number) => void;
}): Promise<PacedResult> {
  const { origin, rate, seconds, maxInFlight, request } = options;
  const total = Math.round(rate * seconds);
  const pool = new Pool(origin, { connections: maxInFlight, keepAliveTimeout: 30_000 });
  const answers: Answer[] = [];
  const lags: number[] = [];
  const pending = new Set<Promise<void>>();
  let inFlight = 0;
  let due = 0;
  let skipped = 0;
  let failed = 0;
  let firstFailure: string | undefined;
  const start = now();

  const fire = (index: number) => {
    const req = request(index);
    const sentAt = now();
    lags.push(sentAt - (start + (index * 1000) / rate));
    inFlight++;
    const p = pool
      .request({ method: req.method, path: req.path, headers: req.headers, body: req.body })
      .then(async (res) => {
        const body = await res.body.text();
        const answeredAt = now();
        const ok = res.statusCode >= 200 && res.statusCode < 300;
        if (!ok) {
          failed++;
          firstFailure ??= `${res.statusCode} ${body.slice(0, 200)}`;
        }
        const answer = {
          index,
          status: res.statusCode,
          body: options.keepBodies || !ok ? body : '',
          sentAt,
          answeredAt,
        };
        answers.push(answer);
        options.onAnswer?.(answer);
      })
      .catch((err: Error) => {
        failed++;
        firstFailure ??= err.message;
      })
      .finally(() => {
        inFlight--;
        pending.delete(p);
      });
    pending.add(p);
  };

  await new Promise<void>((resolve) => {
    const step = () => {
      const target = Math.min(total, Math.floor(((now() - start) * rate) / 1000) + 1);
      while (due < target) {
        const index = due++;
        if (inFlight >= maxInFlight) skipped++;
        else fire(index);
      }
      options.tick?.(due, total);
      if (due >= total) resolve();
      else setTimeout(step, 1);
    };
    step();
  });
  await Promise.all([...pending]);
  await pool.close();

  const okAnswers = answers.filter((a) => a.status >= 200 && a.status < 300);
  const latencies = okAnswers.map((a) => a.answeredAt - a.sentAt).sort((a, b) => a - b);
  const last = okAnswers.reduce((m, a) => Math.max(m, a.answeredAt), start);
  lags.sort((a, b) => a - b);
  return {
    offered: total,
    sent: total - skipped,
    skipped,
    ok: okAnswers.length,
    failed,
    firstFailure,
    rate: last > start ? (okAnswers.length * 1000) / (last - start) : 0,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    lagP99: percentile(lags, 99),
    answers,
  };
}
