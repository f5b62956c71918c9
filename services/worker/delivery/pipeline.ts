import type { AttemptRow } from "@evently/core/attempts/sql.ts";
import { Batcher } from "@evently/core/batching.ts";
import type { Sql } from "@evently/core/db/client.ts";
import { withDeadline } from "@evently/core/db/errors.ts";
import { newId } from "@evently/core/ids.ts";
import { claimJobs, type ClaimRequest, type JobOutcome } from "@evently/core/jobs/sql.ts";
import type { Logger } from "@evently/core/log.ts";
import type { AddressPolicy } from "@evently/core/net/policy.ts";
import type { DeliveryMessage, JobMessage } from "@evently/core/queue/messages.ts";
import { redactHeaders } from "@evently/core/redact.ts";
import { signWithKeys } from "@evently/core/signing/index.ts";
import { instruments } from "@evently/core/telemetry/instruments.ts";
import { SPAN } from "@evently/core/telemetry/names.ts";
import { tracer } from "@evently/core/telemetry/tracing.ts";
import { signingKeys, type DeliveryTarget, type EndpointCache } from "../endpoint-cache.ts";
import { send, type SendResult } from "../http/send.ts";
import { SsrfGuard } from "../http/ssrf.ts";
import { isFinal, nextStep, parseRetryAfter, type RetryPolicy } from "../retry/policy.ts";
import type { DeliveryLimiter } from "./limiter.ts";
import { DeliveryOutcomeLog } from "./outcome-log.ts";
import type { AttemptRecorder } from "./recorder.ts";

export interface PipelineOptions {
  defaultTimeoutMs: number;
  /** Where deliveries may connect (DELIVERY_ALLOWED_CIDRS, DELIVERY_ALLOW_PRIVATE_NETWORKS). */
  addressPolicy: AddressPolicy;
  maxResponseBytes: number;
  claimBatch: number;
  /** Longest wait for Postgres to confirm a batch claim; then the message is handed back. */
  claimTimeoutMs: number;
  /** Added to the endpoint's timeout to make a claim's lease (crash recovery time). */
  leaseMarginMs: number;
  retry: RetryPolicy;
}

export const USER_AGENT = "Evently-Webhooks/0.1";

/**
 * One worker's delivery stages: prepare (endpoint from cache, claim) → send (bounded per endpoint)
 * → record (batched). `handle` resolves once every job in the message is durably settled —
 * attempt recorded, deferred, or found to be a duplicate — and only then is the message acked.
 */
export class DeliveryPipeline {
  private readonly claims: Batcher<ClaimRequest, boolean>;
  private readonly outcomeLog: DeliveryOutcomeLog;
  private readonly guard: SsrfGuard;

  constructor(
    private readonly sql: Sql,
    private readonly endpoints: EndpointCache,
    private readonly limiter: DeliveryLimiter,
    private readonly recorder: AttemptRecorder,
    private readonly options: PipelineOptions,
    log: Logger,
  ) {
    this.claims = new Batcher(
      async (requests) => {
        const claimed = await withDeadline(claimJobs(this.sql, requests), options.claimTimeoutMs, "claim");
        return requests.map((r) => claimed.has(r.jobId));
      },
      { maxBatch: options.claimBatch, concurrency: 2 },
    );
    this.outcomeLog = new DeliveryOutcomeLog(log);
    this.guard = new SsrfGuard(options.addressPolicy);
  }

  async handle(message: DeliveryMessage): Promise<void> {
    const targets = await this.endpoints.getMany(message.jobs.map((j) => j.endpointId));
    await Promise.all(message.jobs.map((job) => this.handleJob(job, targets.get(job.endpointId))));
  }

