import type { DeliveryRateLimiter } from "@evently/core/ratelimit/delivery.ts";
import type { DeliveryCheck, Verdict } from "./checks.ts";

/**
 * An endpoint's `rateLimitPerSecond`, across all workers: a job over the limit is held (handed back
 * to the outbox, no attempt spent, no consumer kept waiting) until about when a token will be there
 * for it; see core/ratelimit/delivery.ts for how that wait is worked out. Endpoints without a limit
 * cost nothing here, and with one most deliveries take from this process's chunk without a round
 * trip. It runs last among the checks: a token taken for a job that another check then holds would
 * be lost.
 */
export function rateLimitCheck(limiter: DeliveryRateLimiter): DeliveryCheck {
  return {
    name: "rate_limit",
    check: (job, target, now) => {
      const limit = target.rateLimitPerSecond;
      if (limit === null) return null;
      const wait = limiter.take(target.id, limit, job.expiresAt === null ? null : job.expiresAt - now);
      return wait instanceof Promise ? wait.then(verdict) : verdict(wait);
    },
  };
}

function verdict(waitMs: number | null): Verdict | null {
  return waitMs === null ? null : { kind: "hold", reason: "rate_limited", delayMs: waitMs };
}
