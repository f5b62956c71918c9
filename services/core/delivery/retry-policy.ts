import { z } from "zod";

/**
 * Retry policies as data: an endpoint may carry one (`retryPolicy`), else the installation's
 * default (RETRY_POLICY, or RETRY_SCHEDULE with RETRY_JITTER). Three shapes, as webhook platforms
 * offer them:
 * - `schedule`: explicit delays, one per retry (Svix's 5s, 5m, 30m, 2h, …), each varied by ±jitter;
 * - `exponential`: base × factor^(n-1), capped, with full jitter (a uniform pick in [0, that]), so
 *   receivers that failed together do not get their retries back together;
 * - `constant`: the same delay every time, ±jitter.
 * Each may bound the job by attempts (`maxAttempts`, the first try included) and by age
 * (`maxAgeSeconds` from the event's creation: a retry that would start later is not made).
 * A schedule without maxAttempts allows one try per delay plus the first; with a larger maxAttempts
 * its last delay repeats. Exponential and constant need at least one of the two bounds.
 */

const MAX_DELAY_MS = 7 * 24 * 3_600_000;
const delayMs = z.number().int().min(0).max(MAX_DELAY_MS);
const jitter = z.number().min(0).max(1).describe("Fraction of each delay added or removed at random (0 to 1).");
const bounds = {
  maxAttempts: z.number().int().min(1).max(1000).optional().describe("Most attempts, the first included."),
  maxAgeSeconds: z
    .number()
    .int()
    .min(1)
    .max(30 * 86_400)
    .optional()
    .describe("No retry starts later than this many seconds after the event was created."),
};

const SchedulePolicy = z.strictObject({
  type: z.literal("schedule"),
  delaysMs: z.array(delayMs).min(1).max(100).describe("Delay before each retry, in milliseconds."),
  jitter: jitter.default(0.2),
  ...bounds,
});
const ExponentialPolicy = z.strictObject({
  type: z.literal("exponential"),
  baseMs: delayMs.min(1).describe("Ceiling of the first retry's delay."),
  factor: z.number().min(1).max(100).default(2).describe("Each retry's ceiling is the previous one's times this."),
  capMs: delayMs.min(1).describe("Highest ceiling; the delay is a uniform pick between 0 and the ceiling (full jitter)."),
  ...bounds,
});
const ConstantPolicy = z.strictObject({
  type: z.literal("constant"),
  delayMs,
  jitter: jitter.default(0),
  ...bounds,
});

export const RetryPolicySchema = z
  .discriminatedUnion("type", [SchedulePolicy, ExponentialPolicy, ConstantPolicy])
  .superRefine((policy, ctx) => {
    if (policy.type !== "schedule" && policy.maxAttempts === undefined && policy.maxAgeSeconds === undefined)
      ctx.addIssue({ code: "custom", message: "needs maxAttempts or maxAgeSeconds (or both)", path: ["maxAttempts"] });
    if (policy.type === "exponential" && policy.capMs < policy.baseMs)
      ctx.addIssue({ code: "custom", message: "must be at least baseMs", path: ["capMs"] });
  });
export type RetryPolicy = z.output<typeof RetryPolicySchema>;

/** How a Retry-After from the receiver (429, 503) is honoured: never earlier than the policy's delay, within these bounds. */
export interface RetryAfterBounds {
  minMs: number;
  /** 0 ignores Retry-After. */
  maxMs: number;
}

export type RetryDecision = { kind: "retry"; delayMs: number } | { kind: "give_up"; reason: "retries_exhausted" | "max_age" };

/**
 * What follows the `attemptsMade`-th failed attempt of a job whose event is `ageMs` old at that
 * moment. `retryAfterMs` is the receiver's Retry-After (null: none, or not a 429/503).
 */
export function decideRetry(
  policy: RetryPolicy,
  attemptsMade: number,
  ageMs: number,
  retryAfterMs: number | null,
  retryAfter: RetryAfterBounds,
  random: () => number = Math.random,
): RetryDecision {
  if (attemptsMade >= maxAttempts(policy)) return { kind: "give_up", reason: "retries_exhausted" };
  let delay = policyDelayMs(policy, attemptsMade, random);
  if (retryAfterMs !== null && retryAfter.maxMs > 0) {
    const asked = Math.min(Math.max(retryAfterMs, retryAfter.minMs), retryAfter.maxMs);
    delay = Math.max(delay, asked);
  }
  if (policy.maxAgeSeconds !== undefined && ageMs + delay > policy.maxAgeSeconds * 1000) return { kind: "give_up", reason: "max_age" };
  return { kind: "retry", delayMs: Math.round(delay) };
}

/** Attempts the policy allows in all (the first included); Infinity when only the age bounds it. */
export function maxAttempts(policy: RetryPolicy): number {
  if (policy.maxAttempts !== undefined) return policy.maxAttempts;
  return policy.type === "schedule" ? policy.delaysMs.length + 1 : Number.POSITIVE_INFINITY;
}

/** The delay before retry number `attemptsMade` (1: the first retry), before Retry-After and bounds. */
export function policyDelayMs(policy: RetryPolicy, attemptsMade: number, random: () => number = Math.random): number {
  switch (policy.type) {
    case "schedule": {
      const delays = policy.delaysMs;
      const base = delays[Math.min(attemptsMade, delays.length) - 1]!;
      return base * (1 + policy.jitter * (2 * random() - 1));
    }
    case "exponential": {
      // Computed in the log domain first: factor^n overflows long before the cap is reached.
      const exponent = attemptsMade - 1;
      const ceiling = exponent * Math.log(policy.factor) > Math.log(policy.capMs / policy.baseMs)
        ? policy.capMs
        : Math.min(policy.capMs, policy.baseMs * policy.factor ** exponent);
      return random() * ceiling;
    }
    case "constant":
      return policy.delayMs * (1 + policy.jitter * (2 * random() - 1));
  }
}

/** The installation default built from RETRY_SCHEDULE and RETRY_JITTER. */
export function schedulePolicy(delaysMs: number[], jitterFraction: number): RetryPolicy {
  return { type: "schedule", delaysMs, jitter: jitterFraction };
}
