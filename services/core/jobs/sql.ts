import { attemptsInsert, type AttemptRow } from "../attempts/sql.ts";
import type { Sql, TxSql } from "../db/client.ts";
import { eventTypeCondition } from "../routes/sql.ts";

export const JOB_STATUSES = ["pending", "queued", "delivering", "scheduled", "delivered", "failed"] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

/** A job ready to publish, with what the message needs. */
export interface DueJob {
  id: string;
  eventId: string;
  endpointId: string;
  attemptCount: number;
  eventType: string;
  payloadJson: string;
  eventCreatedAt: Date;
  previousStatus: JobStatus;
}

/**
 * Takes up to `limit` jobs the dispatcher owes RabbitMQ: pending jobs the fast path missed, retries
 * now due, and deliveries whose worker lease ran out (the worker died mid-attempt). Each is leased
 * for `leaseMs` so concurrent dispatchers never take the same row; a lapsed delivery lease turns the
 * job back into `scheduled`. `leaseUntil` has millisecond precision, so markQueued can recognise the
 * lease exactly.
 */
export async function leaseDue(sql: Sql, limit: number, leaseUntil: Date): Promise<DueJob[]> {
  return sql<DueJob[]>`
    with due as (
      select id, status from jobs
      where status in ('pending', 'scheduled', 'delivering') and next_attempt_at <= now()
      order by next_attempt_at
      limit ${limit}
      for update skip locked
    )
    update jobs j
    set status = case when j.status = 'delivering' then 'scheduled' else j.status end,
        next_attempt_at = ${leaseUntil},
        updated_at = now()
    from due, events e
    where j.id = due.id and e.id = j.event_id
    returning j.id, j.event_id, j.endpoint_id, j.attempt_count, e.type as event_type,
              e.payload::text as payload_json, e.created_at as event_created_at, due.status as previous_status`;
}

// Every batch update below locks its rows in id order first (the `locked` CTE): concurrent batches
// from API, dispatcher and workers then wait on each other instead of deadlocking.

/**
 * Marks published jobs as queued, but only those still in the state they were published from:
 * `pending` for the fast path, or still holding the sweeper's lease (`leaseUntil`). A job a worker
 * has meanwhile claimed, deferred or retried is left alone; marking it would strand it as `queued`
 * with no message in the broker.
 */
export async function markQueued(sql: Sql, jobIds: string[], leaseUntil: Date | null): Promise<void> {
  if (jobIds.length === 0) return;
  // The condition is checked where the rows are locked: a locked row cannot change before the update.
  await sql`
    with locked as (
      select id from jobs
      where id = any (${jobIds}::text[])
        and ${leaseUntil === null ? sql`status = 'pending'` : sql`status in ('pending', 'scheduled') and next_attempt_at = ${leaseUntil}`}
      order by id for update
    )
    update jobs j set status = 'queued', next_attempt_at = null, updated_at = now()
    from locked where j.id = locked.id`;
}

export interface ClaimRequest {
  jobId: string;
  attempt: number;
  /** How long the claim holds: the endpoint's timeout plus a margin. */
  leaseMs: number;
}

/**
 * Claims jobs for delivery: each succeeds only if the job still has `attempt` recorded attempts and
 * is not being delivered by a live worker. This is what turns a message published twice into one
 * delivery. The claim is a lease: if the worker dies, the dispatcher republishes when it lapses.
 */
export async function claimJobs(sql: Sql, claims: ClaimRequest[]): Promise<Set<string>> {
  if (claims.length === 0) return new Set();
  const rows = await sql<{ id: string }[]>`
    with c as (
      select * from unnest(${claims.map((c) => c.jobId)}::text[], ${claims.map((c) => c.attempt)}::int[],
                           ${claims.map((c) => c.leaseMs)}::int[]) as c (id, attempt, lease_ms)
    ), locked as (
      select j.id from jobs j join c on c.id = j.id order by j.id for update of j
    )
    update jobs j
    set status = 'delivering', next_attempt_at = now() + c.lease_ms * interval '1 millisecond', updated_at = now()
    from c, locked
    where j.id = c.id and locked.id = j.id and j.attempt_count = c.attempt
      and (j.status in ('pending', 'queued', 'scheduled') or (j.status = 'delivering' and j.next_attempt_at <= now()))
    returning j.id`;
  return new Set(rows.map((r) => r.id));
}

/**
 * Hands claimed jobs back without an attempt (their endpoint had no free slot): they become
 * `scheduled` after `delayMs` and the dispatcher republishes them then.
 */
export async function deferJobs(sql: Sql, jobIds: string[], delayMs: number): Promise<void> {
  if (jobIds.length === 0) return;
  await sql`
    with locked as (
      select id from jobs where id = any (${jobIds}::text[]) and status = 'delivering' order by id for update
    )
    update jobs j set status = 'scheduled', next_attempt_at = now() + ${delayMs} * interval '1 millisecond', updated_at = now()
    from locked where j.id = locked.id`;
}

