import { attemptsInsert, type AttemptRow } from "../attempts/sql.ts";
import type { Sql, TxSql } from "../db/client.ts";
import { replaceEntry } from "../outbox/sql.ts";
import { eventTypeCondition } from "../routes/sql.ts";

export const JOB_STATUSES = ["pending", "delivering", "scheduled", "delivered", "dead", "expired", "cancelled"] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];
/** States a job does not leave by itself; only a replay brings it back. */
export const END_STATES = ["delivered", "dead", "expired", "cancelled"] as const satisfies readonly JobStatus[];
export type EndState = (typeof END_STATES)[number];

// Every batch update below locks its rows in id order first (the `locked` CTE): concurrent batches
// from API, dispatcher and workers then wait on each other instead of deadlocking. On the delivery
// path they change only unindexed columns of `jobs`, so the updates can be HOT; due work goes to
// the outbox (outbox/sql.ts).

export interface ClaimRequest {
  jobId: string;
  attempt: number;
  /** How long the claim holds: the endpoint's timeout plus a margin. */
  leaseMs: number;
}

/**
 * Claims jobs for delivery: each succeeds only if the job still has `attempt` recorded attempts and
 * is not being delivered under a live claim. This is what turns a message published twice into one
 * delivery. The claim is a lease kept in next_attempt_at. A message that finds a live claim is most
 * often one RabbitMQ redelivered because its worker died, so the job gets a `lease` outbox entry:
 * when the claim lapses, the job is offered again (by the dispatcher, or taken by a Postgres-transport
 * worker) unless it finished meanwhile.
 */
export async function claimJobs(sql: Sql, claims: ClaimRequest[]): Promise<Set<string>> {
  if (claims.length === 0) return new Set();
  const rows = await sql<{ id: string }[]>`
    with c as (
      select * from unnest(${claims.map((c) => c.jobId)}::text[], ${claims.map((c) => c.attempt)}::int[],
                           ${claims.map((c) => c.leaseMs)}::int[]) as c (id, attempt, lease_ms)
    ), locked as (
      select j.id, j.status, j.next_attempt_at, j.attempt_count from jobs j join c on c.id = j.id order by j.id for update of j
    ), claimed as (
      update jobs j
      set status = 'delivering', next_attempt_at = now() + c.lease_ms * interval '1 millisecond', updated_at = now()
      from c, locked
      where j.id = c.id and locked.id = j.id and locked.attempt_count = c.attempt
        and (locked.status in ('pending', 'scheduled') or (locked.status = 'delivering' and locked.next_attempt_at <= now()))
      returning j.id
    ), guarded as (
      insert into outbox (job_id, due_at, reason)
      select distinct locked.id, locked.next_attempt_at, 'lease' from locked join c on c.id = locked.id
      where locked.status = 'delivering' and locked.next_attempt_at > now() and locked.attempt_count = c.attempt
      order by 1
      ${replaceEntry(sql)}
    )
    select id from claimed`;
  return new Set(rows.map((r) => r.id));
}

export interface Deferral {
  jobId: string;
  /** How long from now until the job is offered again. */
  delayMs: number;
}

/**
 * Hands claimed jobs back without an attempt (no free slot, paused endpoint, open circuit, rate
 * limit, an earlier job first): they become `scheduled` after their delay, with a `retry` outbox
 * entry that offers them again then. No attempt is spent.
 */
export async function deferJobs(sql: Sql, deferrals: Deferral[]): Promise<void> {
  if (deferrals.length === 0) return;
  await sql`
    with d as (
      select * from unnest(${deferrals.map((d) => d.jobId)}::text[], ${deferrals.map((d) => Math.round(d.delayMs))}::int[]) as d (id, delay_ms)
    ), locked as (
      select j.id from jobs j join d on d.id = j.id where j.status = 'delivering' order by j.id for update of j
    ), deferred as (
      update jobs j set status = 'scheduled', next_attempt_at = now() + d.delay_ms * interval '1 millisecond', updated_at = now()
      from locked, d where j.id = locked.id and d.id = j.id
      returning j.id, j.next_attempt_at
    )
    insert into outbox (job_id, due_at, reason)
    select distinct on (id) id, next_attempt_at, 'retry' from deferred order by id
    ${replaceEntry(sql)}`;
}

export interface JobOutcome {
  jobId: string;
  status: "delivered" | "scheduled" | "dead" | "expired" | "cancelled";
  /** Why a job ended dead, expired or cancelled (see migration 0008); null otherwise. */
  endReason: string | null;
  /** The attempt this outcome is of; the job's attempt count becomes this number (unchanged when no attempt was made). */
  attemptNumber: number;
  /** When the next attempt is due; only for `scheduled`. */
  nextAttemptAt: Date | null;
  attemptedAt: Date;
}

