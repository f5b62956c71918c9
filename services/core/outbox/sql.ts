import type { Sql, TxSql } from "../db/client.ts";
import { jobMessage, type JobMessage } from "../queue/messages.ts";

/** Why a job is due for a message to a worker (see migration 0002). */
export type OutboxReason = "publish" | "retry" | "lease";

/** A job the sweeper took from the outbox, with what its message needs. */
export interface SweptJob {
  id: string;
  eventId: string;
  endpointId: string;
  attemptCount: number;
  expiresAt: Date | null;
  eventType: string;
  payloadJson: string;
  eventCreatedAt: Date;
  reason: OutboxReason;
  /** False when there is nothing left to send: the job finished, or a live worker holds its claim. */
  publishable: boolean;
}

export function messageForSwept(job: SweptJob): JobMessage {
  return jobMessage(
    { id: job.id, endpointId: job.endpointId, attemptCount: job.attemptCount, expiresAt: job.expiresAt },
    { id: job.eventId, type: job.eventType, createdAt: job.eventCreatedAt, dataJson: job.payloadJson },
  );
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
 * entries that became a retry or a lease meanwhile stay.
 */
export async function clearPublished(sql: Sql, jobIds: string[]): Promise<void> {
  if (jobIds.length === 0) return;
  await sql`
    delete from outbox where job_id in (
      select job_id from outbox where job_id = any (${jobIds}::text[]) and reason = 'publish'
      order by job_id for update skip locked)`;
}

/**
 * One sweep, in one transaction: locks up to `limit` due entries (SKIP LOCKED, so several
 * dispatchers share the work), hands the jobs that still need a message to `publish`, and deletes
 * the entries only if it returns. A dispatcher that dies mid-sweep leaves its entries in place.
 * A job needs a message when it is pending or scheduled, or delivering under a lapsed claim.
 */
export async function sweepOutbox(
  sql: Sql,
  limit: number,
  publish: (jobs: SweptJob[]) => Promise<void>,
): Promise<SweptJob[]> {
  return sql.begin(async (tx) => {
    const swept = await tx<SweptJob[]>`
      select j.id, j.event_id, j.endpoint_id, j.attempt_count, j.expires_at, e.type as event_type,
             e.payload::text as payload_json, e.created_at as event_created_at, o.reason,
             (j.status in ('pending', 'scheduled') or (j.status = 'delivering' and j.next_attempt_at <= now())) as publishable
      from (select job_id, reason from outbox where due_at <= now() order by due_at limit ${limit} for update skip locked) o
      join jobs j on j.id = o.job_id
      join events e on e.app_id = j.app_id and e.id = j.event_id`;
    if (swept.length === 0) return swept;
    await publish(swept.filter((job) => job.publishable));
    await tx`delete from outbox where job_id = any (${swept.map((job) => job.id)}::text[])`;
    return swept;
  });
}

export interface TakeOptions {
  limit: number;
  /** How long a taken job stays away before it is offered again, unless claimed meanwhile. */
  leaseMs: number;
}

/**
 * The Postgres transport's receive: takes up to `limit` due entries (SKIP LOCKED, so workers share
 * them) and returns the jobs that need a delivery, in one statement. A taken entry is not deleted
 * but becomes a `lease` due after `leaseMs`: if the worker dies, or the answer to this statement is
 * lost, the job is offered again then. Taking a job twice is safe: only one worker's claim on it
 * succeeds. Recording an outcome removes or replaces the entry (jobs/sql.ts). An entry whose job is
 * under a live claim moves to when that claim lapses; one whose job has finished is deleted.
 */
export async function takeDueJobs(sql: Sql, options: TakeOptions): Promise<SweptJob[]> {
  // Sent unprepared, so it is planned for the outbox as it is at each call. The outbox is empty
  // most of the time; a plan cached then (generic, prepared) joined the whole outbox for every row
  // taken once a backlog built up, and a take of 256 jobs from 25,000 due ones took seconds instead
  // of milliseconds. Planning costs about a millisecond per take, a few microseconds per job.
  return sql.unsafe<SweptJob[]>(TAKE_DUE_JOBS, [options.limit, options.leaseMs]);
}

const TAKE_DUE_JOBS = `
  with due as (
    select job_id, reason from outbox where due_at <= now() order by due_at limit $1 for update skip locked
  ), state as (
    select d.job_id, d.reason, j.app_id, j.event_id, j.endpoint_id, j.attempt_count, j.expires_at, j.status, j.next_attempt_at,
           (j.status in ('pending', 'scheduled') or (j.status = 'delivering' and j.next_attempt_at <= now())) as publishable
    from due d join jobs j on j.id = d.job_id
  ), leased as (
    update outbox o
    set reason = 'lease',
        due_at = case when s.publishable then now() + $2::int * interval '1 millisecond' else s.next_attempt_at end
    from state s
    where o.job_id = s.job_id and (s.publishable or s.status = 'delivering')
  ), finished as (
    delete from outbox o using state s where o.job_id = s.job_id and not s.publishable and s.status <> 'delivering'
  )
  select s.job_id as id, s.event_id, s.endpoint_id, s.attempt_count, s.expires_at, e.type as event_type,
         e.payload::text as payload_json, e.created_at as event_created_at, s.reason, true as publishable
  from state s join events e on e.app_id = s.app_id and e.id = s.event_id
  where s.publishable`;

/**
 * Offers taken jobs again at once: their handling failed (database cut mid-delivery, say). Entries
 * an outcome has replaced meanwhile are left alone; a job finished meanwhile is dropped when taken.
 */
export async function releaseTaken(sql: Sql, jobIds: string[]): Promise<void> {
  if (jobIds.length === 0) return;
  await sql`update outbox set due_at = now() where job_id = any (${jobIds}::text[]) and reason = 'lease'`;
}
