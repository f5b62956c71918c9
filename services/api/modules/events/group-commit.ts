import type { Sql } from "@evently/core/db/client.ts";
import { isConnectionError, withDeadline } from "@evently/core/db/errors.ts";
import { UnavailableError } from "@evently/core/errors.ts";
import { findExisting, insertEventsWithJobs, type CreatedJob, type NewEventRow, type StoredEventSummary } from "@evently/core/events/sql.ts";
import { listJobsForEvents } from "@evently/core/jobs/sql.ts";
import { newId } from "@evently/core/ids.ts";
import { instruments } from "@evently/core/telemetry/instruments.ts";
import { SPAN } from "@evently/core/telemetry/names.ts";
import { tracer } from "@evently/core/telemetry/setup.ts";

export interface EventInput {
  type: string;
  /** `data` serialised once by the caller; stored as jsonb and spliced into the delivered body. */
  dataJson: string;
  idempotencyKey: string | null;
}

export interface AcceptedEvent {
  id: string;
  type: string;
  createdAt: Date;
  idempotencyKey: string | null;
  /** True when the idempotency key already existed: this is the original event, no jobs were made. */
  replayed: boolean;
  jobs: CreatedJob[];
}

/** Receives every batch once it is committed: the fast path that publishes to RabbitMQ. */
export type CommittedListener = (events: { row: NewEventRow; jobs: CreatedJob[] }[]) => void;

const RETRIES_ON_CONNECTION_LOSS = 5;
// Far above a healthy commit (milliseconds); reached only when a connection was cut mid-commit.
const COMMIT_DEADLINE_MS = 10_000;

interface Waiting {
  rows: NewEventRow[];
  resolve: (accepted: AcceptedEvent[]) => void;
  reject: (err: unknown) => void;
}

export interface GroupCommitOptions {
  maxEvents: number;
  concurrency: number;
  graceMs: number;
  onCommitted?: CommittedListener;
}

/**
 * Group commit: concurrent requests share one transaction. While `concurrency` transactions are
 * in flight, new requests queue; the next transaction takes everything queued (up to maxEvents).
 * Under light load a request commits alone; under heavy load hundreds share one commit, which is
 * how ingest passes the machine's one-commit-per-request ceiling. Every caller still hears back
 * only after its own rows are durable.
 */
export class GroupCommitter {
  private queue: Waiting[] = [];
  private inFlight = 0;

  constructor(
    private readonly sql: Sql,
    private readonly options: GroupCommitOptions,
  ) {}

  submit(inputs: EventInput[]): Promise<AcceptedEvent[]> {
    const now = new Date();
    const rows = inputs.map((input) => ({
      id: newId("event", now.getTime()),
      type: input.type,
      dataJson: input.dataJson,
      idempotencyKey: input.idempotencyKey,
      createdAt: now,
    }));
    return new Promise((resolve, reject) => {
      this.queue.push({ rows, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.inFlight < this.options.concurrency && this.queue.length > 0) {
      // Take requests from the front while they fit (always at least one), with one splice.
      let take = 0;
      let size = 0;
      while (take < this.queue.length && (take === 0 || size + this.queue[take]!.rows.length <= this.options.maxEvents))
        size += this.queue[take++]!.rows.length;
      const group = this.queue.splice(0, take);
      this.inFlight++;
      void this.commit(group).finally(() => {
        this.inFlight--;
        this.pump();
      });
    }
  }

  private async commit(group: Waiting[]): Promise<void> {
    try {
      const results = await this.commitWithRetry(group);
      group.forEach((w, i) => w.resolve(results[i]!));
    } catch (err) {
      // One bad request must not fail its neighbours: retry each alone, so only it gets the error.
      if (group.length > 1 && !isConnectionError(err)) {
        await Promise.all(group.map((w) => this.commit([w])));
        return;
      }
      const failure = isConnectionError(err) ? new UnavailableError("database unavailable, event not accepted") : err;
      for (const w of group) w.reject(failure);
    }
  }

  /**
   * A lost connection (database restart, failover) is retried for a few seconds before callers
   * hear 503. Retrying is safe even when the lost try had committed: the rows keep their ids, and
   * rows found already stored are answered from what is stored.
   */
  private async commitWithRetry(group: Waiting[]): Promise<AcceptedEvent[][]> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.commitGroup(group);
      } catch (err) {
        if (!isConnectionError(err) || attempt >= RETRIES_ON_CONNECTION_LOSS) throw err;
        await Bun.sleep(Math.min(2000, 50 * 2 ** attempt));
      }
    }
  }

