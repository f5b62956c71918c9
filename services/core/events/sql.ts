import type { Sql, TxSql } from "../db/client.ts";
import { matchingPatterns } from "../event-types.ts";
import { eventTypeCondition } from "../routes/sql.ts";

export interface NewEventRow {
  id: string;
  /** The application the event belongs to: it fans out to that application's routes only. */
  appId: string;
  type: string;
  /** The payload, already serialised once; cast to json in SQL (text[] -> json). */
  dataJson: string;
  idempotencyKey: string | null;
  createdAt: Date;
}

export interface CreatedJob {
  id: string;
  eventId: string;
  endpointId: string;
}

export interface InsertedBatch {
  insertedEventIds: Set<string>;
  jobs: CreatedJob[];
}

/**
 * Groups up to this many rows use the prepared statement (see insertEventsWithJobs). Measured: the
 * generic plan's nested loop costs about 85 ns per pair of rows, planning about 0.5 ms; the two
 * meet near 75 rows.
 */
const PREPARED_UP_TO_ROWS = 64;

const INSERT_EVENTS_WITH_JOBS = `
  with input as (
    select * from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::text[])
      as t (id, app_id, type, data, idempotency_key, created_at, patterns)
  ), inserted as (
    insert into events (id, app_id, type, payload, idempotency_key, created_at)
    select id, app_id, type, data::json, idempotency_key, created_at from input
    on conflict do nothing
    returning id
  ), targets as (
    select distinct i.id as event_id, i.app_id, i.type, i.created_at, r.endpoint_id
    from inserted
    join input i on i.id = inserted.id
    join routes r on r.app_id = i.app_id and r.event_type = any (string_to_array(i.patterns, ' '))
    join endpoints e on e.app_id = r.app_id and e.id = r.endpoint_id and e.enabled
  ), jobs_inserted as (
    insert into jobs (id, app_id, event_id, endpoint_id, event_type, status, created_at)
    select evently_id('job'), app_id, event_id, endpoint_id, type, 'pending', created_at
    from targets
    returning id, event_id, endpoint_id, created_at
  ), outbox_inserted as (
    insert into outbox (job_id, due_at, reason)
    select id, created_at + $8::int * interval '1 millisecond', 'publish' from jobs_inserted
  )
  select 'e' as kind, id, null as event_id, null as endpoint_id from inserted
  union all
  select 'j' as kind, id, event_id, endpoint_id from jobs_inserted`;

/**
 * Inserts a batch of events and, in the same statement, one job per (event, enabled endpoint with a
 * matching route) with its outbox row, due when the fast-path grace (`graceMs`) ends. Events whose
 * idempotency key already exists are skipped, and get no jobs; so are events whose id exists, which
 * happens only when a retried transaction had in fact committed.
 * Fan-out is computed against committed routes inside the transaction, never against a cache.
 */
export async function insertEventsWithJobs(tx: TxSql | Sql, rows: NewEventRow[], graceMs: number): Promise<InsertedBatch> {
  const parameters = [
    rows.map((r) => r.id),
    rows.map((r) => r.appId),
    rows.map((r) => r.type),
    rows.map((r) => r.dataJson),
    rows.map((r) => r.idempotencyKey),
    rows.map((r) => r.createdAt.toISOString()),
    rows.map((r) => matchingPatterns(r.type).join(" ")),
    graceMs,
  ];
  // A prepared statement gets a generic plan, which cannot know how many rows the arrays hold and
  // assumes 10: it then joins the inserted events back to the input by a nested loop, which is
  // quadratic, and a group of 500 spent two thirds of its time there. Large groups are therefore
  // sent unprepared and planned for their size (about half a millisecond, one or two microseconds
  // per row); small ones, where the loop costs less than planning, keep the prepared statement.
  const result = await tx.unsafe<{ kind: "e" | "j"; id: string; eventId: string | null; endpointId: string | null }[]>(
    INSERT_EVENTS_WITH_JOBS,
    parameters as never,
    { prepare: rows.length <= PREPARED_UP_TO_ROWS },
  );
  const insertedEventIds = new Set<string>();
  const jobs: CreatedJob[] = [];
  for (const row of result) {
    if (row.kind === "e") insertedEventIds.add(row.id);
    else jobs.push({ id: row.id, eventId: row.eventId!, endpointId: row.endpointId! });
  }
  return { insertedEventIds, jobs };
}

