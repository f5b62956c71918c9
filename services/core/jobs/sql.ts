import { attemptsInsert, type AttemptRow } from "../attempts/sql.ts";
import { RELAXED_COMMIT, type Sql, type TxSql } from "../db/client.ts";
import { OUTBOX_CHANNEL, replaceEntry, SOON_DUE_MS } from "../outbox/sql.ts";
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
 * worker) unless it finished meanwhile. Its commit does not wait for the WAL flush (RELAXED_COMMIT):
 * a claim lost in a database crash only offers the job again. The worker runs it in BATCH_SESSION
 * (db/client.ts): with plans of its own choosing it scanned `jobs` in one claim of five, logged at
 * 1,000 events/s on the RabbitMQ transport.
 */
export async function claimJobs(sql: Sql, claims: ClaimRequest[]): Promise<Set<string>> {
  if (claims.length === 0) return new Set();
  const ids = claims.map((c) => c.jobId);
  const rows = await sql<{ id: string }[]>`
    with c as (
      select * from unnest(${ids}::text[], ${claims.map((c) => c.attempt)}::int[],
                           ${claims.map((c) => c.leaseMs)}::int[]) as c (id, attempt, lease_ms)
    ), locked as (
      -- By the array of ids, each job is found by its key: joined to c, the generic plan merged c
      -- with a walk of the whole primary key.
      select j.id, j.status, j.next_attempt_at, j.attempt_count from jobs j
      where j.id = any (${ids}::text[]) order by j.id for update of j
    ), claimed as (
      update jobs j
      set status = 'delivering', next_attempt_at = now() + c.lease_ms * interval '1 millisecond', updated_at = now()
      from c, locked
      where j.id = c.id and locked.id = j.id and locked.attempt_count = c.attempt
        -- The ids again, as a condition on jobs' key (see recordOutcomes' update).
        and j.id = any (${ids}::text[])
        and (locked.status in ('pending', 'scheduled') or (locked.status = 'delivering' and locked.next_attempt_at <= now()))
      returning j.id
    ), guarded as (
      insert into outbox (job_id, due_at, reason)
      select distinct locked.id, locked.next_attempt_at, 'lease' from locked join c on c.id = locked.id
      where locked.status = 'delivering' and locked.next_attempt_at > now() and locked.attempt_count = c.attempt
      order by 1
      ${replaceEntry(sql)}
    ), ${sql.unsafe(RELAXED_COMMIT)}
    select id from claimed, relaxed_commit`;
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
  const ids = deferrals.map((d) => d.jobId);
  await sql`
    with d as (
      select * from unnest(${ids}::text[], ${deferrals.map((d) => Math.round(d.delayMs))}::int[]) as d (id, delay_ms)
    ), locked as (
      -- By the array of ids (see claimJobs): joined to d, the generic plan walked the whole primary key.
      select j.id from jobs j where j.id = any (${ids}::text[]) and j.status = 'delivering'
      order by j.id for update of j
    ), deferred as (
      update jobs j set status = 'scheduled', next_attempt_at = now() + d.delay_ms * interval '1 millisecond', updated_at = now()
      from locked, d where j.id = locked.id and d.id = j.id and j.id = any (${ids}::text[])
      returning j.id, j.next_attempt_at
    ), entries as (
      insert into outbox (job_id, due_at, reason)
      select distinct on (id) id, next_attempt_at, 'retry' from deferred order by id
      ${replaceEntry(sql)}
      returning due_at
    )
    ${notifySoonDue(sql)}`;
}

/**
 * The last step of a statement that wrote outbox `entries` (with their due_at): wakes the
 * dispatcher, or a Postgres-transport worker (OUTBOX_CHANNEL), when one is due within
 * SOON_DUE_MS, so a short hold (a rate limit's next slot, a FIFO endpoint's next job) is taken when
 * due rather than at the next sweep. Retries hours away notify nobody.
 */
const notifySoonDue = (sql: Sql | TxSql) => sql`
  select pg_notify(${OUTBOX_CHANNEL}, '') from (select 1 from entries where due_at < now() + ${SOON_DUE_MS} * interval '1 millisecond' limit 1) soon`;

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
 *
 * With `deadLetters` (the RabbitMQ transport), a job that becomes dead here also gets a
 * `dead_letter` outbox entry, due at its death, which the dispatcher publishes to the dead-letter
 * exchange: written with the outcome, so the notice is as durable as the death. Only the change to
 * dead makes one, so a retried write does not announce it twice.
 */
