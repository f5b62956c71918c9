import { schedulePolicy } from "@evently/core/delivery/retry-policy.ts";
import { SecretCipher } from "@evently/core/secrets/cipher.ts";
import type { Config } from "@evently/core/config/index.ts";
import { BATCH_SESSION, createIndexOnlySql, type Sql } from "@evently/core/db/client.ts";
import type { Logger } from "@evently/core/log.ts";
import type { MemoryGuard } from "@evently/core/memory-guard.ts";
import { AddressPolicy } from "@evently/core/net/policy.ts";
import type { DeliveryMessage } from "@evently/core/queue/messages.ts";
import type { JobTransport, Received } from "@evently/core/queue/transport.ts";
import { instruments } from "@evently/core/telemetry/instruments.ts";
import { SPAN } from "@evently/core/telemetry/names.ts";
import { contextFrom, parentAndLinks, spanAt, tracingEnabled, type SpanPlace } from "@evently/core/telemetry/trace-context.ts";
import { DeliveryRateLimiter } from "@evently/core/ratelimit/delivery.ts";
import { endpointStateCheck, ttlCheck } from "./delivery/checks.ts";
import { CircuitBreaker } from "./delivery/circuit.ts";
import { EndpointDisabler } from "./delivery/endpoint-control.ts";
import { orderingCheck } from "./delivery/ordering.ts";
import { rateLimitCheck } from "./delivery/rate-limit.ts";
import { DeliveryLimiter } from "./delivery/limiter.ts";
import { DeliveryOutcomeLog } from "./delivery/outcome-log.ts";
import { DeliveryPipeline } from "./delivery/pipeline.ts";
import { LeaseKeeper } from "./delivery/leases.ts";
import { CLAIM_CONNECTIONS, PrepareStage } from "./delivery/prepare.ts";
import { AttemptRecorder, RECORDER_CONNECTIONS } from "./delivery/recorder.ts";
import { SendStage } from "./delivery/sending.ts";
import { EndpointCache } from "./endpoint-cache.ts";

// A paused endpoint's jobs are looked at again this often; resume brings them forward at once.
const PAUSED_HOLD_MS = 60_000;

/**
 * The worker role: the delivery pipeline fed by the queue transport. Returns its stop, which lets
 * messages in hand settle before the recorder stops retrying writes. `memory`, the process's guard,
 * is asked before each message is handled.
 */
