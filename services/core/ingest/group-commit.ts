import { trace } from "@opentelemetry/api";
import { Batcher } from "../batching.ts";
import type { Sql } from "../db/client.ts";
import { isConnectionError, lostLockRace, withDeadline } from "../db/errors.ts";
import { databaseHealth, type DatabaseHealth } from "../db/health.ts";
import { UnavailableError } from "../errors.ts";
import {
  findExisting,
  findKeyMismatches,
  insertEventsWithJobs,
  type CommitClaim,
  type CreatedJob,
  type InsertedBatch,
  type NewEventRow,
  type StoredEventSummary,
} from "../events/sql.ts";
import { listJobsForEvents } from "../jobs/sql.ts";
import type { CommitConsumer, Reservation } from "../queue/transport.ts";
import { newId } from "../ids.ts";
import { instruments } from "../telemetry/instruments.ts";
import { SPAN } from "../telemetry/names.ts";
import { activeTraceparent, parentAndLinks, spanAt, tracingEnabled } from "../telemetry/trace-context.ts";

export interface EventInput {
  /** The application the event is ingested for. */
  appId: string;
  type: string;
  /** `data` as the producer wrote it (validated JSON text); stored as `json` and spliced into the delivered body verbatim. */
  dataJson: string;
  idempotencyKey: string | null;
  /** Jobs of this event not delivered within this many seconds end `expired`; absent/null: the endpoint's TTL. */
  ttlSeconds?: number | null;
}

export interface AcceptedEvent {
  id: string;
  type: string;
  createdAt: Date;
  idempotencyKey: string | null;
  /** True when the idempotency key already existed: this is the original event, no jobs were made. */
  replayed: boolean;
  /**
   * True when the key already belonged to an event of another type or payload: nothing was written,
   * and the caller answers 422 rather than pretend the different request was the original.
   */
  keyReused: boolean;
  jobs: CreatedJob[];
}

/** An event this commit wrote, with its jobs: what the queue transport is handed afterwards. */
export interface CommittedEvent {
  row: NewEventRow;
  jobs: CreatedJob[];
}

/** Jobs a commit claimed for a consumer that offered it room, to be handed over to it (CommitConsumer). */
export interface ClaimedJobs {
  /** The room reserved for the commit: handing over frees what the jobs did not use. */
  reservation: Reservation;
  /** The jobs the commit claimed: those that fit the room, of events it inserted (not an earlier try's). */
  jobIds: Set<string>;
}

const COMMIT_TRIES = 4;
// Far above a healthy commit (milliseconds); reached only when a connection was cut mid-commit.
const COMMIT_DEADLINE_MS = 10_000;

export interface GroupCommitOptions {
  maxEvents: number;
  concurrency: number;
  /** Fewest events a group needs to start while another commits (Batcher's overlapMinWeight). */
  overlapMinEvents?: number;
  /** How long a new job's outbox entry waits before a sweep may take it (the queue transport's grace). */
  graceMs: number;
  /** The channel the commit notifies when it makes jobs (the queue transport's `commitNotify`). */
  notifyChannel?: string | null;
  /** A consumer the commit may claim its jobs for (the queue transport's `commitConsumer`). */
  commitConsumer?: () => CommitConsumer | null;
  /**
   * Receives every group once it is committed; `claimed` when the commit claimed jobs for the commit
   * consumer, which must then be handed them (or have the reservation released).
   */
  onCommitted?: (events: CommittedEvent[], claimed: ClaimedJobs | null) => void;
}

/**
 * Group commit: concurrent requests share one transaction. While `concurrency` transactions are
 * in flight, new requests queue; the next transaction takes everything queued (up to maxEvents).
 * Under light load a request commits alone; under heavy load hundreds share one commit, which is
 * how ingest passes the machine's one-commit-per-request ceiling. Every caller still hears back
 * only after its own rows are durable.
 */
export class GroupCommitter {
  private readonly batcher: Batcher<NewEventRow[], AcceptedEvent[]>;
  private readonly health: DatabaseHealth;

  constructor(
    private readonly sql: Sql,
    private readonly options: GroupCommitOptions,
  ) {
    this.health = databaseHealth(sql);
    this.batcher = new Batcher((group) => this.commit(group), {
      maxBatch: options.maxEvents,
      concurrency: options.concurrency,
      overlapMinWeight: options.overlapMinEvents,
      weight: (rows) => rows.length,
    });
  }