export interface JobOutcome {
  jobId: string;
  status: "delivered" | "scheduled" | "failed";
  /** The attempt this outcome is of; the job's attempt count becomes this number. */
  attemptNumber: number;
  /** When the next attempt is due; only for `scheduled`. */
  nextAttemptAt: Date | null;
  attemptedAt: Date;
}

/**
 * Records attempts and applies their outcomes to the jobs, in one statement (atomic, one round
 * trip). Idempotent: attempts already written are skipped, and a job's attempt count is set to the
 * outcome's attempt number rather than incremented, so a write retried after a lost
 * acknowledgement changes nothing twice.
 */
export async function recordOutcomes(sql: Sql | TxSql, attempts: AttemptRow[], outcomes: JobOutcome[]): Promise<void> {
  if (outcomes.length === 0 && attempts.length === 0) return;
  await sql`
    with o as (
      select * from unnest(${outcomes.map((o) => o.jobId)}::text[], ${outcomes.map((o) => o.status)}::text[],
                           ${outcomes.map((o) => o.attemptNumber)}::int[],
                           ${outcomes.map((o) => o.nextAttemptAt?.toISOString() ?? null)}::timestamptz[],
                           ${outcomes.map((o) => o.attemptedAt.toISOString())}::timestamptz[])
        as o (id, status, attempt_number, next_attempt_at, attempted_at)
    ), locked as (
      select j.id from jobs j join o on o.id = j.id order by j.id for update of j
    ), written as (
      ${attemptsInsert(sql, attempts)}
    )
    update jobs j
    set status = o.status,
        attempt_count = greatest(j.attempt_count, o.attempt_number),
        next_attempt_at = o.next_attempt_at,
        last_attempt_at = o.attempted_at,
        delivered_at = case when o.status = 'delivered' then o.attempted_at else j.delivered_at end,
        updated_at = now()
    from o, locked
    where j.id = o.id and locked.id = j.id`;
}

// ---- Reads and manual actions for the API (appended; the statements above are the delivery path) ----

export interface JobRow {
  id: string;
  eventId: string;
  endpointId: string;
  eventType: string;
  status: JobStatus;
  attemptCount: number;
  nextAttemptAt: Date | null;
  lastAttemptAt: Date | null;
  deliveredAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
}

const selectJobs = (sql: Sql | TxSql) => sql`
  select id, event_id, endpoint_id, event_type, status, attempt_count, next_attempt_at, last_attempt_at,
         delivered_at, created_at, updated_at
  from jobs`;

export async function findJob(sql: Sql | TxSql, id: string): Promise<JobRow | null> {
  const [row] = await sql<JobRow[]>`${selectJobs(sql)} where id = ${id}`;
  return row ?? null;
}

/** The jobs of these events, oldest first; what an event's detail and an idempotent replay show. */
export async function listJobsForEvents(sql: Sql | TxSql, eventIds: string[]): Promise<JobRow[]> {
  if (eventIds.length === 0) return [];
  return sql<JobRow[]>`${selectJobs(sql)} where event_id = any (${eventIds}::text[]) order by id`;
}

export interface JobListFilter {
  status?: JobStatus;
  endpointId?: string;
  /** An event type pattern: exact, `prefix.*` or `*`. */
  eventType?: string;
  since?: Date;
  until?: Date;
  /** The last id of the previous page; lists run newest first. */
  before?: string;
  limit: number;
}

export async function listJobs(sql: Sql | TxSql, filter: JobListFilter): Promise<JobRow[]> {
  return sql<JobRow[]>`
    ${selectJobs(sql)}
    where true
      ${filter.endpointId ? sql`and endpoint_id = ${filter.endpointId}` : sql``}
      ${filter.status ? sql`and status = ${filter.status}` : sql``}
      ${eventTypeCondition(sql, "event_type", filter.eventType)}
      ${filter.since ? sql`and created_at >= ${filter.since}` : sql``}
      ${filter.until ? sql`and created_at < ${filter.until}` : sql``}
      ${filter.before ? sql`and id < ${filter.before}` : sql``}
    order by id desc
    limit ${filter.limit}`;
}

/**
 * Gives a failed job one more attempt now: the dispatcher's sweep publishes `scheduled` jobs once
 * next_attempt_at is due. attempt_count is kept, so the worker's claim (which checks it) still holds
 * and the retry schedule treats this as one extra attempt. Null when the job is not `failed`.
 */
export async function rescheduleFailedJob(sql: Sql | TxSql, id: string): Promise<JobRow | null> {
  const [row] = await sql<JobRow[]>`
    update jobs set status = 'scheduled', next_attempt_at = now(), updated_at = now()
    where id = ${id} and status = 'failed'
    returning id, event_id, endpoint_id, event_type, status, attempt_count, next_attempt_at, last_attempt_at,
              delivered_at, created_at, updated_at`;
  return row ?? null;
}