/** An event without its payload: what lists show and what explains a skipped insert. */
export interface StoredEventSummary {
  id: string;
  appId: string;
  type: string;
  idempotencyKey: string | null;
  createdAt: Date;
}

/**
 * Stored events that explain why rows of a batch were not inserted: those holding the batch's own
 * ids (committed by an earlier try of the same batch) and those holding its idempotency keys in
 * the same application.
 */
export async function findExisting(
  sql: TxSql | Sql,
  skipped: Pick<NewEventRow, "id" | "appId" | "idempotencyKey">[],
): Promise<StoredEventSummary[]> {
  if (skipped.length === 0) return [];
  const keyed = skipped.filter((r) => r.idempotencyKey !== null);
  return sql<StoredEventSummary[]>`
    select id, app_id, type, idempotency_key, created_at from events
    where (app_id, id) in (select * from unnest(${skipped.map((r) => r.appId)}::text[], ${skipped.map((r) => r.id)}::text[]))
       or (app_id, idempotency_key) in (
            select * from unnest(${keyed.map((r) => r.appId)}::text[], ${keyed.map((r) => r.idempotencyKey)}::text[]))`;
}

/**
 * Of rows skipped because their idempotency key exists, the ids of those whose type or payload
 * differ from the stored event's: the key was reused for another request. Payloads are compared
 * as jsonb, so key order and white space do not count as a difference. Runs only for replays.
 */
export async function findKeyMismatches(
  sql: TxSql | Sql,
  replays: Pick<NewEventRow, "id" | "appId" | "idempotencyKey" | "type" | "dataJson">[],
): Promise<Set<string>> {
  if (replays.length === 0) return new Set();
  const rows = await sql<{ id: string }[]>`
    select r.id from unnest(${replays.map((r) => r.id)}::text[], ${replays.map((r) => r.appId)}::text[],
                            ${replays.map((r) => r.idempotencyKey)}::text[], ${replays.map((r) => r.type)}::text[],
                            ${replays.map((r) => r.dataJson)}::text[])
      as r (id, app_id, key, type, data)
    join events e on e.app_id = r.app_id and e.idempotency_key = r.key
    where e.type <> r.type or e.payload::jsonb <> r.data::jsonb`;
  return new Set(rows.map((r) => r.id));
}

// ---- Reads for the API (appended; the statements above are the ingest hot path) ----

export interface StoredEvent extends StoredEventSummary {
  /** The payload as stored, read as text: the client's camelCase transform must not touch user keys. */
  dataJson: string;
}

export async function findEvent(sql: TxSql | Sql, appId: string, id: string): Promise<StoredEvent | null> {
  const [row] = await sql<StoredEvent[]>`
    select id, app_id, type, idempotency_key, created_at, payload::text as data_json from events
    where app_id = ${appId} and id = ${id}`;
  return row ?? null;
}

export interface EventListFilter {
  /** An event type pattern: exact, `prefix.*` or `*` (see event-types.ts). */
  eventType?: string;
  since?: Date;
  until?: Date;
  /** The last id of the previous page; lists run newest first. */
  before?: string;
  limit: number;
}

export async function listEvents(sql: TxSql | Sql, appId: string, filter: EventListFilter): Promise<StoredEventSummary[]> {
  return sql<StoredEventSummary[]>`
    select id, app_id, type, idempotency_key, created_at from events
    where app_id = ${appId}
      ${eventTypeCondition(sql, "type", filter.eventType)}
      ${filter.since ? sql`and created_at >= ${filter.since}` : sql``}
      ${filter.until ? sql`and created_at < ${filter.until}` : sql``}
      ${filter.before ? sql`and id < ${filter.before}` : sql``}
    order by id desc
    limit ${filter.limit}`;
}
