import { Queue, Worker } from "bullmq";
import { Redis } from "ioredis";
import { runGone } from "../bench/reaper.ts";
import type { PeerDriver } from "./peer.ts";

/**
 * The BullMQ peer: jobs in Redis (BullMQ 6 over ioredis), one queue of the run's own, a `deliver`
 * job per event and endpoint retried with exponential backoff (1 s, 2 s, 4 s …) up to `attempts`,
 * and removed once delivered. The producer enqueues with `addBulk` (many) or `add` (one); the
 * worker is a BullMQ `Worker` with `concurrency` jobs at once.
 *
 * Durability is Redis's: 202 means Redis holds the job in memory. The Redis here has no
 * persistence configured (no RDB snapshots, no append-only file), so a Redis restart loses every
 * queued job; with `appendfsync everysec` a team would lose up to a second of them.
 *
 * Tuning: short runs of `npx bun loadtest/peers/tune.ts --peer=bullmq` (6 s per phase; 2 cores shared
 * by Redis, the peer, the load generator and the sink, no other load). Latency at 1,000 events/s
 * p50 / p95 / p99 in ms, then the highest ramp step kept up, two runs each:
 *   - concurrency 64: 4.9 / 50 / 78 and 3.5 / 21 / 42, 3,000/s both;
 *   - concurrency 128: 15 / 138 / 201 and 14 / 113 / 161, 3,000/s both;
 *   - concurrency 256: 3.3 / 16 / 29, 3,000/s; then, with one `add` per request, 5.2 / 49 / 169
 *     (4,000/s) and 2.6 / 12 / 23 (3,000/s), and with group commit (`addBulk` shared by concurrent
 *     requests) 2.9 / 13 / 23 (3,000/s) and 7.9 / 89 / 137 (4,000/s);
 *   - concurrency 512: 4.1 / 26 / 59 (2,000/s) and 3.8 / 31 / 69 (4,000/s).
 * Chosen: concurrency 256 and one `add` per request. Group commit made no difference beyond the
 * run-to-run spread (Redis answers an `add` in well under a millisecond), so the simpler producer
 * stays. Past 3,000–4,000 events/s the machine is out of CPU: the worker process at 0.7 cores (each
 * job is several Redis round trips and Lua scripts), Redis 0.6, the producer 0.2, the load
 * generator and sink 0.3.
 */
const keyPrefix = "bull";

async function withRedis<T>(url: string, fn: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  try {
    return await fn(redis);
  } finally {
    redis.disconnect();
  }
}

export const bullmqPeer: PeerDriver = {
  name: "bullmq",
  queueServer: "Redis",
  summary: "BullMQ 6 on Redis 7: producer `addBulk`/`add`, one `Worker` with `concurrency` jobs at once",
  defaults: {
    /** Jobs the worker runs at once (BullMQ's `concurrency`). */
    concurrency: 256,
    attempts: 25,
    /** Concurrent single-event requests share one `addBulk` (see producer.ts); off: one `add` each. */
    groupCommit: false,
    groupCommitInFlight: 2,
  },
  doesNotGive: [
    "no attempt history: a delivered job is removed, a failing one keeps only its last error and stack trace",
    "no per-endpoint isolation: one slow or failing endpoint holds worker slots every other endpoint's jobs wait for",
    "no durability beyond Redis's own persistence settings (none on this machine): a Redis restart loses queued jobs",
    "no replay of delivered events, idempotency keys, routing by event type, per-endpoint rate limits, circuit breaker or SSRF guard",
  ],

  async provision(runId) {
    const queueUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
    const queueName = `evently-bullmq-${runId}`;
    const keys = async (redis: Redis, pattern = `${keyPrefix}:${queueName}:*`) => {
      const found: string[] = [];
      let cursor = "0";
      do {
        const [next, batch] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000);
        found.push(...batch);
        cursor = next;
      } while (cursor !== "0");
      return found;
    };
    // Queues of benches killed before their cleanup (their pid gone): see bench/reaper.ts.
    await withRedis(queueUrl, async (redis) => {
      const stale = (await keys(redis, `${keyPrefix}:evently-bullmq-*`)).filter((key) => runGone(key.split(":")[1]!.slice("evently-bullmq-".length)));
      for (let i = 0; i < stale.length; i += 1000) await redis.del(...stale.slice(i, i + 1000));
    });
    // Redis is one process: its CPU counts for the peer through its pid, which INFO reports.
    const info = await withRedis(queueUrl, (redis) => redis.info("server"));
    const pid = Number(/^process_id:(\d+)/m.exec(info)?.[1]);
    const pids: Record<string, number> = Number.isInteger(pid) ? { redis: pid } : {};
    return {
      queueUrl,
      queueName,
      pids,
      remove: async () => {
        const queue = new Queue(queueName, { connection: { url: queueUrl }, prefix: keyPrefix });
        try {
          await queue.obliterate({ force: true });
        } finally {
          await queue.close();
        }
        // obliterate leaves the queue's event stream and meta keys; the run's keys go with it.
        await withRedis(queueUrl, async (redis) => {
          const left = await keys(redis);
          if (left.length) await redis.del(...left);
        });
      },
      leftovers: () => withRedis(queueUrl, async (redis) => (await keys(redis)).length),
    };
  },

  async openProducer({ queueUrl, queueName, settings }) {
    const queue = new Queue(queueName, {
      connection: { url: queueUrl },
      prefix: keyPrefix,
      defaultJobOptions: {
        attempts: Number(settings.attempts),
        backoff: { type: "exponential", delay: 1000 },
        removeOnComplete: true,
        removeOnFail: { count: 10_000 },
      },
    });
    await queue.waitUntilReady();
    return {
      enqueue: async (deliveries) => {
        if (deliveries.length === 1) await queue.add("deliver", deliveries[0]);
        else await queue.addBulk(deliveries.map((data) => ({ name: "deliver", data })));
      },
      close: () => queue.close(),
    };
  },

  async startWorker({ queueUrl, queueName, settings }, deliver) {
    const worker = new Worker(queueName, (job) => deliver(job.data), {
      connection: { url: queueUrl, maxRetriesPerRequest: null },
      prefix: keyPrefix,
      concurrency: Number(settings.concurrency),
    });
    worker.on("error", (err) => console.error(JSON.stringify({ level: "error", msg: err.message })));
    await worker.waitUntilReady();
    return { close: () => worker.close() };
  },
};
