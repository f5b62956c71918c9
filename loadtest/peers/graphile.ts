import { Logger, makeWorkerUtils, run, runMigrations, type WorkerUtils } from "graphile-worker";
import pg from "pg";
import postgres from "postgres";
import { runGone } from "../bench/reaper.ts";
import type { PeerDriver } from "./peer.ts";

/**
 * The graphile-worker peer: jobs in Postgres (graphile-worker 0.17, its own schema in a scratch
 * database), a `deliver` task per event and endpoint, retried by graphile-worker's exponential
 * backoff up to `maxAttempts`. The producer enqueues with `addJobs` (many) or `addJob` (one); the
 * worker is graphile-worker's `run` with a task list, new jobs announced by its LISTEN/NOTIFY.
 * Only warnings and errors are logged: graphile-worker's per-job info line ("Completed task …") is
 * dropped, as a team running thousands of jobs a second would do.
 *
 * Tuning: short runs of `npx bun loadtest/peers/tune.ts --peer=graphile` (6 s per phase; 2 cores shared
 * by Postgres, the peer, the load generator and the sink; runs marked * had other load on the
 * machine). Latency at 1,000 events/s p50 / p95 / p99 in ms, then the highest ramp step kept up:
 *   - graphile-worker's defaults (each worker slot fetches and completes its own job), concurrency
 *     32 / 64 / 128*: 3,604 / 7,307 / 7,340, 10,945 / … / 17,545, 7,799 / … / 14,680, and no ramp
 *     step kept up: about 300–450 deliveries/s, Postgres at about one core on per-job statements;
 *   - batching on (concurrency 128*): `localQueue.size` 64, `completeJobBatchDelay` 0: 40 / 369 / 426,
 *     1,500/s; 64, 10 ms: 36 / 147 / 203, 3,000/s; 256, 0: 17 / 38 / 48, 3,000/s; 256, 10 ms:
 *     16 / 35 / 51, 3,000/s;
 *   - local queue 256 and 10 ms: concurrency 64: 13 / 28 / 37 and 15 / 30 / 38, 3,000/s and 4,000/s;
 *     128: 12 / 23 / 33, 5,000/s; 256: 18 / 39 / 66, 3,000/s; concurrency 64 with a 32-connection
 *     worker pool: 38 / 110 / 141, 5,000/s; with `useNodeTime`: 11 / 23 / 30, 5,000/s;
 *   - producer: one `addJob` per request instead of group commit: 408 / 602 / 643 ms with only 591
 *     of 1,000 events/s accepted (every request waits for its own commit), against 15 / 30 / 38.
 * Chosen: concurrency 128, local queue 256, completions batched over 10 ms, group commit in the
 * producer. Pool size 10 (graphile-worker warns it is below the concurrency, but with the local
 * queue one statement serves many jobs, and 32 connections was slower) and `useNodeTime` (within
 * the noise) stay at their defaults; `pollInterval` only matters for retries (new jobs are
 * announced by NOTIFY). The spread between two runs of one setting is up to a third. These runs
 * were on graphile-worker 0.18.0; the peer uses 0.17.3 because 0.18 wants Node 22.18, newer than
 * the project's engines. On 0.17.3 (with some other load on the machine) the chosen settings gave
 * 19 / 40 / 62 and 3,000/s, and the same with the local queue off 7,143 ms p50 and no step kept up.
 */
const quietLogger = new Logger(() => (level, message) => {
  if (level === "error" || level === "warning") console.error(JSON.stringify({ level, msg: message }));
});

// node-postgres closes a connection idle for 10 s by default and opens another when needed. A
// backend that exits takes its CPU time out of /proc, so the benchmark would under-count
// Postgres's share: the pools keep their connections instead (also sparing reconnects).
const pool = (connectionString: string, max: number) => new pg.Pool({ connectionString, max, idleTimeoutMillis: 0 });

const adminUrl = (databaseUrl: string) => Object.assign(new URL(databaseUrl), { pathname: "/postgres" }).toString();

