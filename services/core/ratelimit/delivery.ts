import type { Sql } from "../db/client.ts";
import { TokenBucketLimiter, type RateLimiterOptions, type TakeResult } from "./limiter.ts";

export interface DeliveryRateLimiterOptions extends RateLimiterOptions {
  /** Longest wait a refusal asks for (default 1 h); a job still short of a token then waits again. */
  maxWaitMs?: number;
}

// Endpoints' wait lines are pruned once this many are remembered (only lines already over are dropped).
const PRUNE_AT = 10_000;
// A job told to come back when its TTL has run out arrives this much after, so it is ended, not refused again.
const EXPIRY_MARGIN_MS = 20;

/**
 * Per-endpoint delivery rate limit, shared by every worker process: the ingest limiter's token
 * bucket (limiter.ts), keyed by endpoint in `delivery_rate_buckets`. A worker claims chunks of at
 * most a twentieth of the limit (`chunkShare` 0.05, at least 1) and sends from its chunk without a
 * round trip; the bucket holds a tenth of a second's worth, so an idle endpoint gets a burst of at
 * most that. Two workers sending flat out together stay within 10% of the limit (see
 * test/core/delivery-rate-limit.test.ts).
 *
 * What a refusal costs differs from ingest: a refused delivery is handed back to the outbox (a
 * write) and offered again later (a claim), so every refusal is database work. The wait a refusal
 * asks for is therefore not just "until the bucket has refilled": this process keeps a line per
 * endpoint of the jobs it has refused, one slot every 1/limit seconds from the moment the bucket is
 * next ready, and each refused job is told to come back at the next free slot. A backlog of N jobs
 * refused at once comes back spread over N/limit seconds instead of all together every time the
 * bucket refills. The line is this process's own: with W workers refusing, offers come back at up to
 * W times the limit, so a job is refused about W times before it goes, not once per refill.
 */
export class DeliveryRateLimiter {
  private readonly buckets: TokenBucketLimiter;
  /** Per endpoint: when (performance.now() ms) the next refused job may be offered again. */
  private readonly lines = new Map<string, number>();
  private readonly maxWaitMs: number;

  constructor(sql: Sql, options: DeliveryRateLimiterOptions = {}) {
    this.buckets = new TokenBucketLimiter(sql, "delivery", { chunkShare: 0.05, burstShare: 0.1, ...options });
    this.maxWaitMs = options.maxWaitMs ?? 3_600_000;
  }

  /**
   * Takes one delivery of the endpoint's budget: null when it may be sent now, otherwise how many
   * milliseconds it should wait before it is offered again. Synchronous while this process holds
   * tokens of the endpoint (the common case); a promise only when it has to claim more.
   * `expiresInMs`: the job's TTL runs out then; a job whose turn comes later is told to come back
   * just after it (to be ended expired) and takes no place in the line.
   */
  take(endpointId: string, limitPerSecond: number, expiresInMs: number | null = null): number | null | Promise<number | null> {
    const taken = this.buckets.take(endpointId, limitPerSecond, 1);
    return taken instanceof Promise
      ? taken.then((t) => this.waitFor(endpointId, limitPerSecond, expiresInMs, t))
      : this.waitFor(endpointId, limitPerSecond, expiresInMs, taken);
  }

  /** Deletes idle endpoints' bucket rows (see TokenBucketLimiter.cleanup). */
  cleanup(): Promise<number> {
    return this.buckets.cleanup();
  }

  stop(): Promise<void> {
    return this.buckets.stop();
  }

  private waitFor(endpointId: string, limit: number, expiresInMs: number | null, taken: TakeResult): number | null {
    if (taken.ok) return null;
    const now = performance.now();
    const spacing = 1000 / limit;
    const slot = Math.max(now + taken.retryAfterMs, this.lines.get(endpointId) ?? 0);
    if (expiresInMs !== null && slot - now >= expiresInMs) return Math.min(this.maxWaitMs, Math.ceil(expiresInMs + EXPIRY_MARGIN_MS));
    if (this.lines.size >= PRUNE_AT) this.prune(now);
    this.lines.set(endpointId, slot + spacing);
    // Jitter within the slot: jobs refused by different workers for the same moment do not all
    // come back in the same dispatcher sweep.
    return Math.min(this.maxWaitMs, Math.ceil(slot - now + Math.random() * spacing));
  }

  private prune(now: number): void {
    for (const [endpointId, next] of this.lines) if (next <= now) this.lines.delete(endpointId);
  }
}
