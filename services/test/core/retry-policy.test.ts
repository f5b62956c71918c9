import { describe, expect, test } from "bun:test";
import type { ErrorClass } from "../../core/attempts/sql.ts";
import { decideRetry, maxAttempts, policyDelayMs, RetryPolicySchema, type RetryPolicy } from "../../core/delivery/retry-policy.ts";
import type { JobMessage } from "../../core/queue/messages.ts";
import type { DeliveryTarget } from "../../worker/endpoint-cache.ts";
import { decideOutcome, type OutcomeRules } from "../../worker/delivery/outcome.ts";
import type { Sent } from "../../worker/delivery/sending.ts";

/**
 * The retry policy's arithmetic (core/delivery/retry-policy.ts) and the outcome stage's decision
 * (worker/delivery/outcome.ts), as pure functions: a fixed random() makes every delay exact.
 */

const parse = (policy: unknown): RetryPolicy => RetryPolicySchema.parse(policy);
const noRetryAfter = { minMs: 1000, maxMs: 0 };
const bounds = { minMs: 1000, maxMs: 60_000 };
const fixed = (r: number) => () => r;

/** A deterministic stream of numbers in [0, 1): many samples, the same each run. */
function samples(n: number): number[] {
  let x = 42;
  return Array.from({ length: n }, () => {
    x = (x * 1_103_515_245 + 12_345) % 2 ** 31;
    return x / 2 ** 31;
  });
}

describe("schedule", () => {
  const schedule = parse({ type: "schedule", delaysMs: [1000, 10_000, 60_000], jitter: 0.25 });

  test("each delay ± jitter: random() = 0 is the low end, 1 the high end, 0.5 the delay itself", () => {
    expect(policyDelayMs(schedule, 1, fixed(0))).toBe(750);
    expect(policyDelayMs(schedule, 1, fixed(1))).toBe(1250);
    expect(policyDelayMs(schedule, 2, fixed(0.5))).toBe(10_000);
    expect(policyDelayMs(schedule, 3, fixed(0))).toBe(45_000);
  });

  test("many random samples stay within the jitter bounds of their delay", () => {
    for (const r of samples(2000)) {
      const delay = policyDelayMs(schedule, 2, () => r);
      expect(delay).toBeGreaterThanOrEqual(7500);
      expect(delay).toBeLessThanOrEqual(12_500);
    }
  });

  test("one try per delay plus the first, then retries_exhausted", () => {
    expect(maxAttempts(schedule)).toBe(4);
    expect(decideRetry(schedule, 3, 0, null, noRetryAfter, fixed(0.5))).toEqual({ kind: "retry", delayMs: 60_000 });
    expect(decideRetry(schedule, 4, 0, null, noRetryAfter, fixed(0.5))).toEqual({ kind: "give_up", reason: "retries_exhausted" });
  });

  test("a maxAttempts beyond the delays repeats the last delay", () => {
    const longer = parse({ type: "schedule", delaysMs: [1000, 5000], jitter: 0, maxAttempts: 6 });
    expect(maxAttempts(longer)).toBe(6);
    expect([1, 2, 3, 4, 5].map((n) => decideRetry(longer, n, 0, null, noRetryAfter))).toEqual([
      { kind: "retry", delayMs: 1000 },
      { kind: "retry", delayMs: 5000 },
      { kind: "retry", delayMs: 5000 },
      { kind: "retry", delayMs: 5000 },
      { kind: "retry", delayMs: 5000 },
    ]);
    expect(decideRetry(longer, 6, 0, null, noRetryAfter)).toEqual({ kind: "give_up", reason: "retries_exhausted" });
  });

  test("a maxAttempts below the delays cuts the schedule short", () => {
    const shorter = parse({ type: "schedule", delaysMs: [1000, 5000, 9000], jitter: 0, maxAttempts: 2 });
    expect(decideRetry(shorter, 1, 0, null, noRetryAfter)).toEqual({ kind: "retry", delayMs: 1000 });
    expect(decideRetry(shorter, 2, 0, null, noRetryAfter)).toEqual({ kind: "give_up", reason: "retries_exhausted" });
  });
});