  submit(inputs: EventInput[]): Promise<AcceptedEvent[]> {
    const now = new Date();
    // The caller's request span, stored with its events so their jobs' spans join its trace.
    const traceParent = activeTraceparent();
    const rows = inputs.map((input) => ({
      id: newId("event", now.getTime()),
      appId: input.appId,
      type: input.type,
      dataJson: input.dataJson,
      idempotencyKey: input.idempotencyKey,
      createdAt: now,
      ttlSeconds: input.ttlSeconds ?? null,
      traceParent,
    }));
    const accepted = this.batcher.add(rows);
    const span = traceParent ? trace.getActiveSpan() : undefined;
    if (!span || rows.length === 0) return accepted;
    // The request span names what it ingested: ids and type, never the payload. The event id is the
    // stored one, which for a replayed idempotency key is the original's.
    span.setAttributes({ "evently.app_id": rows[0]!.appId, "evently.events": rows.length });
    if (rows.length > 1) return accepted;
    return accepted.then((events) => {
      span.setAttributes({ "evently.event_id": events[0]!.id, "evently.event_type": events[0]!.type, "evently.replayed": events[0]!.replayed });
      return events;
    });
  }

  /** One result per request of the group; an Error where that request alone failed. */
  private async commit(group: NewEventRow[][]): Promise<(AcceptedEvent[] | Error)[]> {
    try {
      return await this.commitWithRetry(group);
    } catch (err) {
      if (err instanceof UnavailableError) return group.map(() => err);
      // One bad request must not fail its neighbours: retry each alone, so only it gets the error.
      if (group.length > 1 && !isConnectionError(err)) return (await Promise.all(group.map((rows) => this.commit([rows])))).flat();
      const failure = isConnectionError(err) ? new UnavailableError("database unavailable, event not accepted") : (err as Error);
      return group.map(() => failure);
    }
  }

  /**
   * A connection cut mid-commit (a backend killed, a failover) is retried for up to about a second
   * before callers hear 503. Retrying is safe even when the lost try had committed: the rows keep
   * their ids, and rows found already stored are answered from what is stored. A database that
   * cannot be reached at all (stopped, restarting) is not waited for: the shared circuit
   * (db/health.ts) opens and every commit is refused with 503 at once until a probe gets through,
   * so producers retry (with their idempotency keys) instead of hanging.
   * A commit Postgres failed to break a deadlock is retried at once, like the producer would: two
   * groups that share idempotency keys in opposite orders wait for each other's inserts, and an
   * application's delete can hold endpoints a fan-out waits for (applications/sql.ts).
   */
  private async commitWithRetry(group: NewEventRow[][]): Promise<AcceptedEvent[][]> {
    for (let attempt = 1; ; attempt++) {
      this.health.ensureAvailable();
      try {
        return await this.commitGroup(group);
      } catch (err) {
        this.health.observe(err);
        const connectionLost = isConnectionError(err);
        const retried = connectionLost ? this.health.available : lostLockRace(err);
        if (!retried || attempt >= COMMIT_TRIES) throw err;
        if (connectionLost) await Bun.sleep(50 * 2 ** attempt);
      }
    }
  }

  private async commitGroup(group: NewEventRow[][]): Promise<AcceptedEvent[][]> {
    const consumer = this.options.commitConsumer?.() ?? null;
    const reservation = consumer?.reserve() ?? null;
    let batch: CommittedBatch;
    try {
      batch = await this.insertGroup(group, reservation ? { maxJobs: reservation.jobs, leaseMs: consumer!.leaseMs, allOrNone: consumer!.allOrNone } : null);
    } catch (err) {
      reservation?.release();
      throw err;
    }
    const claimed = batch.claimedJobIds.size > 0 && reservation ? { reservation, jobIds: batch.claimedJobIds } : null;
    if (!claimed) reservation?.release();
    return this.answer(group, batch, claimed);
  }