  private async handleJob(job: JobMessage, target: DeliveryTarget | undefined): Promise<void> {
    const m = instruments();
    // No endpoint row: it was deleted, and its jobs with it. Nothing to deliver or record.
    if (!target) return;
    const timeoutMs = target.timeoutMs ?? this.options.defaultTimeoutMs;
    const claimed = await this.claims.add({ jobId: job.jobId, attempt: job.attempt, leaseMs: timeoutMs + this.options.leaseMarginMs });
    if (!claimed) {
      m.duplicateJobs.add(1);
      return;
    }
    if (!target.enabled) {
      await this.record(job, target, { status: null, responseBody: null, retryAfter: null, durationMs: 0, errorClass: "endpoint_disabled", errorDetail: "endpoint is disabled" }, {}, new Date());
      return;
    }
    if ((await this.limiter.acquire(target.id)) === "defer") {
      m.jobsDeferred.add(1);
      await this.recorder.defer(job.jobId);
      return;
    }
    let result: SendResult | undefined;
    let headers: Record<string, string> = {};
    const attemptedAt = new Date();
    m.deliveriesInFlight.add(1);
    try {
      ({ result, headers } = await tracer().startActiveSpan(SPAN.deliverySend, async (span) => {
        span.setAttributes({ "evently.job_id": job.jobId, "evently.endpoint_id": target.id, "evently.attempt": job.attempt + 1 });
        try {
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
          const result = await send({
            url: target.url,
            headers,
            body: job.body,
            timeoutMs,
            maxResponseBytes: this.options.maxResponseBytes,
          }, this.guard);
          span.setAttributes({ "http.response.status_code": result.status ?? 0, "evently.error_class": result.errorClass ?? "" });
          return { result, headers };
        } finally {
          span.end();
        }
      }));
    } finally {
      m.deliveriesInFlight.add(-1);
      this.limiter.release(target.id, result?.durationMs ?? timeoutMs);
    }
    m.deliveryDuration.record(result.durationMs / 1000, { outcome: result.errorClass ? "failed" : "delivered" });
    await this.record(job, target, result, headers, attemptedAt);
  }

  private async record(
    job: JobMessage,
    target: DeliveryTarget,
    result: SendResult,
    sentHeaders: Record<string, string>,
    attemptedAt: Date,
  ): Promise<void> {
    const m = instruments();
    const attemptNumber = job.attempt + 1;
    let outcome: JobOutcome;
    if (result.errorClass === null) {
      outcome = { jobId: job.jobId, status: "delivered", attemptNumber, nextAttemptAt: null, attemptedAt };
      m.deliveryLag.record((Date.now() - job.createdAt) / 1000);
    } else {
      const retryAfterMs = result.status === 429 || result.status === 503 ? parseRetryAfter(result.retryAfter, attemptedAt) : null;
      const step = isFinal(result.errorClass) ? ({ kind: "fail" } as const) : nextStep(this.options.retry, attemptNumber, attemptedAt, retryAfterMs);
      outcome =
        step.kind === "retry"
          ? { jobId: job.jobId, status: "scheduled", attemptNumber, nextAttemptAt: step.at, attemptedAt }
          : { jobId: job.jobId, status: "failed", attemptNumber, nextAttemptAt: null, attemptedAt };
      if (step.kind === "fail") m.jobsFailed.add(1);
    }
    m.deliveryAttempts.add(1, { outcome: outcome.status, error_class: result.errorClass ?? "none" });
    // Credentials (the URL's password, credential-like headers) are sent but never recorded or logged.
    const url = target.recordedUrl;
    const attempt: AttemptRow = {
      id: newId("attempt", attemptedAt.getTime()),
      appId: target.appId,
      jobId: job.jobId,
      eventId: job.eventId,
      endpointId: target.id,
      attemptNumber,
      url,
      requestHeaders: redactHeaders(sentHeaders),
      responseStatus: result.status,
      responseBody: result.responseBody,
      durationMs: result.durationMs,
      errorClass: result.errorClass,
      errorDetail: result.errorDetail,
      createdAt: attemptedAt,
    };
    await this.recorder.record({ attempt, outcome });
    this.outcomeLog.observe({
      jobId: job.jobId,
      endpointId: target.id,
      url,
      attempt: attemptNumber,
      status: result.status,
      errorClass: result.errorClass,
      errorDetail: result.errorDetail,
      gaveUp: outcome.status === "failed",
    });
  }
}
