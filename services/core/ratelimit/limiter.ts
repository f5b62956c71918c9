import type { Sql } from "../db/client.ts";
import { withDeadline } from "../db/errors.ts";
import { silentLogger, type Logger } from "../log.ts";
import { claimTokens, deleteIdleBuckets, type BucketKind } from "./sql.ts";

/** A refusal says when to ask again: in whole seconds (a Retry-After header), and in milliseconds. */
export type TakeResult = { ok: true } | { ok: false; retryAfterSeconds: number; retryAfterMs: number };

export interface RateLimiterOptions {
  /**
   * What an idle application may send at once, as a share of its limit (default 0.1): the bucket's
   * size. A batch larger than that still goes through whole, once the bucket holds all of it.
   */
  burstShare?: number;
  /**
   * Most one claim asks for, as a share of the limit (default 0.05), unless a batch needs more.
   * Larger: fewer round trips; smaller: less lost when a process's demand stops.
   */
  chunkShare?: number;
  /** How long claimed events stay this process's to admit (default 100 ms); unused ones are lost. */
  holdMs?: number;
  /** How long a claim may take before it counts as failed (default 500 ms; a healthy one takes ~1). */
  claimTimeoutMs?: number;
  /** How often this process deletes rows of idle applications (default 60 s; 0: never). */
  cleanupIntervalMs?: number;
  /** How long a bucket refills untouched before its row is deleted (default 60 s; at least 1). */
  idleSeconds?: number;
  logger?: Logger;
}

/** Events of one application (or deliveries to one endpoint) this process may admit, and when it may ask for more. */
interface Budget {
  /** Claimed and not yet admitted; usable until `tokensExpireAt` (performance.now() ms). */
  tokens: number;
  tokensExpireAt: number;
  /** No claim before this: the bucket was short, or claims failed. Refusals until then are local. */
  quietUntil: number;
  /** The claim in flight: concurrent requests wait for it instead of sending their own. */
  claiming: Promise<void> | null;
  /** Events the requests waiting for a claim need between them: the next claim asks for them. */
  waiting: number;
  /** What the last claim asked for, if it got all of it: the next one asks for twice as much. */
  lastWant: number;
  /** Events asked for (admitted or not) in this process's current second and the one before. */
  demand: number;
  previousDemand: number;
  demandSince: number;
}

const ADMITTED: TakeResult = Object.freeze({ ok: true });
// Claims one request waits through before it is refused anyway. Each claim either grants something
// or makes the application quiet, so it is reached only when other requests keep taking the grants.
const MAX_ROUNDS = 4;
const CLEANUP_BATCH = 1000;
// Local state of applications not asked about for this long is forgotten (memory stays bounded).
const FORGET_AFTER_MS = 60_000;

/**
 * Per-application ingest rate limit, held across API processes: one token bucket per application in
 * Postgres, refilled continuously at `limitPerSecond` events (a batch of N counts N), by the
 * database's clock. The same machinery limits deliveries per endpoint across worker processes
 * (`kind` "delivery", see delivery.ts); the text below speaks of ingest.
 *
 * Processes do not count requests in the database. Each claims chunks from the bucket (`claimTokens`,
 * one upsert under a row lock) and admits from its chunk locally: a round trip per chunk, not per
 * request. One claim per application is in flight per process; requests arriving meanwhile wait for
 * it and are counted into its size. A chunk starts at this process's demand over `chunkShare` of a
 * second, doubles while claims come back whole, and stops growing at `chunkShare` of the limit. When
 * the bucket is short, the process refuses locally until it has refilled enough for another chunk.
 *
 * Why a bucket and not fixed one-second windows: a window's whole budget is free the moment it
 * starts, so a client sending flat out for T seconds from any moment but a window's start gets T + 1
 * windows' worth (a third over the limit across three seconds). Here, over any T seconds, all
 * processes together admit at most limit × T, plus one bucketful (a tenth of the limit, or a batch
 * bigger than that), plus what claims made just before hand out inside (at most holdMs and a round
 * trip's worth of the limit). With the defaults that is at most about 10% over two seconds, less over
 * longer; two processes sending flat out for 3 s measured 2-3% over.
 *
 * What is lost: events a process claimed but did not admit within holdMs (its demand stopped): at
 * most a chunk per process at a time. Refilling beyond a full bucket is lost too, as it should be.
 * A batch needs the bucket to hold all of it at once: under steady small requests it may wait long.
 *
 * Clock: the bucket is read and written in the database's time, never a process's; a process only
 * counts short durations (hold, quiet) on its own monotonic clock, so clocks that differ between
 * processes do not matter.
 */