describe("exponential (full jitter)", () => {
  const exponential = parse({ type: "exponential", baseMs: 1000, factor: 2, capMs: 60_000, maxAttempts: 1000 });

  test("the ceiling doubles from baseMs, and the delay is a uniform pick below it", () => {
    expect([1, 2, 3, 4, 5, 6].map((n) => policyDelayMs(exponential, n, fixed(1)))).toEqual([1000, 2000, 4000, 8000, 16_000, 32_000]);
    expect(policyDelayMs(exponential, 3, fixed(0))).toBe(0);
    expect(policyDelayMs(exponential, 3, fixed(0.5))).toBe(2000);
  });

  test("the ceiling stops at capMs, with no overflow however many attempts", () => {
    expect(policyDelayMs(exponential, 7, fixed(1))).toBe(60_000);
    for (const n of [8, 50, 200, 1000]) expect([n, policyDelayMs(exponential, n, fixed(1))]).toEqual([n, 60_000]);
    const steep = parse({ type: "exponential", baseMs: 1, factor: 100, capMs: 604_800_000, maxAttempts: 1000 });
    const delay = policyDelayMs(steep, 1000, fixed(1));
    expect(Number.isFinite(delay)).toBe(true);
    expect(delay).toBe(604_800_000);
    expect(decideRetry(steep, 999, 0, null, noRetryAfter, fixed(0.5))).toEqual({ kind: "retry", delayMs: 302_400_000 });
  });

  test("many random samples stay within [0, ceiling]", () => {
    for (const r of samples(2000)) {
      const delay = policyDelayMs(exponential, 4, () => r);
      expect(delay).toBeGreaterThanOrEqual(0);
      expect(delay).toBeLessThanOrEqual(8000);
    }
  });

  test("bounded by maxAttempts, or by age alone (Infinity attempts)", () => {
    const byAttempts = parse({ type: "exponential", baseMs: 1000, capMs: 1000, maxAttempts: 3 });
    expect(decideRetry(byAttempts, 2, 0, null, noRetryAfter, fixed(1)).kind).toBe("retry");
    expect(decideRetry(byAttempts, 3, 0, null, noRetryAfter, fixed(1))).toEqual({ kind: "give_up", reason: "retries_exhausted" });
    const byAge = parse({ type: "exponential", baseMs: 1000, capMs: 1000, maxAgeSeconds: 60 });
    expect(maxAttempts(byAge)).toBe(Number.POSITIVE_INFINITY);
    expect(decideRetry(byAge, 500, 10_000, null, noRetryAfter, fixed(1))).toEqual({ kind: "retry", delayMs: 1000 });
  });

  test("exponential and constant need a bound; capMs must reach baseMs", () => {
    expect(RetryPolicySchema.safeParse({ type: "exponential", baseMs: 1000, capMs: 5000 }).success).toBe(false);
    expect(RetryPolicySchema.safeParse({ type: "constant", delayMs: 1000 }).success).toBe(false);
    expect(RetryPolicySchema.safeParse({ type: "exponential", baseMs: 5000, capMs: 1000, maxAttempts: 3 }).success).toBe(false);
  });
});

describe("constant", () => {
  test("the same delay every time, ± jitter", () => {
    const constant = parse({ type: "constant", delayMs: 30_000, maxAttempts: 5 });
    expect([1, 2, 4].map((n) => policyDelayMs(constant, n, fixed(0.9)))).toEqual([30_000, 30_000, 30_000]);
    const jittered = parse({ type: "constant", delayMs: 10_000, jitter: 0.1, maxAttempts: 5 });
    expect(policyDelayMs(jittered, 1, fixed(0))).toBe(9000);
    expect(policyDelayMs(jittered, 1, fixed(1))).toBe(11_000);
    for (const r of samples(1000)) {
      const delay = policyDelayMs(jittered, 3, () => r);
      expect(delay).toBeGreaterThanOrEqual(9000);
      expect(delay).toBeLessThanOrEqual(11_000);
    }
    expect(decideRetry(constant, 5, 0, null, noRetryAfter)).toEqual({ kind: "give_up", reason: "retries_exhausted" });
  });
});

