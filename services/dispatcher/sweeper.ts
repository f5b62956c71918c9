import type { Config } from "@evently/core/config/index.ts";
import type { Sql } from "@evently/core/db/client.ts";
import { withDeadline } from "@evently/core/db/errors.ts";
import type { Logger } from "@evently/core/log.ts";
import type { JobMessage } from "@evently/core/queue/messages.ts";
import { messageForSwept, sweepOutbox } from "@evently/core/outbox/sql.ts";
import { instruments } from "@evently/core/telemetry/instruments.ts";
import { SPAN } from "@evently/core/telemetry/names.ts";
import { tracer } from "@evently/core/telemetry/tracing.ts";

// A sweep holds its outbox rows locked while it publishes; a broker that stops confirming (a resource
// alarm, say) must not keep that transaction open. The rows then stay for the next sweep, and any
// message that did get through meets the worker's claim.
const SWEEP_PUBLISH_DEADLINE_MS = 30_000;

/** What the sweeper needs of the RabbitMQ transport. */
export interface SweepPublisher {
  readonly ready: boolean;
  /** Resolves once the broker confirmed every job. */
  send(jobs: JobMessage[], path: "sweep"): Promise<void>;
}

/**
 * The outbox sweeper. Every interval it takes the outbox entries that are due — jobs whose fast
 * path never happened (the API died between commit and publish, or RabbitMQ was down), retries
 * that are due, and deliveries whose worker may have died — publishes those that still need a
 * message with confirms, and removes the entries, all in one transaction. A full sweep is followed
 * at once by the next, so a backlog drains at full speed. Several dispatchers may run: entries are
 * locked with SKIP LOCKED.
 */
export class OutboxSweeper {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly sql: Sql,
    private readonly publisher: SweepPublisher,
    private readonly config: Pick<Config, "dispatch">,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.schedule(0);
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.tick().finally(() => (this.running = undefined));
    }, delayMs);
  }

  private async tick(): Promise<void> {
    let swept = 0;
    try {
      swept = await this.sweepOnce();
    } catch (err) {
      this.log.warn("outbox sweep failed", { error: (err as Error).message });
    }
    this.schedule(swept >= this.config.dispatch.DISPATCH_BATCH_SIZE ? 0 : this.config.dispatch.DISPATCH_INTERVAL_MS);
  }

  /** One sweep; returns how many outbox entries it took. Exposed for tests. */
  async sweepOnce(): Promise<number> {
    if (!this.publisher.ready) return 0;
    return tracer().startActiveSpan(SPAN.outboxSweep, async (span) => {
      try {
        const m = instruments();
        const swept = await sweepOutbox(this.sql, this.config.dispatch.DISPATCH_BATCH_SIZE, (jobs) =>
          withDeadline(this.publisher.send(jobs.map(messageForSwept), "sweep"), SWEEP_PUBLISH_DEADLINE_MS, "sweep publish"),
        );
        span.setAttribute("evently.jobs", swept.length);
        for (const job of swept) m.outboxSwept.add(1, { reason: job.reason, published: String(job.publishable) });
        return swept.length;
      } finally {
        span.end();
      }
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }
}
