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
import { DeliveryLimiter } from "./delivery/limiter.ts";
import { DeliveryPipeline } from "./delivery/pipeline.ts";
import { AttemptRecorder } from "./delivery/recorder.ts";
import { EndpointCache } from "./endpoint-cache.ts";

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
  const recorder = new AttemptRecorder(sql, log, { maxBatch: d.RECORD_BATCH_MAX, deferDelayMs: d.WORKER_DEFER_DELAY_MS });
  const pipeline = new DeliveryPipeline(sql, endpoints, limiter, recorder, {
    defaultTimeoutMs: d.DELIVERY_TIMEOUT_MS,
    addressPolicy: AddressPolicy.fromConfig(d),
    maxResponseBytes: d.DELIVERY_MAX_RESPONSE_BYTES,
    claimBatch: d.RECORD_BATCH_MAX,
    claimTimeoutMs: d.WORKER_CLAIM_TIMEOUT_MS,
    leaseMarginMs: d.WORKER_LEASE_MARGIN_MS,
    retry: { scheduleMs: d.RETRY_SCHEDULE, jitter: d.RETRY_JITTER, maxRetryAfterMs: d.RETRY_AFTER_MAX_MS },
  }, log);
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