export class TokenBucketLimiter {
  private readonly budgets = new Map<string, Budget>();
  private readonly pending = new Set<Promise<unknown>>();
  private readonly burstShare: number;
  private readonly chunkShare: number;
  private readonly holdMs: number;
  private readonly claimTimeoutMs: number;
  private readonly idleSeconds: number;
  private readonly logger: Logger;
  private readonly timer: ReturnType<typeof setInterval> | undefined;
  /** No claims are sent until then: one failed, and every application falls back to local limits. */
  private degradedUntil = 0;

  constructor(
    private readonly sql: Sql,
    /** Whose buckets: applications' (ingest) or endpoints' (delivery). */
    private readonly kind: BucketKind,
    options: RateLimiterOptions = {},
  ) {
    this.burstShare = options.burstShare ?? 0.1;
    this.chunkShare = options.chunkShare ?? 0.05;
    this.holdMs = options.holdMs ?? 100;
    this.claimTimeoutMs = options.claimTimeoutMs ?? 500;
    this.idleSeconds = Math.max(1, options.idleSeconds ?? 60);
    this.logger = options.logger ?? silentLogger;
    const every = options.cleanupIntervalMs ?? 60_000;
    if (every > 0) {
      this.timer = setInterval(() => void this.track(this.cleanup().catch(() => {})), every);
      this.timer.unref?.();
    }
  }

  /**
   * Admits `count` events of the application, or refuses them all. Returns synchronously when this
   * process can decide alone (the common case); a promise only when it has to claim more.
   */
  take(key: string, limitPerSecond: number, count: number): TakeResult | Promise<TakeResult> {
    if (count <= 0) return ADMITTED;
    const now = performance.now();
    const budget = this.budgetOf(key, now);
    budget.demand += count;
    if (budget.tokens >= count) {
      budget.tokens -= count;
      return ADMITTED;
    }
    // A batch over the limit never fits; refusing it here keeps it from claiming what it cannot use.
    if (now < budget.quietUntil || count > limitPerSecond) return refusal(budget, now);
    return this.wait(key, budget, limitPerSecond, count);
  }

  /** One round of cleanup: deletes rows of idle applications' buckets; returns how many. */
  async cleanup(): Promise<number> {
    const now = performance.now();
    for (const [key, budget] of this.budgets) {
      if (!budget.claiming && budget.waiting === 0 && now - budget.demandSince > FORGET_AFTER_MS) this.budgets.delete(key);
    }
    try {
      return await deleteIdleBuckets(this.sql, this.kind, this.idleSeconds, CLEANUP_BATCH);
    } catch (err) {
      this.logger.warn("rate limit cleanup failed", { error: String(err) });
      throw err;
    }
  }

