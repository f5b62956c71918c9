import { createApp } from "./api/app.ts";
import { Authenticator } from "./api/auth/authenticator.ts";
import { adminOnly } from "./http/auth.ts";
import { IngestRateLimiter } from "./core/ratelimit/limiter.ts";
import { createOpsApp } from "./http/server.ts";
import type { Config } from "./core/config/index.ts";
import { createIndexOnlySql, createSql, type Sql } from "./core/db/client.ts";
import { memoryTarget } from "./core/config/schema.ts";
import { MemoryGuard } from "./core/memory-guard.ts";
import { databaseHealth } from "./core/db/health.ts";
import { Ingest } from "./core/ingest/index.ts";
import { createLogger, type Logger } from "./core/log.ts";
import { PostgresTransport } from "./core/queue/postgres/transport.ts";
import { HANDOVER_PATH, handoverTokens, type HandoverHub } from "./core/queue/handover.ts";
import { INGEST_SESSION } from "./core/events/sql.ts";
import { RabbitTransport } from "./core/queue/rabbitmq/transport.ts";
import type { JobTransport } from "./core/queue/transport.ts";
import type { Telemetry } from "./core/telemetry/setup.ts";
import { OutboxSweeper } from "./dispatcher/sweeper.ts";
import { OperationRunner } from "./core/operations/runner.ts";
import { startWorker } from "./worker/start.ts";
import { observePipeline } from "./core/telemetry/gauges.ts";
import { startSeries } from "./core/telemetry/instruments.ts";

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
  /** The roles are the process's only work (run-role.ts), so targets for the whole process apply (PROCESS_MEMORY_TARGET_BYTES). */
  ownProcess?: boolean;
}

/** How long a start waits for RabbitMQ before serving anyway (it keeps reconnecting). */
const BROKER_WAIT_MS = 5000;

/**
 * Wiring only: one Postgres pool, the configured queue transport, the roles asked for (`all` runs
 * every role in one process), and an HTTP server: the API for `api`/`all`, health, readiness and
 * metrics alone for `worker`/`dispatcher`. Stops in reverse order of starting.
 */
export async function startRoles(config: Config, role: Role, options: StartOptions = {}): Promise<RunningRoles> {
  const log = options.log ?? createLogger(config.telemetry.LOG_LEVEL, { role });
  const has = (r: Role) => role === "all" || role === r;
  // Binds the instruments (and with them every role's process gauges: memory, event-loop lag).
  startSeries({ api: has("api"), worker: has("worker"), dispatcher: has("dispatcher") }, config.queue.QUEUE_TRANSPORT === "rabbitmq");
  const sql = createSql(config.database, { pool: role });
  const transport = createTransport(config, sql, log, role);
  await transport.start(BROKER_WAIT_MS);
  const stops: (() => Promise<void>)[] = [() => transport.stop()];
  const memory = new MemoryGuard({ limitBytes: memoryTarget(config.process, options.ownProcess ? role : undefined) });

  if (has("dispatcher")) stops.push(startDispatcher(config, sql, transport, log, role === "dispatcher"));
  // Bulk replays run in every dispatcher, and in workers too where no dispatcher is deployed (the
  // Postgres transport); any number of runners share them safely.
  if (has("dispatcher") || (has("worker") && transport.kind === "postgres")) stops.push(startOperations(config, sql, log));
  if (has("worker")) stops.push(await startWorker(config, sql, transport, log, memory));
  // One role per transport reads the pipeline's gauges (docs/observability.md): the dispatcher with
  // RabbitMQ, the workers with the Postgres transport, where no dispatcher need run.
  if (transport.kind === "rabbitmq" ? has("dispatcher") : has("worker"))
    stops.push(observeStop(observePipeline(sql, transport, { topEndpoints: config.telemetry.METRICS_TOP_ENDPOINTS }, log)));

  const readiness = async () => ({
    // Not ready at once while the database circuit is open (core/db/health.ts), else a live probe.
    postgres: await databaseHealth(sql).check(2000),
    ...transport.readiness(),
  });
  const renderMetrics = options.telemetry?.renderMetrics;
  const adminKey = config.http.ADMIN_API_KEY;
  let httpApp;
  let hub: HandoverHub | null = null;
  if (has("api")) {
    if (!adminKey) throw new Error("the api role needs ADMIN_API_KEY (run-role.ts makes one for `all`)");
    const authenticator = new Authenticator(sql, adminKey, log);
    await authenticator.start();
    const rateLimit = new IngestRateLimiter(sql, { logger: log });
    stops.push(() => authenticator.stop(), () => rateLimit.stop());
    // Group commits go through connections of their own, one per commit in flight (INGEST_SESSION).
    const ingestSql = createSql(config.database, { pool: "ingest", max: config.ingest.INGEST_GROUP_CONCURRENCY, connection: INGEST_SESSION });
    stops.push(() => ingestSql.end({ timeout: 5 }));
    // Separate workers may connect to take this process's new jobs straight from its commits.
    if (!has("worker") && config.secrets.ENCRYPTION_KEY)
      hub = transport.acceptHandovers(handoverTokens(config.secrets));
    const ingest = new Ingest(ingestSql, transport, config.ingest);
    httpApp = createApp({ config, sql, ingest, readiness, renderMetrics, log, authenticate: authenticator.authenticate, rateLimit, memory });
  } else {
    httpApp = createOpsApp({
      readiness,
      renderMetrics,
      metricsAccess: config.http.METRICS_AUTH,
      authenticate: adminKey ? adminOnly(adminKey) : undefined,
    });
  }
  const listen = { port: config.http.PORT, hostname: config.http.HOST, maxRequestBodySize: Math.max(config.http.MAX_PAYLOAD_BYTES * 4, 64 * 1024 * 1024) };
  const handovers = hub;
  const server = handovers
    ? Bun.serve({
        ...listen,
        fetch: (request, server) => (request.url.endsWith(HANDOVER_PATH) ? handovers.upgrade(request, server) : httpApp.handle(request)),
        websocket: handovers.websocket,
      })
    : Bun.serve({ ...listen, fetch: (request) => httpApp.handle(request) });
  const port = server.port ?? config.http.PORT;
  log.info("evently started", { role, port, transport: transport.kind });

  let stopping: Promise<void> | undefined;
  return {
    role,
    port,
    url: `http://127.0.0.1:${port}`,
    stop: () =>
      (stopping ??= (async () => {
        // A server's graceful stop waits for its WebSockets too: the hand-over's go first.
        handovers?.stop();
        await server.stop();
        for (const stop of stops.reverse()) await stop();
        await sql.end({ timeout: 5 });
        log.info("evently stopped", { role });
      })()),
  };
}

