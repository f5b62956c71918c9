import { schedulePolicy } from "@evently/core/delivery/retry-policy.ts";
import { setEndpointStatus } from "@evently/core/endpoints/sql.ts";
import { SecretCipher } from "@evently/core/secrets/cipher.ts";
import type { Config } from "@evently/core/config/index.ts";
import type { Sql } from "@evently/core/db/client.ts";
import type { Logger } from "@evently/core/log.ts";
import { AddressPolicy } from "@evently/core/net/policy.ts";
import type { DeliveryMessage } from "@evently/core/queue/messages.ts";
import type { JobTransport } from "@evently/core/queue/transport.ts";
import { instruments } from "@evently/core/telemetry/instruments.ts";
import { SPAN } from "@evently/core/telemetry/names.ts";
import { tracer } from "@evently/core/telemetry/tracing.ts";
import { endpointStateCheck, ttlCheck } from "./delivery/checks.ts";
import { DeliveryLimiter } from "./delivery/limiter.ts";
import { DeliveryOutcomeLog } from "./delivery/outcome-log.ts";
import { DeliveryPipeline, type EndpointControl } from "./delivery/pipeline.ts";
import { PrepareStage } from "./delivery/prepare.ts";
import { AttemptRecorder } from "./delivery/recorder.ts";
import { SendStage } from "./delivery/sending.ts";
import { EndpointCache } from "./endpoint-cache.ts";

// A paused endpoint's jobs are looked at again this often; resume brings them forward at once.
const PAUSED_HOLD_MS = 60_000;

/**
 * The worker role: the delivery pipeline fed by the queue transport. Returns its stop, which lets
 * messages in hand settle before the recorder stops retrying writes.
 */
export async function startWorker(config: Config, sql: Sql, transport: JobTransport, log: Logger): Promise<() => Promise<void>> {
  const d = config.delivery;
  const endpoints = new EndpointCache(sql, log, SecretCipher.fromConfig(config.secrets));
  await endpoints.start();
  const limiter = new DeliveryLimiter({
    total: d.WORKER_MAX_IN_FLIGHT,
    perEndpoint: d.WORKER_MAX_IN_FLIGHT_PER_ENDPOINT,
    maxWaitMs: d.WORKER_SLOT_WAIT_MS,
    onWaitingChange: (delta) => instruments().deliveriesWaiting.add(delta),
  });
  const sender = new SendStage(limiter, {
    defaultTimeoutMs: d.DELIVERY_TIMEOUT_MS,
    addressPolicy: AddressPolicy.fromConfig(d),
    maxResponseBytes: d.DELIVERY_MAX_RESPONSE_BYTES,
    busyHoldMs: d.WORKER_DEFER_DELAY_MS,
  });
  const prepare = new PrepareStage(sql, endpoints, [ttlCheck, endpointStateCheck(PAUSED_HOLD_MS)], {
    claimBatch: d.RECORD_BATCH_MAX,
    claimTimeoutMs: d.WORKER_CLAIM_TIMEOUT_MS,
    leaseMs: (target) => sender.timeoutMs(target) + d.WORKER_LEASE_MARGIN_MS,
  });
  const recorder = new AttemptRecorder(sql, log, { maxBatch: d.RECORD_BATCH_MAX });
  const control: EndpointControl = {
    disable: async (target, reason) => {
      await setEndpointStatus(sql, target.appId, target.id, { enabled: false, reason });
      log.warn("endpoint disabled", { endpointId: target.id, reason });
    },
  };
  const rules = {
    defaultPolicy: d.RETRY_POLICY ?? schedulePolicy(d.RETRY_SCHEDULE, d.RETRY_JITTER),
    retryAfter: { minMs: d.RETRY_AFTER_MIN_MS, maxMs: d.RETRY_AFTER_MAX_MS },
    finalStatuses: d.RETRY_FINAL_STATUSES,
  };
  const pipeline = new DeliveryPipeline(prepare, sender, rules, recorder, control, [new DeliveryOutcomeLog(log)]);
  const stopConsuming = await transport.consume((message: DeliveryMessage) =>
    tracer().startActiveSpan(SPAN.deliver, async (span) => {
      span.setAttribute("evently.jobs", message.jobs.length);
      try {
        await pipeline.handle(message);
      } finally {
        span.end();
      }
    }),
  );
  return async () => {
    await stopConsuming();
    recorder.stop();
    await endpoints.stop();
  };
}
