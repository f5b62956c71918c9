import type { Sql, TxSql } from "../db/client.ts";

/** Why the dispatcher owes RabbitMQ a message for a job (see migration 0002). */
export type OutboxReason = "publish" | "retry" | "lease";

/** A job the sweeper took from the outbox, with what its message needs. */
export interface SweptJob {
  id: string;
  eventId: string;
  endpointId: string;
  attemptCount: number;
  eventType: string;
  payloadJson: string;
  eventCreatedAt: Date;
  reason: OutboxReason;
  /** False when there is nothing left to send: the job finished, or a live worker holds its claim. */
  publishable: boolean;
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
      select j.id, j.event_id, j.endpoint_id, j.attempt_count, e.type as event_type,
             e.payload::text as payload_json, e.created_at as event_created_at, o.reason,
             (j.status in ('pending', 'scheduled') or (j.status = 'delivering' and j.next_attempt_at <= now())) as publishable
      from (select job_id, reason from outbox where due_at <= now() order by due_at limit ${limit} for update skip locked) o
      join jobs j on j.id = o.job_id
      join events e on e.id = j.event_id`;
    if (swept.length === 0) return swept;
    await publish(swept.filter((job) => job.publishable));
    await tx`delete from outbox where job_id = any (${swept.map((job) => job.id)}::text[])`;
    return swept;
  });
}
