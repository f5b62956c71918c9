/**
 * How many due retries a process may take from the outbox now (DISPATCH_MAX_RETRIES_PER_SECOND):
 * a token bucket holding at most one second's worth. After an outage every retry that fell due
 * meanwhile is due at once; without a bound a dispatcher would publish them as fast as the broker
 * confirms, and receivers that just came back would get the whole backlog in seconds. First
 * deliveries are not counted here: they stay as fast as before.
 *
 * The bound is per process (each dispatcher, or each Postgres-transport worker): processes share
 * nothing but the database, and a shared bucket would cost a write per sweep.
 */
export class RetryBudget {
  private tokens: number;
  private refilledAt: number;

  constructor(
    readonly perSecond: number,
    private readonly now: () => number = Date.now,
  ) {
    this.tokens = perSecond;
    this.refilledAt = now();
  }

  /** Whole retries that may be taken now, at most `limit`. */
  available(limit: number): number {
    const now = this.now();
    this.tokens = Math.min(this.perSecond, this.tokens + ((now - this.refilledAt) / 1000) * this.perSecond);
    this.refilledAt = now;
    return Math.max(0, Math.min(limit, Math.floor(this.tokens)));
  }

  /** Records retries taken (at most what available() allowed). */
  spend(count: number): void {
    this.tokens -= count;
  }

  /** Milliseconds until `count` retries may be taken (0: now). */
  msUntil(count: number): number {
    const missing = Math.min(count, this.perSecond) - this.tokens;
    return missing <= 0 ? 0 : Math.ceil((missing / this.perSecond) * 1000);
  }
}
