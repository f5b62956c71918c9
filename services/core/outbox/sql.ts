import { RELAXED_COMMIT, type Sql, type TxSql } from "../db/client.ts";
import { jobMessage, type JobMessage } from "../queue/messages.ts";

/** Why a job is in the outbox (see migrations 0002 and 0008). */
export type OutboxReason = "publish" | "retry" | "lease" | "dead_letter";

/** A job the sweeper took from the outbox, with what its message needs. */
export interface SweptJob {
  id: string;
  appId: string;
  eventId: string;
  endpointId: string;
  status: string;
  attemptCount: number;
  /** Attempts made before the job's latest replay (migration 0009); 0 when never replayed. */
  attemptBase: number;
  replayedAt: Date | null;
  expiresAt: Date | null;
  endReason: string | null;
  eventType: string;
  payloadJson: string;
  eventCreatedAt: Date;
  /** events.trace_parent (migration 0011): the accepting request span, when it was recorded. */
  traceParent: string | null;
  reason: OutboxReason;
  dueAt: Date;
  /** False when there is nothing left to send: the job finished, or a live worker holds its claim (or the entry is a dead letter). */
  publishable: boolean;
}

export function messageForSwept(job: SweptJob): JobMessage {
  const message = jobMessage(
    { id: job.id, endpointId: job.endpointId, attemptCount: job.attemptCount, expiresAt: job.expiresAt },
    { id: job.eventId, type: job.eventType, createdAt: job.eventCreatedAt, dataJson: job.payloadJson, traceParent: job.traceParent },
  );
  // Only replayed jobs carry these, so every other message stays as it was (and an older worker
  // reading a replay's message still delivers it, counting its policy from the first attempt).
  if (job.replayedAt === null) return message;
  return { ...message, attemptBase: job.attemptBase, replayedAt: job.replayedAt.getTime() };
}

/**
 * What the dead-letter exchange is told when a job dies (RabbitMQ transport): enough to find the
 * job and act on it without a lookup. Consumers bind their own queues to the exchange.
 */
export interface DeadLetter {
  jobId: string;
  eventId: string;
  endpointId: string;
  appId: string;
  eventType: string;
  endReason: string | null;
  attemptCount: number;
  deadAt: string;
}

function deadLetterOf(job: SweptJob): DeadLetter {
  return {
    jobId: job.id,
    eventId: job.eventId,
    endpointId: job.endpointId,
    appId: job.appId,
    eventType: job.eventType,
    endReason: job.endReason,
    attemptCount: job.attemptCount,
    deadAt: job.dueAt.toISOString(),
  };
}

/**
 * NOTIFY channel: "the outbox has work due now or soon". Postgres-transport workers listen for new
 * jobs and near-due holds; the dispatcher for near-due holds, retries and dead letters.
 */
export const OUTBOX_CHANNEL = "evently_outbox";
/** An entry due within this long wakes its takers (jobs/sql.ts); later ones wait for their timer. */
export const SOON_DUE_MS = 2000;

/**
 * Milliseconds until the outbox's next entry is due (0 when one is due now), null when there is
 * none: how long an idle sweeper may sleep (the Postgres transport's take answers this itself, in
 * the same statement). With `retriesOnly`, only `retry` entries (retries and holds) count: what
 * the dispatcher wakes early for, since `publish` entries are the fast path's to clear within their
 * grace, and sweeping them the moment it ends would race it. Leases do not count: lapsed ones are
 * looked for once per poll interval (`lapsedLeases` below). One or two index lookups (the partial
 * indexes of migrations 0009 and 0012).
 */
export async function msUntilNextDue(sql: Sql, retriesOnly = false): Promise<number | null> {
  // greatest() skips nulls, so the null of an empty outbox is kept by hand: it read as "due now",
  // and an idle taker polled every few milliseconds.
  const [row] = await sql<{ ms: number | null }[]>`
    select case when next is null then null else greatest(0, ceil(extract(epoch from next - now()) * 1000))::int end as ms
    from (select least(
      (select min(due_at) from outbox where reason = 'retry'),
      ${retriesOnly ? sql`null` : sql`(select min(due_at) from outbox where reason <> 'retry' and reason <> 'lease')`}) as next) n`;
  return row?.ms ?? null;
}

