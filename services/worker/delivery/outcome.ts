import type { ErrorClass } from "@evently/core/attempts/sql.ts";
import { decideRetry, type RetryAfterBounds, type RetryPolicy } from "@evently/core/delivery/retry-policy.ts";
import type { JobOutcome } from "@evently/core/jobs/sql.ts";
import type { JobMessage } from "@evently/core/queue/messages.ts";
import type { DeliveryTarget } from "../endpoint-cache.ts";
import type { Sent } from "./sending.ts";

export interface OutcomeRules {
  /** The installation's policy, for endpoints that set none. */
  defaultPolicy: RetryPolicy;
  retryAfter: RetryAfterBounds;
  /** 4xx statuses that end a job at once (RETRY_FINAL_STATUSES). */
  finalStatuses: ReadonlySet<number>;
}

/** What an attempt leads to: the job's outcome, and whether the endpoint is to be disabled. */
export interface Decision {
  outcome: JobOutcome;
  /** Set when the receiver said the endpoint is gone for good (410): the reason to disable it with. */
  disableEndpoint: string | null;
}

/**
 * Failures no retry can change, so the job is dead at once: the SSRF guard's refusal (the address
 * is as non-public on the next try) and a URL that does not parse. A `dns` failure is not one: the
 * name may resolve, or resolve elsewhere, later.
 */
const FINAL_ERRORS: ReadonlySet<ErrorClass> = new Set<ErrorClass>(["blocked_address", "invalid_url"]);

/**
 * The outcome stage, as a pure function of the attempt: delivered on a 2xx; dead at once for a
 * final error, `410 Gone` (and the endpoint disabled) or a status in RETRY_FINAL_STATUSES;
 * otherwise the endpoint's retry policy decides between a retry (when) and dead (why), honouring a
 * 429/503's Retry-After within bounds; a retry that would fall after the job's TTL ends it expired.
 * Timeouts and connection errors are retried like 5xx. After a replay the policy counts attempts
 * and age from the replay (JobMessage.attemptBase, replayedAt).
 */
export function decideOutcome(job: JobMessage, target: DeliveryTarget, sent: Sent, rules: OutcomeRules): Decision {
  const { result, attemptedAt } = sent;
  const attemptNumber = job.attempt + 1;
  const base = { jobId: job.jobId, attemptNumber, attemptedAt, nextAttemptAt: null };
  const dead = (reason: string, disableEndpoint: string | null = null): Decision => ({
    outcome: { ...base, status: "dead", endReason: reason },
    disableEndpoint,
  });
  if (result.errorClass === null) return { outcome: { ...base, status: "delivered", endReason: null }, disableEndpoint: null };
  if (FINAL_ERRORS.has(result.errorClass)) return dead(result.errorClass);
  if (result.status === 410) return dead("gone", "the receiver answered 410 Gone");
  if (result.status !== null && rules.finalStatuses.has(result.status)) return dead("final_status");
  const retryAfterMs = result.status === 429 || result.status === 503 ? parseRetryAfter(result.retryAfter, attemptedAt) : null;
  const policy = target.retryPolicy ?? rules.defaultPolicy;
  // A replayed job runs its policy afresh: only this run's attempts count, its age from the replay.
  const attemptsThisRun = attemptNumber - (job.attemptBase ?? 0);
  const ageMs = attemptedAt.getTime() - (job.replayedAt ?? job.createdAt);
  const decision = decideRetry(policy, attemptsThisRun, ageMs, retryAfterMs, rules.retryAfter);
  if (decision.kind === "give_up") return dead(decision.reason);
  // A retry due after the job's TTL would never be sent: it ends expired now, not when next taken.
  if (job.expiresAt !== null && attemptedAt.getTime() + decision.delayMs >= job.expiresAt)
    return { outcome: { ...base, status: "expired", endReason: "ttl" }, disableEndpoint: null };
  return {
    outcome: { ...base, status: "scheduled", endReason: null, nextAttemptAt: new Date(attemptedAt.getTime() + decision.delayMs) },
    disableEndpoint: null,
  };
}

/** Parses `Retry-After` (delta seconds or an HTTP date) into milliseconds from `now`. */
export function parseRetryAfter(value: string | null, now: Date): number | null {
  if (!value) return null;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? null : Math.max(0, at - now.getTime());
}