  /** Stops the cleanup and waits for claims in flight (each bounded by claimTimeoutMs). */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await Promise.allSettled([...this.pending]);
  }

  private budgetOf(key: string, now: number): Budget {
    let budget = this.budgets.get(key);
    if (!budget) {
      budget = { tokens: 0, tokensExpireAt: 0, quietUntil: 0, claiming: null, waiting: 0, lastWant: 0, demand: 0, previousDemand: 0, demandSince: now };
      this.budgets.set(key, budget);
    }
    refresh(budget, now);
    return budget;
  }

  private async wait(key: string, budget: Budget, limit: number, count: number): Promise<TakeResult> {
    budget.waiting += count;
    try {
      for (let round = 0; round < MAX_ROUNDS; round++) {
        await (budget.claiming ?? this.claim(key, budget, limit, count));
        const now = performance.now();
        refresh(budget, now);
        if (budget.tokens >= count) {
          budget.tokens -= count;
          return ADMITTED;
        }
        if (now < budget.quietUntil) return refusal(budget, now);
      }
      return refusal(budget, performance.now());
    } finally {
      budget.waiting -= count;
    }
  }

  private claim(key: string, budget: Budget, limit: number, count: number): Promise<void> {
    const claiming = this.track(
      this.runClaim(key, budget, limit, count).finally(() => {
        budget.claiming = null;
      }),
    );
    budget.claiming = claiming;
    return claiming;
  }

  private async runClaim(key: string, budget: Budget, limit: number, count: number): Promise<void> {
    const sentAt = performance.now();
    if (sentAt < this.degradedUntil) return this.fallBack(budget, limit, sentAt);
    const need = count - budget.tokens;
    const maxChunk = Math.max(1, Math.ceil(limit * this.chunkShare));
    const chunk = Math.max(1, Math.ceil(budget.previousDemand * this.chunkShare), budget.lastWant * 2, budget.waiting - budget.tokens);
    const want = Math.max(need, Math.min(maxChunk, chunk));
    const capacity = Math.max(want, Math.ceil(limit * this.burstShare));
    try {
      const request = { key, limitPerSecond: limit, want, need, capacity };
      const claim = await withDeadline(claimTokens(this.sql, this.kind, request), this.claimTimeoutMs, "rate limit claim");
      // Held from the answer, not the question: a slow round trip must not spoil every grant.
      refresh(budget, performance.now());
      if (claim.granted > 0) {
        budget.tokens += claim.granted;
        budget.tokensExpireAt = performance.now() + this.holdMs;
      }
      if (claim.granted < want) {
        // The bucket is short: ask again once it holds about another chunk, refusing locally meanwhile.
        // Processes told the same moment would race for the refill, and the one that lost once would
        // keep losing by the same margin; a random half of the wait spreads them out.
        budget.quietUntil = sentAt + claim.readyMs * (0.5 + Math.random() / 2);
        budget.lastWant = 0;
      } else {
        budget.lastWant = want;
      }
    } catch (err) {
      // Fail open, to a limit of this process's own. Ingest writes to the same database, so when it is
      // down, requests fail there with 503 anyway, the honest answer, rather than a 429 telling clients
      // they sent too much. When only the claim fails (a timeout under load, the table missing), ingest
      // stays up and each process still admits at most the limit per second: together at most the
      // limit times the number of processes, for as long as claims fail. Claims resume a second later.
      this.degradedUntil = performance.now() + 1000;
      this.logger.warn("rate limit claim failed; limiting per process for a second", { bucket: this.kind, key, error: String(err) });
      this.fallBack(budget, limit, performance.now());
    }
  }

  /** The whole limit for a second, counted by this process alone; no claim until it ends. */
  private fallBack(budget: Budget, limit: number, now: number): void {
    budget.tokens = limit;
    budget.tokensExpireAt = now + 1000;
    budget.quietUntil = now + 1000;
    budget.lastWant = 0;
  }

  private track<T>(work: Promise<T>): Promise<T> {
    this.pending.add(work);
    void work.finally(() => this.pending.delete(work)).catch(() => {});
    return work;
  }
}

/** Drops expired tokens (their hold is over) and moves the demand count on by the second. */
function refresh(budget: Budget, now: number): void {
  if (budget.tokens > 0 && now >= budget.tokensExpireAt) {
    budget.tokens = 0;
    budget.lastWant = 0; // claimed more than was asked for: grow no further
  }
  if (now - budget.demandSince >= 1000) {
    budget.previousDemand = now - budget.demandSince < 2000 ? budget.demand : 0;
    budget.demand = 0;
    budget.demandSince = now;
  }
}

function refusal(budget: Budget, now: number): TakeResult {
  const retryAfterMs = Math.max(0, budget.quietUntil - now);
  // A bucket refills within a second, so this is 1 but for rounding; never 0, which invites a retry now.
  return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil(retryAfterMs / 1000)), retryAfterMs };
}

/** The ingest limit: one bucket per application (see TokenBucketLimiter). */
export class IngestRateLimiter extends TokenBucketLimiter {
  constructor(sql: Sql, options: RateLimiterOptions = {}) {
    super(sql, "ingest", options);
  }
}