export const graphilePeer: PeerDriver = {
  name: "graphile",
  queueServer: "Postgres",
  summary: "graphile-worker 0.17 on Postgres: producer `addJobs`/`addJob`, worker `run()` with a `deliver` task",
  defaults: {
    /** Jobs run at once by the worker process (graphile-worker's `concurrency`). */
    concurrency: 128,
    /** Jobs the pool locks per fetch and hands out locally (`localQueue.size`; -1 = each job fetched alone). */
    localQueueSize: 256,
    /** Milliseconds to gather job completions into one statement (`completeJobBatchDelay`; -1 = each alone). */
    completeJobBatchDelay: 10,
    /** Poll for due retries (ms); new jobs wake the worker at once through NOTIFY. */
    pollInterval: 2000,
    useNodeTime: false,
    maxAttempts: 25,
    /** Postgres connections of the worker and of the producer. */
    workerPoolSize: 10,
    producerPoolSize: 10,
    /** Concurrent single-event requests share one `addJobs` (see producer.ts); off: one `addJob` each. */
    groupCommit: true,
    groupCommitInFlight: 2,
  },
  doesNotGive: [
    "no attempt history: a job row is deleted when it succeeds, and a failing one keeps only its last error",
    "no per-endpoint isolation: one slow or failing endpoint holds worker slots every other endpoint's jobs wait for",
    "no replay of delivered events, no dead-letter inspection beyond the jobs table",
    "no idempotency keys, routing by event type, per-endpoint rate limits, circuit breaker or SSRF guard",
  ],

  async provision(runId) {
    const serverUrl = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
    const database = `evently_graphile_${runId}`;
    const queueUrl = Object.assign(new URL(serverUrl), { pathname: `/${database}` }).toString();
    const admin = (statement: string) => {
      const sql = postgres(adminUrl(serverUrl), { max: 1, onnotice: () => {} });
      return sql.unsafe(statement).finally(() => sql.end());
    };
    // Scratch databases of benches killed before their cleanup (their pid gone): see bench/reaper.ts.
    for (const { datname } of await admin(`select datname from pg_database where datname like 'evently_graphile_%'`))
      if (runGone(String(datname).slice("evently_graphile_".length))) await admin(`drop database if exists "${datname}" with (force)`);
    await admin(`create database "${database}"`);
    await runMigrations({ connectionString: queueUrl, logger: quietLogger });
    return {
      queueUrl,
      queueName: "",
      pids: {},
      database,
      vacuumTables: ["graphile_worker._private_jobs", "graphile_worker._private_job_queues"],
      remove: async () => void (await admin(`drop database if exists "${database}" with (force)`)),
      leftovers: async () => (await admin(`select 1 from pg_database where datname = '${database}'`)).length,
    };
  },

  async openProducer({ queueUrl, settings }) {
    const pgPool = pool(queueUrl, Number(settings.producerPoolSize));
    const utils: WorkerUtils = await makeWorkerUtils({ pgPool, logger: quietLogger });
    const maxAttempts = Number(settings.maxAttempts);
    return {
      enqueue: async (deliveries) => {
        if (deliveries.length === 1) await utils.addJob("deliver", deliveries[0], { maxAttempts });
        else await utils.addJobs(deliveries.map((payload) => ({ identifier: "deliver", payload, maxAttempts })));
      },
      close: async () => {
        await utils.release();
        await pgPool.end();
      },
    };
  },

  async startWorker({ queueUrl, settings }, deliver) {
    const localQueueSize = Number(settings.localQueueSize);
    const pgPool = pool(queueUrl, Number(settings.workerPoolSize));
    const runner = await run({
      pgPool,
      concurrency: Number(settings.concurrency),
      pollInterval: Number(settings.pollInterval),
      useNodeTime: Boolean(settings.useNodeTime),
      noHandleSignals: true,
      logger: quietLogger,
      taskList: { deliver: (payload) => deliver(payload as Parameters<typeof deliver>[0]) },
      preset: {
        worker: {
          ...(localQueueSize > 1 ? { localQueue: { size: localQueueSize } } : {}),
          completeJobBatchDelay: Number(settings.completeJobBatchDelay),
        },
      },
    });
    return {
      close: async () => {
        await runner.stop();
        await pgPool.end();
      },
    };
  },
};