/**
 * Records attempts and applies their outcomes to the jobs, in one statement (atomic, one round
 * trip); a scheduled retry also gets its outbox entry, and a finished job loses its `lease` entry
 * (the Postgres transport leaves one on every job it hands out; RabbitMQ only on redelivered ones). Idempotent: attempts already written are
 * skipped, and a job's attempt count is set to the outcome's attempt number rather than
 * incremented, so a write retried after a lost acknowledgement changes nothing twice.
 */
export async function recordOutcomes(sql: Sql | TxSql, attempts: AttemptRow[], outcomes: JobOutcome[]): Promise<void> {
  if (outcomes.length === 0 && attempts.length === 0) return;
  await sql`
    with o as (
      select * from unnest(${outcomes.map((o) => o.jobId)}::text[], ${outcomes.map((o) => o.status)}::text[],
                           ${outcomes.map((o) => o.attemptNumber)}::int[],
                           ${outcomes.map((o) => o.nextAttemptAt?.toISOString() ?? null)}::timestamptz[],
                           ${outcomes.map((o) => o.attemptedAt.toISOString())}::timestamptz[],
                           ${outcomes.map((o) => o.endReason)}::text[])
        as o (id, status, attempt_number, next_attempt_at, attempted_at, end_reason)
    ), locked as (
      select j.id from jobs j join o on o.id = j.id order by j.id for update of j
    ), written as (
      ${attemptsInsert(sql, attempts)}
    ), updated as (
      update jobs j
      set status = o.status,
          attempt_count = greatest(j.attempt_count, o.attempt_number),
          next_attempt_at = o.next_attempt_at,
          last_attempt_at = case when o.attempt_number > j.attempt_count then o.attempted_at else j.last_attempt_at end,
          end_reason = o.end_reason,
          delivered_at = case when o.status = 'delivered' then o.attempted_at else j.delivered_at end,
          updated_at = now()
      from o, locked
      where j.id = o.id and locked.id = j.id
      returning j.id
    ), finished as (
      delete from outbox where job_id in (select id from updated) and reason = 'lease'
        and job_id in (select id from o where status <> 'scheduled')
    )
    insert into outbox (job_id, due_at, reason)
    select distinct on (o.id) o.id, o.next_attempt_at, 'retry' from o join updated on updated.id = o.id
    where o.status = 'scheduled'
    order by o.id
    ${replaceEntry(sql)}`;
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
  /** Why the job ended dead, expired or cancelled; null while live or once delivered. */
  endReason: string | null;
  expiresAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
}

const JOB_COLUMNS = "id, event_id, endpoint_id, event_type, status, attempt_count, next_attempt_at, last_attempt_at, delivered_at, end_reason, expires_at, created_at, updated_at";

const selectJobs = (sql: Sql | TxSql) => sql`select ${sql.unsafe(JOB_COLUMNS)} from jobs`;

export async function findJob(sql: Sql | TxSql, appId: string, id: string): Promise<JobRow | null> {
  const [row] = await sql<JobRow[]>`${selectJobs(sql)} where app_id = ${appId} and id = ${id}`;
  return row ?? null;
}

/**
 * The jobs of these events, oldest first; what an event's detail and an idempotent replay show.
 * Unscoped: callers pass ids of events they already found in their application.
 */
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

export async function listJobs(sql: Sql | TxSql, appId: string, filter: JobListFilter): Promise<JobRow[]> {
  return sql<JobRow[]>`
    ${selectJobs(sql)}
    where app_id = ${appId}
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
 * Gives a dead job one more attempt now, through a `retry` outbox entry due at once.
 * attempt_count is kept, so the worker's claim (which checks it) still holds and the retry schedule
 * treats this as one extra attempt. Null when the job is not `dead`.
 */
export async function rescheduleFailedJob(sql: Sql | TxSql, appId: string, id: string): Promise<JobRow | null> {
  const [row] = await sql<JobRow[]>`
    with rescheduled as (
      update jobs set status = 'scheduled', next_attempt_at = now(), updated_at = now()
      where app_id = ${appId} and id = ${id} and status = 'dead'
      returning ${sql.unsafe(JOB_COLUMNS)}
    ), entry as (
      insert into outbox (job_id, due_at, reason) select id, next_attempt_at, 'retry' from rescheduled
      ${replaceEntry(sql)}
    )
    select * from rescheduled`;
  return row ?? null;
}
