import type { ErrorClass } from "@evently/core/attempts/sql.ts";

/**
 * Retry policy as data: `scheduleMs[n]` is the delay before retry n+1, each varied by ±jitter so
 * a burst of failures does not come back as a burst. After the last entry the job fails.
 * A `Retry-After` from the receiver (429/503) can push a retry later, never earlier, and at most
 * to `maxRetryAfterMs`.
 */
export interface RetryPolicy {
  scheduleMs: number[];
  jitter: number;
  maxRetryAfterMs: number;
}

export type NextStep = { kind: "retry"; at: Date } | { kind: "fail" };

export function nextStep(
  policy: RetryPolicy,
  attemptsMade: number,
  now: Date,
  retryAfterMs: number | null = null,
  random: () => number = Math.random,
): NextStep {
  const base = policy.scheduleMs[attemptsMade - 1];
  if (base === undefined) return { kind: "fail" };
  const jittered = base * (1 + policy.jitter * (2 * random() - 1));
  const delay = retryAfterMs === null ? jittered : Math.max(jittered, Math.min(retryAfterMs, policy.maxRetryAfterMs));
  return { kind: "retry", at: new Date(now.getTime() + Math.round(delay)) };
}

/**
 * Outcomes no retry can change, so the job fails at once: the SSRF guard's refusal (the address
 * is as non-public on the next try), a URL that does not parse, a disabled endpoint. A `dns`
 * failure is not one: the name may resolve, or resolve elsewhere, later.
 */
const FINAL: ReadonlySet<ErrorClass> = new Set<ErrorClass>(["blocked_address", "invalid_url", "endpoint_disabled"]);

export function isFinal(errorClass: ErrorClass | null): boolean {
  return errorClass !== null && FINAL.has(errorClass);
}

/** Parses `Retry-After` (delta seconds or an HTTP date) into milliseconds from `now`. */
export function parseRetryAfter(value: string | null, now: Date): number | null {
  if (!value) return null;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? null : Math.max(0, at - now.getTime());
}