  private async commitGroup(group: Waiting[]): Promise<AcceptedEvent[][]> {
    const rows = group.flatMap((w) => w.rows);
    const m = instruments();
    const started = performance.now();
    const batch = await tracer().startActiveSpan(SPAN.ingestCommit, async (span) => {
      span.setAttribute("evently.events", rows.length);
      try {
        // One statement inserts the events and their jobs: atomic on its own, one round trip, no
        // BEGIN/COMMIT. Rows it skipped are looked up afterwards; they are committed data either way.
        const inserted = await withDeadline(insertEventsWithJobs(this.sql, rows, this.options.graceMs), COMMIT_DEADLINE_MS, "ingest commit");
        const skipped = rows.filter((r) => !inserted.insertedEventIds.has(r.id));
        if (skipped.length === 0) return { ...inserted, existing: [], earlierJobs: [] };
        const existing = await findExisting(
          this.sql,
          skipped.map((r) => r.id),
          skipped.flatMap((r) => (r.idempotencyKey === null ? [] : [r.idempotencyKey])),
        );
        const ownIds = new Set(skipped.map((r) => r.id));
        const committedEarlier = existing.filter((e) => ownIds.has(e.id)).map((e) => e.id);
        return { ...inserted, existing, earlierJobs: await listJobsForEvents(this.sql, committedEarlier) };
      } finally {
        span.end();
      }
    });
    m.ingestCommitDuration.record((performance.now() - started) / 1000);
    m.ingestBatchSize.record(rows.length);

    const jobsByEvent = new Map<string, CreatedJob[]>();
    for (const job of [...batch.jobs, ...batch.earlierJobs]) {
      let list = jobsByEvent.get(job.eventId);
      if (!list) jobsByEvent.set(job.eventId, (list = []));
      list.push({ id: job.id, eventId: job.eventId, endpointId: job.endpointId });
    }
    const existingById = new Map<string, StoredEventSummary>();
    const existingByKey = new Map<string, StoredEventSummary>();
    for (const e of batch.existing) {
      existingById.set(e.id, e);
      if (e.idempotencyKey !== null) existingByKey.set(e.idempotencyKey, e);
    }
    const committed: { row: NewEventRow; jobs: CreatedJob[] }[] = [];
    let replays = 0;
    const results = group.map((w) =>
      w.rows.map((row): AcceptedEvent => {
        // Ours: inserted now, or by an earlier try of this batch whose answer was lost.
        if (batch.insertedEventIds.has(row.id) || existingById.has(row.id)) {
          const jobs = jobsByEvent.get(row.id) ?? [];
          committed.push({ row, jobs });
          return { id: row.id, type: row.type, createdAt: row.createdAt, idempotencyKey: row.idempotencyKey, replayed: false, jobs };
        }
        replays++;
        const original = existingByKey.get(row.idempotencyKey!)!;
        return {
          id: original.id,
          type: original.type,
          createdAt: original.createdAt,
          idempotencyKey: row.idempotencyKey,
          replayed: true,
          jobs: [],
        };
      }),
    );
    m.eventsAccepted.add(committed.length);
    if (replays > 0) m.eventsDeduplicated.add(replays);
    m.jobsCreated.add(batch.jobs.length);
    if (committed.length > 0) this.options.onCommitted?.(committed);
    return results;
  }
}