/**
 * How an insert into the outbox meets an existing entry: it takes the new due time and reason, so a
 * `publish` entry the fast path has not yet cleared can never be cleared over the retry or lease
 * that replaced it. Callers lock the job row first.
 */
export const replaceEntry = (sql: Sql | TxSql) =>
  sql`on conflict (job_id) do update set due_at = excluded.due_at, reason = excluded.reason`;

/**
 * The fast path's half of the outbox: after RabbitMQ confirmed these jobs, their `publish` entries
 * go. Entries a sweeper holds right now are skipped (it publishes and removes them itself), and
 * entries that became a retry or a lease meanwhile stay. Runs in INDEX_ONLY_SESSION (the RabbitMQ
 * transport's `connectClears`): with plans of its own choosing it read the whole outbox in two
 * clears of five, logged at 1,000 events/s. The reason is a parameter so that its generic plan
 * finds each entry by its key: with the literal, it walked the partial index of every fresh entry
 * (`outbox_due_fresh_idx`), a burst's whole backlog, on every clear.
 */
export async function clearPublished(sql: Sql, jobIds: string[]): Promise<void> {
  if (jobIds.length === 0) return;
  await sql`
    delete from outbox where job_id in (
      select job_id from outbox where job_id = any (${jobIds}::text[]) and reason = ${"publish"}::text
      order by job_id for update skip locked)`;
}

export interface SweepOptions {
  /** Most `retry` entries taken, within `limit` (DISPATCH_MAX_RETRIES_PER_SECOND); `limit` when absent. */
  retryLimit?: number;
  /**
   * Publishes dead-letter notices (RabbitMQ's dead-letter exchange) and resolves once confirmed.
   * Without it `dead_letter` entries are not taken: they wait for a sweeper that has one.
   */
  publishDeadLetters?: (letters: DeadLetter[]) => Promise<void>;
}

/**
 * One sweep, in one transaction: locks up to `limit` due entries (SKIP LOCKED, so several
 * dispatchers share the work), hands the jobs that still need a message to `publish` and the
 * notices of jobs still dead to `publishDeadLetters`, and deletes the entries only if both return.
 * A dispatcher that dies mid-sweep leaves its entries in place. A job needs a message when it is
 * pending or scheduled, or delivering under a lapsed claim. Entries other than retries are taken
 * first, so a backlog of retries held to `retryLimit` never delays a first delivery.
 */
export async function sweepOutbox(
  sql: Sql,
  limit: number,
  publish: (jobs: SweptJob[]) => Promise<void>,
  options: SweepOptions = {},
): Promise<SweptJob[]> {
  const retryLimit = Math.min(limit, options.retryLimit ?? limit);
  const deadLetters = options.publishDeadLetters !== undefined;
  return sql.begin(async (tx) => {
    const swept = await tx<SweptJob[]>`
      with fresh as (
        select job_id, reason, due_at from outbox
        where due_at <= now() and reason <> 'retry' and reason <> 'lease' and (${deadLetters}::boolean or reason <> 'dead_letter')
        order by due_at limit ${limit} for update skip locked
      ), lapsed as (
        select job_id, reason, due_at from outbox where due_at <= now() and reason = 'lease'
        order by due_at limit ${limit}::int - (select count(*) from fresh) for update skip locked
      ), other as (
        select * from fresh union all select * from lapsed
      ), retry as (
        select job_id, reason, due_at from outbox where due_at <= now() and reason = 'retry'
        order by due_at limit least(${retryLimit}::int, ${limit}::int - (select count(*) from other)) for update skip locked
      )
      select j.id, j.app_id, j.event_id, j.endpoint_id, j.status, j.attempt_count, j.attempt_base, j.replayed_at, j.expires_at,
             j.end_reason, e.type as event_type, e.payload::text as payload_json, e.created_at as event_created_at, e.trace_parent, o.reason, o.due_at,
             (o.reason <> 'dead_letter' and (j.status in ('pending', 'scheduled') or (j.status = 'delivering' and j.next_attempt_at <= now())))
               as publishable
      from (select * from other union all select * from retry) o
      join jobs j on j.id = o.job_id
      join events e on e.app_id = j.app_id and e.id = j.event_id`;
    if (swept.length === 0) return swept;
    await publish(swept.filter((job) => job.publishable));
    // A job replayed before its notice went out is no longer dead: its notice is dropped.
    const letters = swept.filter((job) => job.reason === "dead_letter" && job.status === "dead").map(deadLetterOf);
    if (letters.length > 0) await options.publishDeadLetters!(letters);
    // A job still delivering under a live claim (renewed by its worker's heartbeat) keeps its entry,
    // moved to when that claim lapses: should the worker die, the job is offered again then.
    const live = new Set(swept.filter((job) => job.reason !== "dead_letter" && job.status === "delivering" && !job.publishable).map((job) => job.id));
    await tx`delete from outbox where job_id = any (${swept.map((job) => job.id).filter((id) => !live.has(id))}::text[])`;
    if (live.size > 0) {
      await tx`
        update outbox o set due_at = j.next_attempt_at, reason = 'lease'
        from jobs j where j.id = o.job_id and o.job_id = any (${[...live]}::text[])`;
    }
    return swept;
  });
}

