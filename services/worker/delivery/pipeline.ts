import { context, ROOT_CONTEXT } from "@opentelemetry/api";
import type { AttemptRow } from "@evently/core/attempts/sql.ts";
import { newId } from "@evently/core/ids.ts";
import type { JobOutcome } from "@evently/core/jobs/sql.ts";
import type { DeliveryMessage, JobMessage } from "@evently/core/queue/messages.ts";
import { redactHeaders } from "@evently/core/redact.ts";
import { instruments } from "@evently/core/telemetry/instruments.ts";
import { contextFrom, tracingEnabled } from "@evently/core/telemetry/trace-context.ts";
import type { DeliveryTarget } from "../endpoint-cache.ts";
import type { HoldReason } from "./checks.ts";
import { decideOutcome, type OutcomeRules } from "./outcome.ts";
import type { PrepareStage } from "./prepare.ts";
import type { AttemptRecorder } from "./recorder.ts";
import type { Sent, SendStage } from "./sending.ts";

/** Told of every attempt once it is recorded: the outcome log, the circuit breaker. */
export interface AttemptListener {
  attempted(target: DeliveryTarget, job: JobMessage, sent: Sent, outcome: JobOutcome): void;
}

/** What the pipeline may do to an endpoint on its own: disable it (410 Gone, sustained failure). */
export interface EndpointControl {
  disable(target: DeliveryTarget, reason: string): Promise<void>;
}

/**
 * One worker's delivery stages: prepare (endpoint, claim, flow-control checks) → send (bounded per
 * endpoint, signed) → outcome (a pure decision: delivered, retry when, or dead why) → record
 * (batched). `handle` resolves once every job in the message is durably settled — attempt or
 * outcome recorded, held for later, or found to be someone else's — and only then is the message
 * acked.
 */
export class DeliveryPipeline {
  constructor(
    private readonly prepare: PrepareStage,
    private readonly sender: SendStage,
    private readonly rules: OutcomeRules,
    private readonly recorder: AttemptRecorder,
    private readonly control: EndpointControl,
    private readonly listeners: AttemptListener[],
  ) {}

  /** `claimed`: the transport claimed the message's jobs as it took them (transport.ts `Received`). */
  async handle(message: DeliveryMessage, claimed = false): Promise<void> {
    const targets = await this.prepare.targets(message.jobs);
    // Each job's attempt is a child of its own event's request span, not of the message's; a job
    // whose event was not sampled runs outside any trace, or it would join the message's. A message
    // with no traced job needs neither.
    const traced = tracingEnabled() && message.jobs.some((job) => job.traceparent);
    await Promise.all(
      message.jobs.map((job) =>
        traced
          ? context.with(job.traceparent ? contextFrom(job.traceparent) : ROOT_CONTEXT, () => this.handleJob(job, targets.get(job.endpointId), claimed))
          : this.handleJob(job, targets.get(job.endpointId), claimed),
      ),
    );
  }

  private async handleJob(job: JobMessage, found: DeliveryTarget | undefined, claimed: boolean): Promise<void> {
    const prepared = await this.prepare.prepare(job, found, claimed);
    if (!prepared) return;
    const { target, verdict } = prepared;
    if (verdict?.kind === "hold") return this.hold(job, verdict.reason, verdict.delayMs);
    if (verdict?.kind === "end") {
      instruments().jobsEnded.add(1, { state: verdict.status, reason: verdict.reason });
      const outcome: JobOutcome = {
        jobId: job.jobId,
        status: verdict.status,
        endReason: verdict.reason,
        attemptNumber: job.attempt,
        nextAttemptAt: null,
        attemptedAt: new Date(),
      };
      return this.recorder.record({ attempt: null, outcome });
    }
    const sent = await this.sender.send(job, target);
    if ("kind" in sent) return this.hold(job, sent.reason, sent.delayMs);
    const decision = decideOutcome(job, target, sent, this.rules);
    const { outcome } = decision;
    const m = instruments();
    // A replay's lag runs from the replay: recovering week-old jobs is not a week of lag.
    if (outcome.status === "delivered") m.deliveryLag.record((Date.now() - (job.replayedAt ?? job.createdAt)) / 1000);
    if (outcome.endReason !== null) m.jobsEnded.add(1, { state: outcome.status, reason: outcome.endReason });
    m.deliveryAttempts.add(1, {
      outcome: outcome.status,
      error_class: sent.result.errorClass ?? "none",
      status_class: statusClass(sent.result.status),
    });
    await this.recorder.record({ attempt: attemptRow(job, target, sent), outcome });
    for (const listener of this.listeners) listener.attempted(target, job, sent, outcome);
    if (decision.disableEndpoint) await this.control.disable(target, decision.disableEndpoint);
  }

  private hold(job: JobMessage, reason: HoldReason, delayMs: number): Promise<void> {
    instruments().jobsDeferred.add(1, { reason });
    return this.recorder.defer(job.jobId, delayMs);
  }
}

/** The attempt as recorded: credentials (the URL's password, credential-like headers) are sent but never stored. */
function attemptRow(job: JobMessage, target: DeliveryTarget, { attemptedAt, headers, result }: Sent): AttemptRow {
  return {
    id: newId("attempt", attemptedAt.getTime()),
    appId: target.appId,
    jobId: job.jobId,
    eventId: job.eventId,
    endpointId: target.id,
    attemptNumber: job.attempt + 1,
    url: target.recordedUrl,
    requestHeaders: redactHeaders(headers),
    responseStatus: result.status,
    responseBody: result.responseBody,
    durationMs: result.durationMs,
    errorClass: result.errorClass,
    errorDetail: result.errorDetail,
    createdAt: attemptedAt,
  };
}

/** The response's class for metrics (2xx … 5xx), `none` when no response came (timeout, refused, blocked). */
export function statusClass(status: number | null | undefined): string {
  if (!status || status < 100 || status > 599) return "none";
  return `${Math.floor(status / 100)}xx`;
}
