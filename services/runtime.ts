import { createApp } from "./api/app.ts";
import { GroupCommitter } from "./api/modules/events/group-commit.ts";
import { createOpsApp } from "./api/plugins/ops.ts";
import { parseDurations, type Config } from "./core/config/index.ts";
import { createSql } from "./core/db/client.ts";
import { createLogger, type Logger } from "./core/log.ts";
import { publishJobs } from "./core/outbox/publish.ts";
import { clearPublished } from "./core/outbox/sql.ts";
import { BrokerConnection } from "./core/queue/connection.ts";
import { envelopeBody } from "./core/queue/messages.ts";
import { ConfirmPublisher } from "./core/queue/publisher.ts";
import { declareTopology, topologyFor } from "./core/queue/topology.ts";
import type { Telemetry } from "./core/telemetry/setup.ts";
import { OutboxSweeper } from "./dispatcher/sweeper.ts";
import { DeliveryPipeline } from "./worker/dispatch/pipeline.ts";
import { DeliveryLimiter } from "./worker/dispatch/limiter.ts";
import { AttemptRecorder } from "./worker/dispatch/recorder.ts";
import { EndpointCache } from "./worker/endpoint-cache.ts";
import { WorkQueueConsumer } from "./worker/consumer.ts";

export const ROLES = ["api", "worker", "dispatcher", "all"] as const;
export type Role = (typeof ROLES)[number];

export interface RunningRoles {
  role: Role;
  port: number;
  url: string;
  stop(): Promise<void>;
}

export interface StartOptions {
  log?: Logger;
  telemetry?: Telemetry;
}

/**
 * Wires the components one role needs — `all` runs every role in one process — and serves HTTP:
 * the API for `api`/`all`, health/readiness/metrics only for `worker`/`dispatcher`.
 */
export async function startRoles(config: Config, role: Role, options: StartOptions = {}): Promise<RunningRoles> {
  const log = options.log ?? createLogger(config.telemetry.LOG_LEVEL, { role });
  const has = (r: Role) => role === "all" || role === r;
  const sql = createSql(config.database);
  const topology = topologyFor(config.amqp);
  const broker = new BrokerConnection(config.amqp.AMQP_URL, log);
  await broker.onConnect(async (connection) => {
    const channel = await connection.createChannel();
    await declareTopology(channel, config.amqp);
    await channel.close();
  });

  const publisher = has("api") || has("dispatcher") ? new ConfirmPublisher(broker, topology) : undefined;
  await publisher?.start();
  const stops: (() => Promise<void>)[] = [];

  let fetchHandler: (request: Request) => Response | Promise<Response>;
  const readiness = async () => ({
    postgres: await sql`select 1`.then(() => true, () => false),
    rabbitmq: broker.connected && (publisher?.ready ?? true),
  });
  const renderMetrics = options.telemetry?.renderMetrics;

  if (has("api")) {
    const fastPublishes = new Set<Promise<void>>();
    const ingest = new GroupCommitter(sql, {
      maxEvents: config.ingest.INGEST_GROUP_MAX_EVENTS,
      concurrency: config.ingest.INGEST_GROUP_CONCURRENCY,
      graceMs: config.dispatch.DISPATCH_GRACE_MS,
      // Fast path: publish right after commit. A failure is fine: the sweeper finds the jobs later.
      onCommitted: (committed) => {
        const jobs = committed.flatMap(({ row, jobs }) => {
          const body = envelopeBody(row.id, row.type, row.createdAt, row.dataJson);
          return jobs.map((j) => ({ jobId: j.id, eventId: row.id, endpointId: j.endpointId, attempt: 0, createdAt: row.createdAt.getTime(), body }));
        });
        if (jobs.length === 0 || !publisher!.ready) return;
        const work = publishJobs(publisher!, jobs, {
          queueCount: config.amqp.AMQP_WORK_QUEUES,
          jobsPerMessage: config.dispatch.DISPATCH_JOBS_PER_MESSAGE,
          path: "fast",
        })
          .then(() => clearPublished(sql, jobs.map((j) => j.jobId)))
          .catch((err) => log.debug("fast-path publish failed; the sweeper will publish", { error: (err as Error).message }));
        fastPublishes.add(work);
        void work.finally(() => fastPublishes.delete(work));
      },
    });
    const app = createApp({ config, sql, ingest, readiness, renderMetrics, log });
    fetchHandler = (request) => app.handle(request);
    stops.push(async () => {
      await Promise.allSettled([...fastPublishes]);
    });
  } else {
    const ops = createOpsApp({ readiness, renderMetrics });
    fetchHandler = (request) => ops.handle(request);
  }

  if (has("dispatcher")) {
    const sweeper = new OutboxSweeper(sql, publisher!, config, log);
    sweeper.start();
    stops.push(() => sweeper.stop());
  }

  if (has("worker")) {
    const d = config.delivery;
    const endpoints = new EndpointCache(sql, log);
    await endpoints.start();
    const limiter = new DeliveryLimiter({
      total: d.WORKER_MAX_IN_FLIGHT,
      perEndpoint: d.WORKER_MAX_IN_FLIGHT_PER_ENDPOINT,
      maxWaitMs: 1000,
    });
    const recorder = new AttemptRecorder(sql, log, { maxBatch: d.RECORD_BATCH_MAX, deferDelayMs: 2000 });
    const pipeline = new DeliveryPipeline(sql, endpoints, limiter, recorder, {
      defaultTimeoutMs: d.DELIVERY_TIMEOUT_MS,
      allowPrivateNetworks: d.DELIVERY_ALLOW_PRIVATE_NETWORKS,
      maxResponseBytes: d.DELIVERY_MAX_RESPONSE_BYTES,
      claimBatch: d.RECORD_BATCH_MAX,
      leaseMarginMs: d.WORKER_LEASE_MARGIN_MS,
      retry: { scheduleMs: parseDurations(d.RETRY_SCHEDULE), jitter: d.RETRY_JITTER, maxRetryAfterMs: 24 * 3_600_000 },
    }, log);
    const consumer = new WorkQueueConsumer(broker, topology, pipeline, d.WORKER_PREFETCH, log);
    await consumer.start();
    stops.push(async () => {
      await consumer.stop();
      recorder.stop();
      await endpoints.stop();
    });
  }

  // Wait briefly for RabbitMQ so a healthy start is ready at once; if it is down, keep going:
  // the API still accepts events (they wait in the outbox) and the connection retries.
  await Promise.race([broker.start(), Bun.sleep(5000)]);

  const server = Bun.serve({
    port: config.http.PORT,
    hostname: config.http.HOST,
    fetch: fetchHandler,
    maxRequestBodySize: Math.max(config.http.MAX_PAYLOAD_BYTES * 4, 64 * 1024 * 1024),
  });
  const port = server.port ?? config.http.PORT;
  log.info("evently started", { role, port });

  let stopping: Promise<void> | undefined;
  return {
    role,
    port,
    url: `http://127.0.0.1:${port}`,
    stop: () =>
      (stopping ??= (async () => {
        await server.stop();
        for (const stop of stops) await stop();
        await publisher?.close();
        await broker.close();
        await sql.end({ timeout: 5 });
        log.info("evently stopped", { role });
      })()),
  };
}