  private async insertGroup(group: NewEventRow[][], claimFor: CommitClaim | null): Promise<CommittedBatch> {
    const rows = group.flat();
    const m = instruments();
    const started = performance.now();
    // One commit serves many requests: it links every traced request's span, and is the child of
    // theirs when they share one trace (a request alone, say). No request traced: no span.
    const place = tracingEnabled() ? parentAndLinks(group.map((requestRows) => requestRows[0]?.traceParent)) : null;
    const batch = await spanAt(SPAN.ingestCommit, place, {}, async (span) => {
      span?.setAttribute("evently.events", rows.length);
      // One statement inserts the events and their jobs: atomic on its own, one round trip, no
      // BEGIN/COMMIT. Rows it skipped are looked up afterwards; they are committed data either way.
      const notify = this.options.notifyChannel ?? null;
      const inserted = await withDeadline(insertEventsWithJobs(this.sql, rows, this.options.graceMs, notify, claimFor), COMMIT_DEADLINE_MS, "ingest commit");
      const skipped = rows.filter((r) => !inserted.insertedEventIds.has(r.id));
      if (skipped.length === 0) return { ...inserted, existing: [], earlierJobs: [], keyMismatches: new Set<string>() };
      const existing = await findExisting(this.sql, skipped);
      // Jobs of events stored before this statement: ours from a lost earlier try, and the
      // originals of replayed keys (a replay answers with the jobs its first request created).
      const storedIds = new Set(existing.map((e) => e.id));
      const replays = skipped.filter((r) => !storedIds.has(r.id));
      return {
        ...inserted,
        existing,
        earlierJobs: await listJobsForEvents(this.sql, [...storedIds]),
        keyMismatches: await findKeyMismatches(this.sql, replays),
      };
    });
    m.ingestCommitDuration.record((performance.now() - started) / 1000);
    m.ingestBatchSize.record(rows.length);
    return batch;
  }

  /** Each request's answer from what the commit stored, and the committed events handed on. */
  private answer(group: NewEventRow[][], batch: CommittedBatch, claimed: ClaimedJobs | null): AcceptedEvent[][] {
    const m = instruments();
    const jobsByEvent = new Map<string, CreatedJob[]>();
    for (const job of [...batch.jobs, ...batch.earlierJobs]) {
      let list = jobsByEvent.get(job.eventId);
      if (!list) jobsByEvent.set(job.eventId, (list = []));
      list.push({ id: job.id, eventId: job.eventId, endpointId: job.endpointId, expiresAt: job.expiresAt });
    }
    const existingById = new Map<string, StoredEventSummary>();
    // Keys are unique per application: looked up by application and key together.
    const existingByKey = new Map<string, StoredEventSummary>();
    for (const e of batch.existing) {
      existingById.set(e.id, e);
      if (e.idempotencyKey !== null) existingByKey.set(scopedKey(e.appId, e.idempotencyKey), e);
    }
    const committed: CommittedEvent[] = [];
    let replays = 0;
    const results = group.map((requestRows) =>
      requestRows.map((row): AcceptedEvent => {
        // Ours: inserted now, or by an earlier try of this batch whose answer was lost.
        if (batch.insertedEventIds.has(row.id) || existingById.has(row.id)) {
          const jobs = jobsByEvent.get(row.id) ?? [];
          committed.push({ row, jobs });
          return { id: row.id, type: row.type, createdAt: row.createdAt, idempotencyKey: row.idempotencyKey, replayed: false, keyReused: false, jobs };
        }
        replays++;
        const original = existingByKey.get(scopedKey(row.appId, row.idempotencyKey!))!;
        return {
          id: original.id,
          type: original.type,
          createdAt: original.createdAt,
          idempotencyKey: row.idempotencyKey,
          replayed: true,
          keyReused: batch.keyMismatches.has(row.id),
          jobs: jobsByEvent.get(original.id) ?? [],
        };
      }),
    );
    m.eventsAccepted.add(committed.length);
    if (replays > 0) m.eventsDeduplicated.add(replays);
    m.jobsCreated.add(batch.jobs.length);
    // A commit that claimed made jobs, so events too: `committed` is never empty then.
    if (committed.length > 0) this.options.onCommitted?.(committed, claimed);
    return results;
  }
}

const scopedKey = (appId: string, key: string) => `${appId} ${key}`;

/** What one group's commit stored: its own inserts, and what explains the rows it skipped. */
interface CommittedBatch extends InsertedBatch {
  existing: StoredEventSummary[];
  earlierJobs: CreatedJob[];
  keyMismatches: Set<string>;
}