export interface TakeOptions {
  limit: number;
  /** Most `retry` entries taken, within `limit` (DISPATCH_MAX_RETRIES_PER_SECOND); `limit` when absent. */
  retryLimit?: number;
  /** The lease of each job's claim: how long it stays away unless its worker renews the claim. */
  leaseMs: number;
  /**
   * Whether to look for lapsed leases too. Each deleted lease leaves a dead index entry at its lapse
   * time until a vacuum, and looking walks over those (migration 0012), so takers look now and then
   * (the poll interval) rather than on every take: a lapsed lease is a worker's death or a lost answer.
   * Default true.
   */
  lapsedLeases?: boolean;
}

/** What one take found, and when to look again. */
export interface Take {
  /** The jobs taken and claimed, each needing a delivery. */
  jobs: SweptJob[];
  /**
   * Milliseconds until the next entry the take left is due (0: one is due now, locked by another
   * taker or beyond the limit), null when none is: what `msUntilNextDue` would have said right
   * after it, read in the same statement, so a taker that found less than it had room for, or
   * nothing, need not ask separately.
   */
  nextDueMs: number | null;
}

/**
 * The Postgres transport's receive: takes up to `limit` due entries (SKIP LOCKED, so workers share
 * them) and claims the jobs that need a delivery, in one statement. A claim here is what the
 * worker's own claim (jobs/sql.ts `claimJobs`) makes: the job is `delivering` under a lease of
 * `leaseMs`, which the worker renews while it holds the job (worker/delivery/leases.ts), so the
 * worker does not claim it again. Its entry becomes a `lease` due when the claim lapses: if the
 * worker dies, or the answer to this statement is lost, the job is offered again then. Recording
 * an outcome removes or replaces the entry (jobs/sql.ts). An entry whose job is under a live claim
 * moves to when that claim lapses; one whose job has finished is deleted; one whose job row another
 * statement holds locked right now (an outcome being written, a replay) is left due, and taken
 * next time: the take never waits for a lock, so it cannot deadlock with the outcome writes, which
 * lock jobs before outbox entries. Retries come after everything else, at most `retryLimit`;
 * `dead_letter` entries (made only with the RabbitMQ transport) are never taken. Its commit does
 * not wait for the WAL flush (RELAXED_COMMIT): claims lost in a database crash only offer their
 * jobs again, sooner.
 */
export async function takeDueJobs(sql: Sql, options: TakeOptions): Promise<Take> {
  const retryLimit = Math.min(options.limit, options.retryLimit ?? options.limit);
  const rows = await sql.unsafe<(SweptJob & { nextDueMs: number | null })[]>(
    TAKE_DUE_JOBS,
    [options.limit, options.leaseMs, retryLimit, options.lapsedLeases ?? true],
    { prepare: true },
  );
  // One row at least: a take that found nothing answers with the next-due time alone.
  const nextDueMs = rows[0]?.nextDueMs ?? null;
  return { jobs: rows[0]?.id == null ? [] : rows.map(({ nextDueMs: _, ...job }) => job), nextDueMs };
}