describe("maxAgeSeconds", () => {
  const aged = parse({ type: "constant", delayMs: 10_000, maxAgeSeconds: 60 });

  test("a retry that would start after the age bound is not made: max_age", () => {
    expect(decideRetry(aged, 1, 49_000, null, noRetryAfter)).toEqual({ kind: "retry", delayMs: 10_000 });
    expect(decideRetry(aged, 1, 50_000, null, noRetryAfter)).toEqual({ kind: "retry", delayMs: 10_000 });
    expect(decideRetry(aged, 1, 50_001, null, noRetryAfter)).toEqual({ kind: "give_up", reason: "max_age" });
  });

  test("attempts run out before age: retries_exhausted wins", () => {
    const both = parse({ type: "constant", delayMs: 1000, maxAttempts: 2, maxAgeSeconds: 1 });
    expect(decideRetry(both, 2, 999_999, null, noRetryAfter)).toEqual({ kind: "give_up", reason: "retries_exhausted" });
  });

  test("a Retry-After that pushes past the age bound gives up too", () => {
    expect(decideRetry(aged, 1, 30_000, 40_000, bounds)).toEqual({ kind: "give_up", reason: "max_age" });
  });
});

describe("Retry-After", () => {
  const policy = parse({ type: "constant", delayMs: 5000, maxAttempts: 10 });

  test("never earlier than the policy's delay", () => {
    expect(decideRetry(policy, 1, 0, 2000, bounds)).toEqual({ kind: "retry", delayMs: 5000 });
    expect(decideRetry(policy, 1, 0, 0, { minMs: 0, maxMs: 60_000 })).toEqual({ kind: "retry", delayMs: 5000 });
  });

  test("raised to RETRY_AFTER_MIN_MS, cut to RETRY_AFTER_MAX_MS", () => {
    const quick = parse({ type: "constant", delayMs: 10, maxAttempts: 10 });
    expect(decideRetry(quick, 1, 0, 0, bounds)).toEqual({ kind: "retry", delayMs: 1000 });
    expect(decideRetry(quick, 1, 0, 20_000, bounds)).toEqual({ kind: "retry", delayMs: 20_000 });
    expect(decideRetry(quick, 1, 0, 10_000_000, bounds)).toEqual({ kind: "retry", delayMs: 60_000 });
  });

  test("RETRY_AFTER_MAX_MS = 0 ignores it", () => {
    expect(decideRetry(policy, 1, 0, 50_000, { minMs: 1000, maxMs: 0 })).toEqual({ kind: "retry", delayMs: 5000 });
  });
});

