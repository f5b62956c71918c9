import type { Sql, TxSql } from "../db/client.ts";
import { patternMatch } from "../event-types.ts";
import { eventTypeCondition } from "../routes/sql.ts";

export const ERROR_CLASSES = [
  "timeout",
  "connection_refused",
  "dns",
  "tls",
  "network",
  "http_status",
  "blocked_address",
  "invalid_url",
  "endpoint_disabled",
] as const;
export type ErrorClass = (typeof ERROR_CLASSES)[number];

/** What an attempt list can filter on: `succeeded` has no error class (a 2xx), `failed` has one. */
export const ATTEMPT_OUTCOMES = ["succeeded", "failed"] as const;
export type AttemptOutcome = (typeof ATTEMPT_OUTCOMES)[number];

export interface AttemptRow {
  id: string;
  appId: string;
  jobId: string;
  eventId: string;
  endpointId: string;
  attemptNumber: number;
  /** The endpoint's url, its password redacted (core/redact.ts). */
  url: string;
  /** Headers as sent, with the signature and secret-bearing headers redacted (core/redact.ts). */
  requestHeaders: Record<string, string>;
  responseStatus: number | null;
  responseBody: string | null;
  durationMs: number;
  errorClass: ErrorClass | null;
  errorDetail: string | null;
  createdAt: Date;
}

/**
 * The statement that writes a batch of attempts; an attempt already written is skipped, so a
 * write retried after a lost acknowledgement is harmless. Composed into recordOutcomes, which
 * passes the ids of the batch's jobs it has locked as `existingJobs`: an attempt whose job is gone
 * (its endpoint or application was deleted while the request was out, and the job with it) is
 * dropped, not written: with the foreign key attempts had then, it failed the whole batch on every
 * retry; without it (migration 0017), it would be left without its job.
 */
export function attemptsInsert(sql: Sql | TxSql, rows: AttemptRow[], existingJobs: ReturnType<Sql["unsafe"]>) {
  return sql`
    insert into attempts (id, app_id, job_id, event_id, endpoint_id, attempt_number, url, request_headers,
                          response_status, response_body, duration_ms, error_class, error_detail, created_at)
    select * from unnest(
      ${rows.map((r) => r.id)}::text[], ${rows.map((r) => r.appId)}::text[], ${rows.map((r) => r.jobId)}::text[],
      ${rows.map((r) => r.eventId)}::text[],
      ${rows.map((r) => r.endpointId)}::text[], ${rows.map((r) => r.attemptNumber)}::int[], ${rows.map((r) => r.url)}::text[],
      ${rows.map((r) => JSON.stringify(r.requestHeaders))}::text[]::json[],
      ${rows.map((r) => r.responseStatus)}::int[], ${rows.map((r) => r.responseBody)}::text[],
      ${rows.map((r) => r.durationMs)}::int[], ${rows.map((r) => r.errorClass)}::text[],
      ${rows.map((r) => r.errorDetail)}::text[], ${rows.map((r) => r.createdAt.toISOString())}::timestamptz[])
      as a (id, app_id, job_id, event_id, endpoint_id, attempt_number, url, request_headers,
            response_status, response_body, duration_ms, error_class, error_detail, created_at)
    where a.job_id in (${existingJobs})
    on conflict (id) do nothing`;
}

// ---- Reads for the API (the statements above are the delivery path) ----

// request_headers is read as text and parsed here, so header names come back exactly as sent.
const selectAttempts = (sql: Sql | TxSql) => sql`
  select a.id, a.app_id, a.job_id, a.event_id, a.endpoint_id, a.attempt_number, a.url, a.request_headers::text as request_headers_json,
         a.response_status, a.response_body, a.duration_ms, a.error_class, a.error_detail, a.created_at
  from attempts a`;

type RawAttemptRow = Omit<AttemptRow, "requestHeaders"> & { requestHeadersJson: string };

function fromRaw({ requestHeadersJson, ...rest }: RawAttemptRow): AttemptRow {
  return { ...rest, requestHeaders: JSON.parse(requestHeadersJson) };
}

/** Every attempt of one job, in order. */
export async function listAttemptsForJob(sql: Sql | TxSql, appId: string, jobId: string): Promise<AttemptRow[]> {
  const rows = await sql<RawAttemptRow[]>`${selectAttempts(sql)} where a.app_id = ${appId} and a.job_id = ${jobId} order by a.id`;
  return rows.map(fromRaw);
}

export interface AttemptListFilter {
  endpointId?: string;
  /** `succeeded`: no error class (a 2xx); `failed`: anything else. */
  outcome?: AttemptOutcome;
  /** An event type pattern (exact, `prefix.*` or `*`), matched against the attempt's job. */
  eventType?: string;
  since?: Date;
  until?: Date;
  /** The last id of the previous page; lists run newest first. */
  before?: string;
  limit: number;
}

export async function listAttempts(sql: Sql | TxSql, appId: string, filter: AttemptListFilter): Promise<AttemptRow[]> {
  const rows = await sql<RawAttemptRow[]>`
    ${selectAttempts(sql)}
    ${filter.eventType && patternMatch(filter.eventType).kind !== "all" ? sql`join jobs j on j.id = a.job_id` : sql``}
    where a.app_id = ${appId}
      ${filter.endpointId ? sql`and a.endpoint_id = ${filter.endpointId}` : sql``}
      ${filter.outcome === "succeeded" ? sql`and a.error_class is null` : sql``}
      ${filter.outcome === "failed" ? sql`and a.error_class is not null` : sql``}
      ${eventTypeCondition(sql, "j.event_type", filter.eventType)}
      ${filter.since ? sql`and a.created_at >= ${filter.since}` : sql``}
      ${filter.until ? sql`and a.created_at < ${filter.until}` : sql``}
      ${filter.before ? sql`and a.id < ${filter.before}` : sql``}
    order by a.id desc
    limit ${filter.limit}`;
  return rows.map(fromRaw);
}