export async function recordOutcomes(
  sql: Sql | TxSql,
  attempts: AttemptRow[],
  outcomes: JobOutcome[],
  options: { deadLetters?: boolean } = {},
): Promise<void> {
  // The worker runs this, and deferJobs, in BATCH_SESSION (db/client.ts; its recorder's pool).
  // Left to choose, Postgres planned each write afresh (seven CTEs) from statistics taken when
  // `outbox` and `jobs` were small: the plans logged at 1,000 single events/s deleted each batch's
  // lease entries by a scan of the whole outbox, every write, and scanned `jobs` in one of five.
  if (outcomes.length === 0 && attempts.length === 0) return;
  const ids = outcomes.map((o) => o.jobId);
  await sql`
    with o as (
      select * from unnest(${ids}::text[], ${outcomes.map((o) => o.status)}::text[],
                           ${outcomes.map((o) => o.attemptNumber)}::int[],
                           ${outcomes.map((o) => o.nextAttemptAt?.toISOString() ?? null)}::timestamptz[],
                           ${outcomes.map((o) => o.attemptedAt.toISOString())}::timestamptz[],
                           ${outcomes.map((o) => o.endReason)}::text[])
        as o (id, status, attempt_number, next_attempt_at, attempted_at, end_reason)
    ), locked as (
      select j.id, j.status from jobs j where j.id = any (${[...new Set([...ids, ...attempts.map((a) => a.jobId)])]}::text[])
      order by j.id for update of j
    ), written as (
      ${attemptsInsert(sql, attempts, sql.unsafe("select id from locked"))}
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
        -- The ids again, as a condition on jobs' key: with only the joins, a generic plan made while
        -- jobs was tiny could merge them with a walk of the whole primary key, the cheapest way
        -- then and the slowest once jobs has grown.
        and j.id = any (${ids}::text[])
      returning j.id, j.status, j.next_attempt_at
    ), letters as (
      select o.id, o.attempted_at from o join locked on locked.id = o.id
      where ${options.deadLetters ?? false}::boolean and o.status = 'dead' and locked.status <> 'dead'
    ), finished as (
      -- The new status comes from updated, not from o: checked against o, each deleted entry
      -- scanned all of o, a cost that grew with the square of the batch. Each entry is found by its
      -- key from the array of ids, and the reason is a parameter: the generic plan (BATCH_SESSION)
      -- cannot then read the partial index of lease entries, which it otherwise walked whole, every
      -- job in flight, checking each against the batch.
      delete from outbox where job_id = any (array(select id from updated where status <> 'scheduled')) and reason = ${"lease"}::text
        and job_id not in (select id from letters)
    ), entries as (
      insert into outbox (job_id, due_at, reason)
      select distinct on (id) id, due_at, reason from (
        -- From updated alone (it set both from o): joined back to o, the generic plan compared
        -- every scheduled outcome with every updated job.
        select id, next_attempt_at as due_at, 'retry' as reason from updated where status = 'scheduled'
        union all
        select id, attempted_at, 'dead_letter' from letters
      ) due
      order by id
      ${replaceEntry(sql)}
      returning due_at
    )
    ${notifySoonDue(sql)}`;
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

const ENDED_UNDELIVERED: readonly JobStatus[] = ["dead", "expired", "cancelled"];

/**
 * The status as a literal, not a parameter: a prepared statement soon runs a generic plan, which
 * cannot use a partial index. For dead, expired and cancelled jobs `end_reason is not null` is
 * added, which lets the list read jobs_ended_idx (migration 0010) instead of every job of the
 * application. Safe to inline: the value is one of JOB_STATUSES.
 */
function statusCondition(sql: Sql | TxSql, status: JobStatus) {
  if (!(JOB_STATUSES as readonly string[]).includes(status)) throw new Error(`not a job status: ${status}`);
  return sql.unsafe(`and status = '${status}'${ENDED_UNDELIVERED.includes(status) ? " and end_reason is not null" : ""}`);
}

export async function listJobs(sql: Sql | TxSql, appId: string, filter: JobListFilter): Promise<JobRow[]> {
  return sql<JobRow[]>`
    ${selectJobs(sql)}
    where app_id = ${appId}
      ${filter.endpointId ? sql`and endpoint_id = ${filter.endpointId}` : sql``}
      ${filter.status ? statusCondition(sql, filter.status) : sql``}
      ${eventTypeCondition(sql, "event_type", filter.eventType)}
      ${filter.since ? sql`and created_at >= ${filter.since}` : sql``}
      ${filter.until ? sql`and created_at < ${filter.until}` : sql``}
      ${filter.before ? sql`and id < ${filter.before}` : sql``}
    order by id desc
    limit ${filter.limit}`;
}

// ---- Replay: ended jobs due again (POST /jobs/:id/replay, and operations/runner.ts in bulk) ----

/**
 * Makes ended jobs (in `statuses`, all end states by default) due again now: `scheduled` with a
 * `retry` outbox entry due at once, so they go through the normal path, where the worker's checks
 * (pause, circuit, rate limit) apply. Nothing of their history is rewritten: attempt_count stays,
 * so new attempts continue the numbering (and the worker's claim, which checks the count, holds).
 * The retry policy starts afresh (attempt_base, replayed_at: migration 0009); end_reason is
 * cleared, and so is expires_at, since the operator asked for the delivery explicitly. Returns the
 * jobs replayed; ids that are not this application's, or not ended, are left alone.
 */
// Qualified: `id` alone would be ambiguous between jobs and `locked` in the update's returning.
const REPLAYED_COLUMNS = JOB_COLUMNS.split(", ").map((c) => `j.${c}`).join(", ");

export async function replayJobs(
  sql: Sql | TxSql,
  appId: string,
  ids: string[],
  statuses: readonly EndState[] = END_STATES,
): Promise<JobRow[]> {
  if (ids.length === 0) return [];
  return sql<JobRow[]>`
    with locked as (
      select id from jobs where app_id = ${appId} and id = any (${ids}::text[]) and status = any (${statuses as EndState[]}::text[])
      order by id for update
    ), replayed as (
      update jobs j
      set status = 'scheduled', next_attempt_at = now(), end_reason = null, expires_at = null,
          attempt_base = j.attempt_count, replayed_at = now(), updated_at = now()
      from locked where j.id = locked.id
      returning ${sql.unsafe(REPLAYED_COLUMNS)}
    ), entries as (
      insert into outbox (job_id, due_at, reason)
      select id, next_attempt_at, 'retry' from replayed order by id
      ${replaceEntry(sql)}
    )
    select * from replayed order by id`;
}

// ---- Claim renewal (appended): the heartbeat of a live worker's leases (worker/delivery/leases.ts) ----

/**
 * Extends the claims on jobs a worker is still delivering by `leaseMs` from now, in one statement.
 * Their `lease` outbox entries are not touched: an entry that comes due while its claim is live is
 * moved to the claim's expiry by whoever takes it (the sweep, a Postgres-transport take), once per
 * lease rather than on every beat, which kept the outbox index churning with dead entries at the
 * front that every take then walked. Jobs no longer `delivering` (their outcome was recorded
 * meanwhile) are left alone. Returns the ids renewed. Only next_attempt_at changes on
 * `jobs` (unindexed, so the update can be HOT); updated_at is for state changes, not heartbeats.
 */
export async function renewClaims(sql: Sql, jobIds: string[], leaseMs: number): Promise<Set<string>> {
  if (jobIds.length === 0) return new Set();
  const rows = await sql<{ id: string }[]>`
    with locked as (
      select id from jobs where id = any (${jobIds}::text[]) and status = 'delivering' order by id for update
    ), renewed as (
      update jobs j set next_attempt_at = now() + ${leaseMs}::int * interval '1 millisecond'
      from locked where j.id = locked.id
      returning j.id
    )
    select id from renewed`;
  return new Set(rows.map((r) => r.id));
}

/**
 * Deletes an application's jobs, or one endpoint's, with their attempts and outbox entries: no
 * foreign key cascades the delete (migrations 0014, 0016, 0017). Runs in the deleting transaction,
 * after the caller locked the endpoints (one, or all of the application's): that waits for any
 * ingest that routed to them, which holds them for key share until it commits, and stops new ones
 * making jobs for them. The jobs are then locked in a statement of their own: every statement that
 * writes an outbox entry or an attempt locks its job first, so once the lock is held none can be
 * added, and the delete (a new statement, so a new snapshot) sees every row committed before it.
 */
export async function deleteJobsOf(tx: TxSql, scope: { appId: string; endpointId?: string }): Promise<void> {
  const ofScope = scope.endpointId === undefined
    ? tx`app_id = ${scope.appId}`
    : tx`app_id = ${scope.appId} and endpoint_id = ${scope.endpointId}`;
  await tx`select count(*) from (select id from jobs where ${ofScope} order by id for update) locked`;
  await tx`
    with gone as (
      delete from jobs where ${ofScope} returning id
    ), entries as (
      delete from outbox where job_id in (select id from gone)
    )
    delete from attempts where job_id in (select id from gone)`;
}
