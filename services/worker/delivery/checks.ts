import type { JobMessage } from "@evently/core/queue/messages.ts";
import type { DeliveryTarget } from "../endpoint-cache.ts";

/**
 * The prepare stage's flow control as data. Each check looks at a claimed job and its endpoint and
 * either lets it through (null) or says what happens instead:
 * - `hold`: not now; the job goes back to the outbox for `delayMs` without spending an attempt
 *   (paused endpoint, open circuit, rate limit, an earlier job of a FIFO endpoint, no free slot);
 * - `end`: never; the job ends with this state and reason, without an attempt (TTL passed,
 *   endpoint disabled).
 * Checks run in order, and the first verdict wins, so the cheap local ones come first.
 */
export type HoldReason = "paused" | "circuit_open" | "rate_limited" | "ordering" | "busy";
export type Hold = { kind: "hold"; reason: HoldReason; delayMs: number };
export type Verdict = Hold | { kind: "end"; status: "expired" | "cancelled"; reason: string };

export interface DeliveryCheck {
  readonly name: string;
  check(job: JobMessage, target: DeliveryTarget, now: number): Verdict | null | Promise<Verdict | null>;
}

/** A job past its TTL is never sent late: it ends `expired`. */
export const ttlCheck: DeliveryCheck = {
  name: "ttl",
  check: (job, _target, now) => (job.expiresAt !== null && now >= job.expiresAt ? { kind: "end", status: "expired", reason: "ttl" } : null),
};

/**
 * A disabled endpoint's jobs end `cancelled` (reason `endpoint_disabled`) when a worker reaches
 * them: disabling stops new jobs, and what was pending is not kept waiting for an enable that may
 * never come; recover brings it back. A paused endpoint's jobs are held, and brought forward by
 * resume (core/endpoints/sql.ts), so the hold can be long.
 */
export function endpointStateCheck(pausedHoldMs: number): DeliveryCheck {
  return {
    name: "endpoint_state",
    check: (_job, target) => {
      if (!target.enabled) return { kind: "end", status: "cancelled", reason: "endpoint_disabled" };
      if (target.paused) return { kind: "hold", reason: "paused", delayMs: pausedHoldMs };
      return null;
    },
  };
}
