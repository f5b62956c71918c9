import type { Config } from "@evently/core/config/index.ts";
import type { Sql } from "@evently/core/db/client.ts";
import { withDeadline } from "@evently/core/db/errors.ts";
import type { Logger } from "@evently/core/log.ts";
import type { JobMessage } from "@evently/core/queue/messages.ts";
import { RetryBudget } from "@evently/core/outbox/retry-budget.ts";
import { messageForSwept, msUntilNextDue, OUTBOX_CHANNEL, sweepOutbox, type DeadLetter } from "@evently/core/outbox/sql.ts";
import { instruments } from "@evently/core/telemetry/instruments.ts";
import { SPAN } from "@evently/core/telemetry/names.ts";
import { newTracePlace, spanAt } from "@evently/core/telemetry/trace-context.ts";

// A sweep holds its outbox rows locked while it publishes; a broker that stops confirming (a resource
// alarm, say) must not keep that transaction open. The rows then stay for the next sweep, and any
// message that did get through meets the worker's claim.
const SWEEP_PUBLISH_DEADLINE_MS = 30_000;
// Shortest pause between sweeps held back only by the retry budget.
const MIN_BUDGET_WAIT_MS = 10;
// Shortest pause before a sweep for entries due soon: entries due now that this sweep skipped are
// another dispatcher's (SKIP LOCKED), and a sweep per few ms would only load Postgres.
const MIN_WAKE_MS = 20;

/** What the sweeper needs of the RabbitMQ transport. */
export interface SweepPublisher {
  readonly ready: boolean;
  /** Resolves once the broker confirmed every job. */
  send(jobs: JobMessage[], path: "sweep"): Promise<void>;
  /** Resolves once the broker confirmed every notice on the dead-letter exchange. */
  sendDeadLetters(letters: DeadLetter[]): Promise<void>;
}

/** What one sweep took: every entry, and of them the retries, with the most retries it was allowed. */
export interface SweepResult {
  taken: number;
  retries: number;
  retryLimit: number;
}

/**
 * The outbox sweeper. Every interval it takes the outbox entries that are due — jobs whose fast
 * path never happened (the API died between commit and publish, or RabbitMQ was down), retries
 * that are due, deliveries whose worker may have died, and notices of dead jobs — publishes those
 * that still need a message with confirms, and removes the entries, all in one transaction. A
 * full sweep is followed at once by the next, so a backlog of new jobs drains at full speed; due
 * retries (replays included) are released at most DISPATCH_MAX_RETRIES_PER_SECOND, so receivers
 * coming back from an outage are not handed the whole backlog at once. Several dispatchers may
 * run: entries are locked with SKIP LOCKED (the retry bound is per dispatcher).
 */
export class OutboxSweeper {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private readonly retries: RetryBudget;
  private wokenMeanwhile = false;
  private unlisten: (() => Promise<void>) | undefined;

  constructor(
    private readonly sql: Sql,
    private readonly publisher: SweepPublisher,
    private readonly config: Pick<Config, "dispatch">,
    private readonly log: Logger,
    now: () => number = Date.now,
  ) {
    this.retries = new RetryBudget(config.dispatch.DISPATCH_MAX_RETRIES_PER_SECOND, now);
  }

  /**
   * Starts sweeping, and listens for work that becomes due soon (OUTBOX_CHANNEL). Without the
   * notifications (the database was unreachable at start) sweeps still run on their timers.
   */
  start(): void {
    this.schedule(0);
    this.sql.listen(OUTBOX_CHANNEL, () => this.wake()).then(
      (listener) => (this.unlisten = listener.unlisten),
      (err) => this.log.warn("outbox notifications unavailable; sweeping on the interval", { error: (err as Error).message }),
    );
  }

  /**
   * Sweeps now rather than at the next timer: work became due soon (OUTBOX_CHANNEL). During a sweep
   * the next one is brought forward instead, so a notice is never lost.
   */
  wake(): void {
    if (this.stopped) return;
    if (this.running) {
      this.wokenMeanwhile = true;
      return;
    }
    clearTimeout(this.timer);
    this.schedule(0);
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.running = this.tick().finally(() => (this.running = undefined));
    }, delayMs);
  }

  private async tick(): Promise<void> {
    const { DISPATCH_BATCH_SIZE: batch, DISPATCH_INTERVAL_MS: interval } = this.config.dispatch;
    let next = interval;
    try {
      const result = await this.sweep();
      if (result.taken >= batch) next = 0;
      else if (result.retries >= result.retryLimit) {
        // Held back by the budget, not by an empty outbox: come back when it allows a sweep's worth.
        const chunk = Math.max(1, Math.min(batch, Math.round((this.retries.perSecond * interval) / 1000)));
        next = Math.max(MIN_BUDGET_WAIT_MS, Math.min(interval, this.retries.msUntil(chunk)));
      }
      // Nothing more due now: sleep until the next retry is (a held job's slot, a retry), at most the interval.
      else next = await this.untilNextDue(interval);
    } catch (err) {
      this.log.warn("outbox sweep failed", { error: (err as Error).message });
    }
    if (this.wokenMeanwhile) next = 0;
    this.wokenMeanwhile = false;
    this.schedule(next);
  }

  private async untilNextDue(interval: number): Promise<number> {
    const ms = await withDeadline(msUntilNextDue(this.sql, true), SWEEP_PUBLISH_DEADLINE_MS, "next due");
    return ms === null ? interval : Math.min(interval, Math.max(MIN_WAKE_MS, ms));
  }

  /** One sweep; returns how many outbox entries it took. Exposed for tests. */
  async sweepOnce(): Promise<number> {
    return (await this.sweep()).taken;
  }

  /** One sweep, with the retries it took against the budget. Exposed for tests. */
  async sweep(): Promise<SweepResult> {
    if (!this.publisher.ready) return { taken: 0, retries: 0, retryLimit: 0 };
    return spanAt(SPAN.outboxSweep, newTracePlace(), {}, async (span) => {
      const m = instruments();
      const batch = this.config.dispatch.DISPATCH_BATCH_SIZE;
      const retryLimit = this.retries.available(batch);
      const deadline = <T>(work: Promise<T>) => withDeadline(work, SWEEP_PUBLISH_DEADLINE_MS, "sweep publish");
      const swept = await sweepOutbox(this.sql, batch, (jobs) => deadline(this.publisher.send(jobs.map(messageForSwept), "sweep")), {
        retryLimit,
        publishDeadLetters: (letters) => deadline(this.publisher.sendDeadLetters(letters)),
      });
      const retries = swept.filter((job) => job.reason === "retry").length;
      this.retries.spend(retries);
      span?.setAttribute("evently.jobs", swept.length);
      for (const job of swept) {
        const published = job.reason === "dead_letter" ? job.status === "dead" : job.publishable;
        m.outboxSwept.add(1, { reason: job.reason, published: String(published) });
      }
      return { taken: swept.length, retries, retryLimit };
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
    await this.unlisten?.().catch(() => {});
  }
}