/**
 * The take, as prepared (exported for the test of its plan). A Postgres-transport worker runs it
 * through a connection of its own in INDEX_ONLY_SESSION (db/client.ts, runtime.ts), which makes its
 * one cached plan right at any size of the tables.
 *
 * The take runs a few hundred times a second under load. Planned afresh on every call, its planning
 * cost 0.85-0.95 ms of Postgres CPU per take, three quarters of the whole; prepared and run from its
 * cached generic plan, 0.21-0.26 ms (takes of five entries among 100,000 jobs, measured on this
 * statement alone). But a plan is cached once, from the statistics of that moment, and the outbox
 * is empty most of the time: a plan made then read the outbox by sequential scan and sort, and
 * looked each taken job up by a scan of `jobs`, which a backlog of a million entries turns into a
 * take of seconds. With sequential scans disabled, the plan reads every table through the index the
 * statement was written for, whatever the statistics said: the due entries in due order, jobs and
 * events by primary key (a LATERAL subquery with LIMIT, never flattened into a join), and the
 * entries it leases or deletes by the array of taken ids. Forcing the generic plan keeps a custom
 * plan from being made at all.
 */
export const TAKE_DUE_JOBS = `
  with fresh as (
    select job_id, reason from outbox where due_at <= now() and reason <> 'retry' and reason <> 'lease' and reason <> 'dead_letter'
    order by due_at limit $1 for update skip locked
  ), lapsed as (
    select job_id, reason from outbox where $4::boolean and due_at <= now() and reason = 'lease'
    order by due_at limit $1::int - (select count(*) from fresh) for update skip locked
  ), other as (
    select * from fresh union all select * from lapsed
  ), retry as (
    select job_id, reason from outbox where due_at <= now() and reason = 'retry'
    order by due_at limit least($3::int, $1::int - (select count(*) from other)) for update skip locked
  ), due as (
    select * from other union all select * from retry
  ), state as (
    select d.job_id, d.reason, j.app_id, j.event_id, j.endpoint_id, j.status, j.attempt_count, j.attempt_base, j.replayed_at,
           j.expires_at, j.end_reason, j.next_attempt_at,
           (j.status in ('pending', 'scheduled') or (j.status = 'delivering' and j.next_attempt_at <= now())) as publishable
    from due d cross join lateral (select * from jobs where id = d.job_id limit 1 for update skip locked) j
  ), claimed as (
    update jobs set status = 'delivering', next_attempt_at = now() + $2::int * interval '1 millisecond', updated_at = now()
    where id = any (array(select job_id from state where publishable))
  ), leased as (
    update outbox set reason = 'lease', due_at = now() + $2::int * interval '1 millisecond'
    where job_id = any (array(select job_id from state where publishable))
  ), held as (
    update outbox o set reason = 'lease', due_at = j.next_attempt_at
    from jobs j
    where o.job_id = any (array(select job_id from state where not publishable and status = 'delivering')) and j.id = o.job_id
  ), finished as (
    delete from outbox where job_id = any (array(select job_id from state where not publishable and status <> 'delivering'))
  ), next_due as (
    -- A full take means more is due now, so the earliest entry left is looked for only after a take
    -- that found less: in a backlog, the look steps over every entry just taken. OFFSET 0 keeps t
    -- computed once rather than once per mention.
    select case when (select count(*) from state) >= $1::int then 0 else (
      select case when t is null then null else greatest(0, ceil(extract(epoch from t - now()) * 1000))::int end
      from (select least(
        (select min(due_at) from outbox where reason = 'retry' and job_id <> all (array(select job_id from state))),
        (select min(due_at) from outbox where reason <> 'retry' and reason <> 'lease' and job_id <> all (array(select job_id from state)))) as t
        offset 0) n) end as ms
  ), taken as (
    select s.job_id as id, s.app_id, s.event_id, s.endpoint_id, s.status, s.attempt_count, s.attempt_base, s.replayed_at,
           s.expires_at, s.end_reason, e.type as event_type, e.payload::text as payload_json, e.created_at as event_created_at,
           e.trace_parent, s.reason, now() as due_at, true as publishable
    from state s cross join lateral (select * from events where app_id = s.app_id and id = s.event_id limit 1) e
    where s.publishable
  ), ${RELAXED_COMMIT}
  select taken.*, next_due.ms as next_due_ms
  from next_due cross join relaxed_commit left join taken on true`;
