/**
 * The circuit breaker's state machine, as pure functions of an endpoint_health row, what a worker
 * saw since it last wrote, and the time. Workers apply it under the row's lock (health/sql.ts), so
 * every worker's observations land on the same shared state one after another.
 *
 *   closed ──(N consecutive failures, or failure ratio ≥ R over ≥ M attempts in the window)──▶ open
 *   open ──(retry time passed; one worker claims the probe in Postgres)──▶ half_open
 *   half_open ──(probe delivered)──▶ closed      half_open ──(probe failed)──▶ open (longer)
 *   half_open ──(probe's lease passed without an answer: its worker died)──▶ claimable again
 *
 * While open, jobs are held without an attempt. The open interval is as long as the endpoint has
 * been failing, between CIRCUIT_OPEN_MS and CIRCUIT_OPEN_MAX_MS, so each failed probe about doubles
 * the wait without a counter of its own.
 */
export type CircuitState = "closed" | "open" | "half_open";

export interface CircuitPolicy {
  /** Consecutive failed attempts that open the circuit; 0: this rule is off. */
  failureThreshold: number;
  /** Failed share of the window's attempts that opens it (with at least minAttempts); 0: this rule is off. */
  failureRatio: number;
  windowMs: number;
  minAttempts: number;
  /** Shortest and longest an open circuit waits before its probe. */
  openMs: number;
  openMaxMs: number;
}

/** One endpoint_health row. */
export interface Health {
  endpointId: string;
  circuit: CircuitState;
  circuitChangedAt: Date;
  /** Open: when a probe may go. Half-open: when the probe's claim lapses. Closed: null. */
  circuitRetryAt: Date | null;
  consecutiveFailures: number;
  failingSince: Date | null;
  windowStartedAt: Date;
  windowAttempts: number;
  windowFailures: number;
  timesOpened: number;
}

/** What one worker saw of an endpoint since its last write, in order, folded. */
export interface Observed {
  attempts: number;
  failures: number;
  /** Failures after the last success; all of them when none succeeded. */
  trailingFailures: number;
  succeeded: boolean;
  /** When the first trailing failure happened. */
  trailingSince: Date | null;
  /** The outcome of this worker's probe, if it made one. */
  probe: "delivered" | "failed" | null;
}

export const nothingObserved = (): Observed => ({
  attempts: 0,
  failures: 0,
  trailingFailures: 0,
  succeeded: false,
  trailingSince: null,
  probe: null,
});

/** Folds one attempt into what was observed (mutates and returns `o`). */
export function observe(o: Observed, ok: boolean, at: Date, probe = false): Observed {
  o.attempts++;
  if (ok) {
    o.succeeded = true;
    o.trailingFailures = 0;
    o.trailingSince = null;
  } else {
    o.failures++;
    if (o.trailingFailures++ === 0) o.trailingSince = at;
  }
  if (probe) o.probe = ok ? "delivered" : "failed";
  return o;
}

/** How long a circuit opened now stays open: as long as the endpoint has been failing, within bounds. */
export function openIntervalMs(h: Pick<Health, "failingSince">, policy: CircuitPolicy, now: Date): number {
  const failingFor = h.failingSince ? now.getTime() - h.failingSince.getTime() : 0;
  return Math.min(policy.openMaxMs, Math.max(policy.openMs, failingFor));
}

/**
 * The row after `o` is applied at `now`. Only the probe moves a circuit out of open or half-open:
 * other attempts then were in flight before it opened and only update the failure run, since a
 * straggler's success says less about the receiver than the probe made for the purpose.
 */
export function applyObserved(h: Health, o: Observed, policy: CircuitPolicy, now: Date): Health {
  if (h.circuit === "half_open" && o.probe === "delivered") return closed(h, now);
  const next = { ...h };
  next.consecutiveFailures = o.succeeded ? o.trailingFailures : h.consecutiveFailures + o.failures;
  if (o.trailingFailures > 0) next.failingSince = o.succeeded ? o.trailingSince : (h.failingSince ?? o.trailingSince);
  else if (o.succeeded) next.failingSince = null;
  if (h.circuit === "half_open" && o.probe === "failed") return { ...opened(next, policy, now), timesOpened: h.timesOpened };
  if (h.circuit !== "closed") return next;
  if (now.getTime() - h.windowStartedAt.getTime() >= policy.windowMs) {
    next.windowStartedAt = now;
    next.windowAttempts = o.attempts;
    next.windowFailures = o.failures;
  } else {
    next.windowAttempts += o.attempts;
    next.windowFailures += o.failures;
  }
  return shouldOpen(next, policy) ? opened(next, policy, now) : next;
}

function shouldOpen(h: Health, policy: CircuitPolicy): boolean {
  if (policy.failureThreshold > 0 && h.consecutiveFailures >= policy.failureThreshold) return true;
  return (
    policy.failureRatio > 0 &&
    h.windowAttempts > 0 &&
    h.windowAttempts >= policy.minAttempts &&
    h.windowFailures >= policy.failureRatio * h.windowAttempts
  );
}

/** Opened (or reopened after a failed probe): the window starts over, for when it closes again. */
function opened(h: Health, policy: CircuitPolicy, now: Date): Health {
  return {
    ...h,
    circuit: "open",
    circuitChangedAt: now,
    circuitRetryAt: new Date(now.getTime() + openIntervalMs(h, policy, now)),
    timesOpened: h.timesOpened + 1,
    windowStartedAt: now,
    windowAttempts: 0,
    windowFailures: 0,
  };
}

function closed(h: Health, now: Date): Health {
  return {
    ...h,
    circuit: "closed",
    circuitChangedAt: now,
    circuitRetryAt: null,
    consecutiveFailures: 0,
    failingSince: null,
    windowStartedAt: now,
    windowAttempts: 0,
    windowFailures: 0,
  };
}

/**
 * Whether the endpoint is off the healthy path: its circuit is not closed, or it has failures in
 * its run or current window. Only then do workers write its successes (they count towards the
 * ratio and end the run); a healthy endpoint's successes cost no write at all.
 */
export function isTroubled(h: Health, policy: CircuitPolicy, now: Date): boolean {
  if (h.circuit !== "closed" || h.consecutiveFailures > 0) return true;
  return h.windowFailures > 0 && now.getTime() - h.windowStartedAt.getTime() < policy.windowMs;
}

/** What a delivery to the endpoint may do now, by the circuit alone. */
export type Passage = { kind: "pass" } | { kind: "wait"; untilMs: number } | { kind: "probe" };

/** Closed: pass. Open or half-open before its retry time: wait. After it: try to claim the probe. */
export function passage(h: Pick<Health, "circuit" | "circuitRetryAt">, now: number): Passage {
  if (h.circuit === "closed") return { kind: "pass" };
  const retryAt = h.circuitRetryAt?.getTime() ?? now;
  return now < retryAt ? { kind: "wait", untilMs: retryAt } : { kind: "probe" };
}
