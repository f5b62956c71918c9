import type { Config } from "@evently/core/config/index.ts";
import type { Sql } from "@evently/core/db/client.ts";
import { leaseDue, type DueJob } from "@evently/core/jobs/sql.ts";
import type { Logger } from "@evently/core/log.ts";
import { envelopeBody, type JobMessage } from "@evently/core/queue/messages.ts";
import { publishFromOutbox } from "@evently/core/outbox/publish.ts";
import type { ConfirmPublisher } from "@evently/core/queue/publisher.ts";
import { instruments } from "@evently/core/telemetry/instruments.ts";
import { SPAN } from "@evently/core/telemetry/names.ts";
import { tracer } from "@evently/core/telemetry/setup.ts";

/** How long a swept job is reserved for the dispatcher that took it, should that one die mid-publish. */
const SWEEP_LEASE_MS = 15_000;

export function toJobMessage(job: DueJob): JobMessage {
  return {
    jobId: job.id,
    eventId: job.eventId,
    endpointId: job.endpointId,
    attempt: job.attemptCount,
    createdAt: job.eventCreatedAt.getTime(),
    body: envelopeBody(job.eventId, job.eventType, job.eventCreatedAt, job.payloadJson),
  };
}

/**
 * The outbox sweeper. Every interval it leases the jobs RabbitMQ is owed — pending jobs whose fast
 * path never happened (the API died between commit and publish, or RabbitMQ was down), retries
 * that are due, and deliveries whose worker lease lapsed — publishes them with confirms and marks
 * them queued. A full sweep is followed at once by the next, so a backlog drains at full speed.
 * Several dispatchers may run: rows are leased with SKIP LOCKED.
 */
export class OutboxSweeper {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly sql: Sql,
    private readonly publisher: ConfirmPublisher,
    private readonly config: Pick<Config, "dispatch" | "amqp">,
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

  /** One sweep; returns how many jobs it published. Exposed for tests. */
  async sweepOnce(): Promise<number> {
    if (!this.publisher.ready) return 0;
    return tracer().startActiveSpan(SPAN.outboxSweep, async (span) => {
      try {
        const leaseUntil = new Date(Date.now() + SWEEP_LEASE_MS);
        const due = await leaseDue(this.sql, this.config.dispatch.DISPATCH_BATCH_SIZE, leaseUntil);
        span.setAttribute("evently.jobs", due.length);
        if (due.length === 0) return 0;
        const m = instruments();
        for (const job of due) m.outboxSwept.add(1, { previous_status: job.previousStatus });
        await publishFromOutbox(this.sql, this.publisher, due.map(toJobMessage), {
          queueCount: this.config.amqp.AMQP_WORK_QUEUES,
          jobsPerMessage: this.config.dispatch.DISPATCH_JOBS_PER_MESSAGE,
          path: "sweep",
          leaseUntil,
        });
        return due.length;
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