describe("decideOutcome", () => {
  const defaultPolicy = parse({ type: "schedule", delaysMs: [1000, 2000], jitter: 0 });
  const rules: OutcomeRules = { defaultPolicy, retryAfter: bounds, finalStatuses: new Set([400, 401]) };
  const at = new Date("2026-06-01T12:00:00Z");
  const job = (over: Partial<JobMessage> = {}): JobMessage => ({
    jobId: "job_1", eventId: "evt_1", endpointId: "ep_1", attempt: 0, createdAt: at.getTime() - 1000, expiresAt: null, body: "{}",
    ...over,
  });
  const target = (retryPolicy: RetryPolicy | null = null) => ({ id: "ep_1", appId: "app_1", retryPolicy }) as DeliveryTarget;
  const sent = (status: number | null, errorClass: ErrorClass | null, retryAfter: string | null = null): Sent => ({
    attemptedAt: at,
    headers: {},
    result: { status, responseBody: null, retryAfter, durationMs: 5, errorClass, errorDetail: null },
  });
  const decide = (s: Sent, j = job(), t = target()) => decideOutcome(j, t, s, rules);

  test("a 2xx is delivered, with the attempt number after the job's count", () => {
    expect(decide(sent(204, null), job({ attempt: 2 }))).toEqual({
      outcome: { jobId: "job_1", attemptNumber: 3, attemptedAt: at, nextAttemptAt: null, status: "delivered", endReason: null },
      disableEndpoint: null,
    });
  });

  test("410 Gone: dead `gone`, and the endpoint is to be disabled", () => {
    const d = decide(sent(410, "http_status"));
    expect(d.outcome).toMatchObject({ status: "dead", endReason: "gone" });
    expect(d.disableEndpoint).toContain("410");
  });

  test("a status in RETRY_FINAL_STATUSES is dead `final_status`; other 4xx are retried", () => {
    expect(decide(sent(401, "http_status")).outcome).toMatchObject({ status: "dead", endReason: "final_status" });
    expect(decide(sent(404, "http_status")).outcome).toMatchObject({ status: "scheduled", endReason: null });
    expect(decide(sent(401, "http_status")).disableEndpoint).toBeNull();
  });

  test("blocked_address and invalid_url are dead at once: no retry can change them", () => {
    expect(decide(sent(null, "blocked_address")).outcome).toMatchObject({ status: "dead", endReason: "blocked_address" });
    expect(decide(sent(null, "invalid_url")).outcome).toMatchObject({ status: "dead", endReason: "invalid_url" });
  });

  test("timeouts, connection errors, DNS and 5xx are retried per the policy, then dead retries_exhausted", () => {
    for (const [status, errorClass] of [[null, "timeout"], [null, "connection_refused"], [null, "dns"], [null, "network"], [503, "http_status"]] as const) {
      const d = decide(sent(status, errorClass));
      expect([errorClass, d.outcome.status, d.outcome.nextAttemptAt]).toEqual([errorClass, "scheduled", new Date(at.getTime() + 1000)]);
    }
    expect(decide(sent(500, "http_status"), job({ attempt: 1 })).outcome.nextAttemptAt).toEqual(new Date(at.getTime() + 2000));
    expect(decide(sent(500, "http_status"), job({ attempt: 2 })).outcome).toMatchObject({ status: "dead", endReason: "retries_exhausted" });
  });

  test("the endpoint's own policy overrides the default", () => {
    const own = parse({ type: "constant", delayMs: 7000, maxAttempts: 5 });
    expect(decide(sent(500, "http_status"), job({ attempt: 2 }), target(own)).outcome).toMatchObject({
      status: "scheduled",
      nextAttemptAt: new Date(at.getTime() + 7000),
    });
    const strict = parse({ type: "constant", delayMs: 7000, maxAttempts: 1 });
    expect(decide(sent(500, "http_status"), job(), target(strict)).outcome).toMatchObject({ status: "dead", endReason: "retries_exhausted" });
  });

  test("a 429/503's Retry-After pushes the retry, within bounds; other statuses' is ignored", () => {
    expect(decide(sent(429, "http_status", "30")).outcome.nextAttemptAt).toEqual(new Date(at.getTime() + 30_000));
    expect(decide(sent(503, "http_status", "99999")).outcome.nextAttemptAt).toEqual(new Date(at.getTime() + 60_000));
    expect(decide(sent(500, "http_status", "30")).outcome.nextAttemptAt).toEqual(new Date(at.getTime() + 1000));
  });

  test("a retry due after the job's TTL ends it expired now", () => {
    const d = decide(sent(500, "http_status"), job({ expiresAt: at.getTime() + 500 }));
    expect(d.outcome).toMatchObject({ status: "expired", endReason: "ttl", nextAttemptAt: null });
  });

  test("a replayed job runs its policy afresh: attempts and age count from the replay", () => {
    // Three attempts before the replay: without attemptBase the default policy would be exhausted.
    const replayed = job({ attempt: 3, attemptBase: 3, replayedAt: at.getTime() - 10, createdAt: at.getTime() - 86_400_000 });
    expect(decide(sent(500, "http_status"), replayed).outcome).toMatchObject({ status: "scheduled", attemptNumber: 4 });
    expect(decide(sent(500, "http_status"), { ...replayed, attempt: 5 }).outcome).toMatchObject({ status: "dead", endReason: "retries_exhausted" });
    const aged = parse({ type: "constant", delayMs: 1000, maxAgeSeconds: 60 });
    expect(decide(sent(500, "http_status"), replayed, target(aged)).outcome.status).toBe("scheduled");
    expect(decide(sent(500, "http_status"), { ...replayed, replayedAt: undefined }, target(aged)).outcome).toMatchObject({ endReason: "max_age" });
  });
});
