import { withDeadline } from "@evently/core/db/errors.ts";

/** Reachability of each dependency, by name; the runtime supplies the real checks. */
export type ReadinessCheck = () => Promise<Record<string, boolean>>;

export interface Readiness {
  ready: boolean;
  checks: Record<string, boolean>;
}

/**
 * Runs the readiness checks with a deadline: a probe that hangs (a half-open TCP connection) must
 * answer "not ready" in time for the orchestrator's probe timeout, not hang with it.
 */
export async function checkReadiness(check: ReadinessCheck, timeoutMs: number): Promise<Readiness> {
  const checks = await withDeadline(check(), timeoutMs, "readiness").catch(() => null);
  if (!checks) return { ready: false, checks: {} };
  return { ready: Object.values(checks).every(Boolean), checks };
}