export async function startWorker(config: Config, sql: Sql, transport: JobTransport, log: Logger, memory?: MemoryGuard): Promise<() => Promise<void>> {
  const d = config.delivery;
  const endpoints = new EndpointCache(sql, log, SecretCipher.fromConfig(config.secrets));
  await endpoints.start();
  const limiter = new DeliveryLimiter({
    total: d.WORKER_MAX_IN_FLIGHT,
    perEndpoint: d.WORKER_MAX_IN_FLIGHT_PER_ENDPOINT,
    maxWaitMs: d.WORKER_SLOT_WAIT_MS,
    onWaitingChange: (delta) => instruments().deliveriesWaiting.add(delta),
  });
  // Up-down counters appear only once changed: start them at 0 so charts and alerts see an idle worker.
  const m = instruments();
  m.deliveriesWaiting.add(0);
  m.deliveriesInFlight.add(0);
  for (const state of ["open", "half_open"]) m.circuitsOpen.add(0, { state });
  const sender: SendStage = new SendStage(limiter, {
    defaultTimeoutMs: d.DELIVERY_TIMEOUT_MS,
    addressPolicy: AddressPolicy.fromConfig(d),
    maxResponseBytes: d.DELIVERY_MAX_RESPONSE_BYTES,
    busyHoldMs: d.WORKER_DEFER_DELAY_MS,
    recheck: (job, target, now) => circuit.recheck(job, target, now),
  });
  // Claims are short leases renewed while the job is here, so a dead worker's jobs move on quickly.
  const leases = new LeaseKeeper(sql, log, { leaseMs: d.WORKER_LEASE_MS });
  leases.start();
  // Shared across workers through Postgres; the rate check runs last, so a token is spent only on a job that goes.
  const rateLimiter = new DeliveryRateLimiter(sql, { logger: log });
  // 410 Gone and auto-disable: the status change and an endpoint.disabled event, in one transaction.
  const control = new EndpointDisabler(sql, transport, log);
  const circuit = new CircuitBreaker(sql, control, log, {
    policy: {
      failureThreshold: d.CIRCUIT_FAILURE_THRESHOLD,
      failureRatio: d.CIRCUIT_FAILURE_RATIO,
      windowMs: d.CIRCUIT_WINDOW_MS,
      minAttempts: d.CIRCUIT_MIN_ATTEMPTS,
      openMs: d.CIRCUIT_OPEN_MS,
      openMaxMs: Math.max(d.CIRCUIT_OPEN_MS, d.CIRCUIT_OPEN_MAX_MS),
    },
    autoDisableAfterMs: d.ENDPOINT_AUTO_DISABLE_AFTER_MS,
    timeoutMs: (target) => sender.timeoutMs(target),
  });
  await circuit.start();
  // The circuit after ordering (a probe must be a job that may go) and before the rate limit.
  const checks = [ttlCheck, endpointStateCheck(PAUSED_HOLD_MS), orderingCheck(sql, log), circuit, rateLimitCheck(rateLimiter)];
  // Claims and attempt writes go through connections of their own, one per statement they can have
  // running at once (BATCH_SESSION: their cached plans read every table by index, once).
  const deliverySql = createIndexOnlySql(config.database, CLAIM_CONNECTIONS + RECORDER_CONNECTIONS, { session: BATCH_SESSION, pool: "delivery" });
  const prepare = new PrepareStage(deliverySql, endpoints, checks, {
    claimBatch: d.RECORD_BATCH_MAX,
    claimTimeoutMs: d.WORKER_CLAIM_TIMEOUT_MS,
    leaseMs: () => d.WORKER_LEASE_MS,
    leases,
  });
  const recorder = new AttemptRecorder(deliverySql, log, { maxBatch: d.RECORD_BATCH_MAX, leases, deadLetters: transport.kind === "rabbitmq" });
  const rules = {
    defaultPolicy: d.RETRY_POLICY ?? schedulePolicy(d.RETRY_SCHEDULE, d.RETRY_JITTER),
    retryAfter: { minMs: d.RETRY_AFTER_MIN_MS, maxMs: d.RETRY_AFTER_MAX_MS },
    finalStatuses: d.RETRY_FINAL_STATUSES,
  };
  const pipeline = new DeliveryPipeline(prepare, sender, rules, recorder, control, [new DeliveryOutcomeLog(log), circuit]);
  const stopConsuming = await transport.consume((message: DeliveryMessage, received: Received) => {
    memory?.beforeWork();
    return spanAt(SPAN.deliver, consumeSpanPlace(message, received.traceparent), { attributes: { "evently.jobs": message.jobs.length } }, async () => {
      try {
        await pipeline.handle(message, received.claimed === true);
      } catch (err) {
        // Claimed but not recorded: stop renewing, so the claims lapse and the jobs are offered again.
        leases.release(...message.jobs.map((j) => j.jobId));
        throw err;
      }
    });
  });
  return async () => {
    await stopConsuming();
    await circuit.stop();
    await leases.stop();
    recorder.stop();
    await deliverySql.end({ timeout: 5 });
    await rateLimiter.stop();
    await endpoints.stop();
  };
}

/**
 * The consume span's parent: the publish span named in the message's headers (RabbitMQ), else the
 * jobs' trace when they share one; it links every job's trace. None (no span) when no job is
 * traced; nothing is parsed with tracing off.
 */
function consumeSpanPlace(message: DeliveryMessage, traceparent: string | undefined): SpanPlace | null {
  if (!tracingEnabled()) return null;
  const place = parentAndLinks(message.jobs.map((job) => job.traceparent));
  return place && traceparent ? { ...place, parent: contextFrom(traceparent, place.parent) } : place;
}