export function createTransport(config: Config, sql: Sql, log: Logger, role: Role = "all"): JobTransport {
  const q = config.queue;
  // A connection of its own for the transport's busiest statement, in INDEX_ONLY_SESSION: the fast
  // path's outbox clears on RabbitMQ, the takes on Postgres; made only in a role that runs them.
  const connectOwn = (pool: "outbox-clear" | "take") => () => createIndexOnlySql(config.database, 1, { pool });
  // A worker alone connects to the API for the hand-over; `all` hands over in memory (Postgres transport).
  const handoverFrom =
    role === "worker" && q.QUEUE_HANDOVER_URL && config.secrets.ENCRYPTION_KEY
      ? { url: q.QUEUE_HANDOVER_URL, token: handoverTokens(config.secrets)[0]! }
      : undefined;
  if (q.QUEUE_TRANSPORT === "rabbitmq") {
    const handover = { leaseMs: config.delivery.WORKER_LEASE_MS, maxPerCommit: q.QUEUE_TAKE_BATCH, maxInFlight: config.delivery.WORKER_MAX_IN_FLIGHT, from: handoverFrom };
    return new RabbitTransport({ ...q, AMQP_URL: q.AMQP_URL! }, sql, log, config.delivery.WORKER_PREFETCH, connectOwn("outbox-clear"), handover);
  }
  return new PostgresTransport(
    sql,
    connectOwn("take"),
    {
      pollIntervalMs: q.QUEUE_POLL_INTERVAL_MS,
      takeBatch: q.QUEUE_TAKE_BATCH,
      maxInFlight: config.delivery.WORKER_MAX_IN_FLIGHT,
      claimLeaseMs: config.delivery.WORKER_LEASE_MS,
      maxRetriesPerSecond: config.dispatch.DISPATCH_MAX_RETRIES_PER_SECOND,
      handOverLocally: q.QUEUE_LOCAL_HANDOVER,
      handoverFrom,
    },
    log,
  );
}

/**
 * The dispatcher publishes what the outbox holds to RabbitMQ. With the Postgres transport workers
 * read the outbox themselves, so the role only runs bulk operations (startOperations) and says so.
 */
function startDispatcher(config: Config, sql: Sql, transport: JobTransport, log: Logger, alone: boolean): () => Promise<void> {
  if (!(transport instanceof RabbitTransport)) {
    if (alone) log.info("dispatcher runs bulk operations only: with QUEUE_TRANSPORT=postgres workers take due jobs from the outbox themselves");
    return async () => {};
  }
  const sweeper = new OutboxSweeper(sql, transport, config, log);
  sweeper.start();
  return () => sweeper.stop();
}

const observeStop = (remove: () => void) => async () => remove();

function startOperations(config: Config, sql: Sql, log: Logger): () => Promise<void> {
  const d = config.dispatch;
  const runner = new OperationRunner(sql, { batchSize: d.OPERATION_BATCH_SIZE, ratePerSecond: d.OPERATION_RATE_PER_SECOND }, log);
  runner.start();
  return () => runner.stop();
}
