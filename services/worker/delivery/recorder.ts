import type { AttemptRow } from "@evently/core/attempts/sql.ts";
import { Batcher } from "@evently/core/batching.ts";
import type { Sql } from "@evently/core/db/client.ts";
import { refusedForItsContent, withDeadline } from "@evently/core/db/errors.ts";
import { deferJobs, recordOutcomes, type Deferral, type JobOutcome } from "@evently/core/jobs/sql.ts";
import type { Logger } from "@evently/core/log.ts";
import { instruments } from "@evently/core/telemetry/instruments.ts";
import { SPAN } from "@evently/core/telemetry/names.ts";
import { activeTraceparent, parentAndLinks, spanAt, tracingEnabled } from "@evently/core/telemetry/trace-context.ts";
import type { LeaseKeeper } from "./leases.ts";

// Writes are idempotent, so one cut off mid-flight by a lost connection is simply written again.
const WRITE_DEADLINE_MS = 10_000;
// A second write starts beside a running one only with this many outcomes; fewer wait for it to
// end, as group commit does at ingest (INGEST_OVERLAP_MIN_EVENTS). Measured at 1,000 deliveries/s
// and in ingest-single (BENCHMARKS.md): p50 21-24 against 26-28 ms, and +10-26% ingest beside
// delivery, CPU per delivery within the runs' spread.
const WRITE_OVERLAP_MIN = 32;
// Under load, a write starts at most this long after the previous one, gathering what comes
// meanwhile; idle, an outcome is written at once. The receiver has its delivery before the write
// starts, so the wait is off the latency path: it holds a job's slot and its message a little
// longer, and saves a statement per small batch. Measured at 1,000 deliveries/s: BENCHMARKS.md.
const WRITE_MIN_INTERVAL_MS = 10;
// Attempt writes in flight at once (the second one only with WRITE_OVERLAP_MIN outcomes).
const WRITE_CONCURRENCY = 2;
/** Statements a recorder can have running at once: its attempt writes and one deferral. */
export const RECORDER_CONNECTIONS = WRITE_CONCURRENCY + 1;

export interface RecordedAttempt {
  /** Null for an outcome reached without an attempt (expired, cancelled). */
  attempt: AttemptRow | null;
  outcome: JobOutcome;
  /** The trace the attempt belongs to (set by `record` when tracing is on): the write span links it. */
  traceparent?: string | null;
}

/**
 * Writes attempts and job outcomes in batches: concurrent deliveries share one transaction
 * (attempt rows + job updates), so the database sees a few statements per hundreds of deliveries.
 * A write that fails (database restarting) is retried until it succeeds or the worker stops; the
 * AMQP message stays unacknowledged meanwhile, so nothing is lost either way.
 */
export class AttemptRecorder {
  private readonly attempts: Batcher<RecordedAttempt, void>;
  private readonly deferrals: Batcher<Deferral, void>;
  private stopped = false;

  constructor(
    private readonly sql: Sql,
    private readonly log: Logger,
    private readonly options: {
      maxBatch: number;
      leases?: Pick<LeaseKeeper, "release">;
      /** Jobs that die get a dead-letter notice in the outbox (RabbitMQ transport; jobs/sql.ts recordOutcomes). */
      deadLetters?: boolean;
    },
  ) {
    this.attempts = new Batcher((items) => this.writeAll(items), {
      maxBatch: options.maxBatch,
      concurrency: WRITE_CONCURRENCY,
      overlapMinWeight: WRITE_OVERLAP_MIN,
      minIntervalMs: WRITE_MIN_INTERVAL_MS,
    });
    this.deferrals = new Batcher<Deferral, void>(
      (deferrals) => this.persistent(async () => {
        await withDeadline(deferJobs(this.sql, deferrals), WRITE_DEADLINE_MS, "deferral");
        return deferrals.map(() => undefined);
      }),
      { maxBatch: options.maxBatch, concurrency: 1 },
    );
  }

  /** Resolves once written; the job's claim then needs no more renewing. */
  async record(entry: RecordedAttempt): Promise<void> {
    // The attempt's context is its event's trace, kept remote in the pipeline (pipeline.ts).
    await this.attempts.add(tracingEnabled() ? { ...entry, traceparent: activeTraceparent() } : entry);
    this.options.leases?.release(entry.outcome.jobId);
  }

  /** Hands a claimed job back, without an attempt, to be offered again after `delayMs`. */
  async defer(jobId: string, delayMs: number): Promise<void> {
    await this.deferrals.add({ jobId, delayMs });
    this.options.leases?.release(jobId);
  }

  stop(): void {
    this.stopped = true;
  }

  private async write(items: RecordedAttempt[]): Promise<void[]> {
    const started = performance.now();
    const place = tracingEnabled() ? parentAndLinks(items.map((i) => i.traceparent)) : null;
    await spanAt(SPAN.attemptsRecord, place, { attributes: { "evently.attempts": items.length } }, () =>
      withDeadline(
        recordOutcomes(this.sql, items.flatMap((i) => (i.attempt ? [i.attempt] : [])), items.map((i) => i.outcome), {
          deadLetters: this.options.deadLetters,
        }),
        WRITE_DEADLINE_MS,
        "attempt write",
      ),
    );
    const m = instruments();
    m.recordDuration.record((performance.now() - started) / 1000);
    m.attemptsRecorded.add(items.reduce((n, i) => n + (i.attempt ? 1 : 0), 0));
    return items.map(() => undefined);
  }

  /**
   * Writes a batch until it is written. A batch the database refuses for what it holds (a data or
   * integrity error, which every retry would meet again) is written item by item instead, so one
   * bad item neither holds up nor takes down its neighbours. An item refused alone is logged and
   * fails its delivery's handling, so the transport offers the job again (RabbitMQ redelivers the
   * message, the Postgres transport releases it) rather than acknowledging it unrecorded.
   */
  private async writeAll(items: RecordedAttempt[]): Promise<(void | Error)[]> {
    try {
      return await this.persistent(() => this.write(items), refusedForItsContent);
    } catch (err) {
      if (this.stopped || !refusedForItsContent(err)) throw err;
      if (items.length > 1) return (await Promise.all(items.map((item) => this.writeAll([item])))).flat();
      const { outcome, attempt } = items[0]!;
      this.log.error("attempt write refused by the database", {
        jobId: outcome.jobId, attempt: attempt?.attemptNumber, status: outcome.status, code: (err as { code?: string }).code, error: (err as Error).message,
      });
      return [err as Error];
    }
  }

  /** Runs `fn` until it succeeds, the recorder stops, or it fails with an error `giveUp` says retrying cannot cure. */
  private async persistent<T>(fn: () => Promise<T>, giveUp: (err: unknown) => boolean = () => false): Promise<T> {
    for (let failures = 0; ; failures++) {
      try {
        return await fn();
      } catch (err) {
        if (this.stopped || giveUp(err)) throw err;
        const delay = Math.min(5000, 50 * 2 ** Math.min(failures, 7));
        if (failures % 10 === 0) this.log.warn("recording attempts failed, retrying", { error: (err as Error).message, delayMs: delay });
        await Bun.sleep(delay);
      }
    }
  }
}
