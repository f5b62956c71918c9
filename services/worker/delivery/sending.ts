import { SpanStatusCode } from "@opentelemetry/api";
import type { AddressPolicy } from "@evently/core/net/policy.ts";
import { envelopeType, type JobMessage } from "@evently/core/queue/messages.ts";
import { signWithKeys } from "@evently/core/signing/index.ts";
import { instruments } from "@evently/core/telemetry/instruments.ts";
import { SPAN } from "@evently/core/telemetry/names.ts";
import { activePlace, spanAt, traceparentOf } from "@evently/core/telemetry/trace-context.ts";
import { signingKeys, type DeliveryTarget } from "../endpoint-cache.ts";
import { send, type SendResult } from "../http/send.ts";
import { SsrfGuard } from "../http/ssrf.ts";
import type { Hold, Verdict } from "./checks.ts";
import type { DeliveryLimiter } from "./limiter.ts";

export const USER_AGENT = "Evently-Webhooks/0.1";

export interface SendOptions {
  defaultTimeoutMs: number;
  /** Where deliveries may connect (DELIVERY_ALLOWED_CIDRS, DELIVERY_ALLOW_PRIVATE_NETWORKS). */
  addressPolicy: AddressPolicy;
  maxResponseBytes: number;
  /** How long a job that found its endpoint's slots full is held before it is offered again. */
  busyHoldMs: number;
  /**
   * Asked again once a slot is held, just before the request: waiting for a slot can outlast what
   * the prepare stage's checks saw (a circuit that opened meanwhile must not get an attempt).
   */
  recheck?: (job: JobMessage, target: DeliveryTarget, now: number) => Verdict | null;
}

/** One attempt as made: what was sent (headers, for the record) and what came back. */
export interface Sent {
  attemptedAt: Date;
  headers: Record<string, string>;
  result: SendResult;
}

/**
 * The send stage: a slot at the endpoint (bounded in flight, per endpoint and in total), the
 * Standard Webhooks headers and signature, and the HTTP request through the SSRF guard. Answers a
 * hold instead when the endpoint is so backed up that the job should not wait for a slot (`busy`),
 * or when the recheck says so once the slot is held.
 */
export class SendStage {
  private readonly guard: SsrfGuard;

  constructor(
    private readonly limiter: DeliveryLimiter,
    private readonly options: SendOptions,
  ) {
    this.guard = new SsrfGuard(options.addressPolicy);
  }

  timeoutMs(target: DeliveryTarget): number {
    return target.timeoutMs ?? this.options.defaultTimeoutMs;
  }

  async send(job: JobMessage, target: DeliveryTarget): Promise<Sent | Hold> {
    if ((await this.limiter.acquire(target.id)) === "defer") return { kind: "hold", reason: "busy", delayMs: this.options.busyHoldMs };
    const verdict = this.options.recheck?.(job, target, Date.now());
    if (verdict?.kind === "hold") {
      this.limiter.release(target.id); // no attempt: nothing to learn of the endpoint's speed
      return verdict;
    }
    const m = instruments();
    const timeoutMs = this.timeoutMs(target);
    const attemptedAt = new Date();
    let result: SendResult | undefined;
    m.deliveriesInFlight.add(1);
    try {
      return await spanAt(SPAN.deliverySend, activePlace(), {}, async (span) => {
        // Ids only: never the URL's credentials, the headers or the body.
        span?.setAttributes({
          "evently.job_id": job.jobId,
          "evently.event_id": job.eventId,
          "evently.endpoint_id": target.id,
          "evently.app_id": target.appId,
          "evently.attempt": job.attempt + 1,
        });
        span?.setAttribute("evently.event_type", envelopeType(job.body) ?? "");
        // A receiver that traces joins the attempt's span; nothing is added with tracing off.
        const traceparent = traceparentOf(span);
        const timestamp = Math.floor(attemptedAt.getTime() / 1000);
        const headers: Record<string, string> = {
          ...target.headers,
          "content-type": "application/json",
          "user-agent": USER_AGENT,
          "webhook-id": job.jobId,
          "webhook-timestamp": String(timestamp),
          // New secret first, then the previous one while a rotation's grace window is open.
          "webhook-signature": signWithKeys(signingKeys(target, attemptedAt), job.jobId, timestamp, job.body),
        };
        if (traceparent) headers.traceparent = traceparent;
        result = await send(
          { url: target.url, headers, body: job.body, timeoutMs, maxResponseBytes: this.options.maxResponseBytes },
          this.guard,
        );
        span?.setAttributes({ "http.response.status_code": result.status ?? 0, "evently.error_class": result.errorClass ?? "" });
        if (result.errorClass) span?.setStatus({ code: SpanStatusCode.ERROR, message: result.errorClass });
        m.deliveryDuration.record(result.durationMs / 1000, { outcome: result.errorClass ? "failed" : "delivered" });
        return { attemptedAt, headers, result };
      });
    } finally {
      m.deliveriesInFlight.add(-1);
      this.limiter.release(target.id, result?.durationMs ?? timeoutMs);
    }
  }
}
