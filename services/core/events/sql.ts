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
  /** Jobs not delivered this long after createdAt end `expired`; null: the endpoint's default TTL, if any. */
  ttlSeconds: number | null;
  /** The accepting request span's W3C traceparent, only when it was recorded (migration 0011). */
  traceParent?: string | null;
}

export interface CreatedJob {
  id: string;
  eventId: string;
  endpointId: string;
  /** When the job expires undelivered (the event's or the endpoint's TTL); null: never. */
  expiresAt: Date | null;
}

export interface InsertedBatch {
  insertedEventIds: Set<string>;
  jobs: CreatedJob[];
  /** Jobs the statement made claimed for the consumer `claimFor` offered room in; empty: none. */
  claimedJobIds: Set<string>;
}

/** Room a consumer offered the committing process (queue/transport.ts `CommitConsumer`). */
export interface CommitClaim {
  /** Most jobs it may be given: a statement that makes more claims this many of them. */
  maxJobs: number;
  /** The lease of each claim (WORKER_LEASE_MS), as the take's. */
  leaseMs: number;
  /** When more jobs are made than `maxJobs`, claim none (CommitConsumer.allOrNone). */
  allOrNone?: boolean;
}

/**
 * The session settings of the connections group commits go through (runtime.ts gives ingest a
 * small pool of its own): the ingest statement always runs from a generic plan, one for each of
 * its two texts (eventInput). Left to choose (plan_cache_mode auto), Postgres went back to
 * planning it afresh on every call once an application had about a hundred routes: measured in the
 * active-endpoints curve (Postgres transport, 500 events/s), its bind step took 1.03-1.04 ms per
 * call at 100 and 1,000 endpoints against 0.08-0.12 ms at 1 and 10, and Postgres's CPU per
 * delivery grew 1.26 → 1.72 core·ms from 1 to 1,000 endpoints; with generic plans forced it stayed
 * 1.33-1.44. Groups of more than one go through evently_event_input precisely so that one generic
 * plan is right for every size of them.
 */
export const INGEST_SESSION: Record<string, string> = { plan_cache_mode: "force_generic_plan" };

/**
 * Inserts a batch of events and, in the same statement, one job per (event, enabled endpoint with a
 * matching route) with its outbox row, due when the fast-path grace (`graceMs`) ends. Events whose
 * idempotency key already exists are skipped, and get no jobs; so are events whose id exists, which
 * happens only when a retried transaction had in fact committed.
 * Fan-out is computed against committed routes inside the transaction, never against a cache; an
 * endpoint deleted while the statement runs gets no job (its delete and this statement take turns
 * on the endpoint's row).
 *
 * A group of more than one event is read through evently_event_input (migrations 0007, 0011), a
 * PL/pgSQL function: its declared row estimate is the same for every group, so Postgres settles on
 * one generic plan for all sizes (a group of one has a text of its own: eventInput). Over a plain
 * unnest the estimate follows each group's size, and small groups were planned afresh on every
 * call (custom plans): measured on the statement alone (loadtest/bench/ingest-statement.ts),
 * groups of 1 and 4 cost 874-991 and 331-379 µs of Postgres CPU per event that way, against
 * 375-453 and 170-216 through the function; 14 and 64 the same.
 *
 * `notifyChannel`: when the statement makes jobs, it also NOTIFYs this channel, so the wake-up goes
 * out with the commit itself (the Postgres transport's workers LISTEN on it; `commitNotify` in
 * queue/transport.ts). As a statement of its own after the commit, it cost a round trip and a
 * durable commit more per group.
 *
 * `claimFor`: a consumer offered the committing process room (the Postgres transport's worker in
 * the same process, or one connected for the hand-over, on either transport). The jobs that fit in
 * it are made claimed, as a take would leave them: `delivering` under a lease, their outbox entry a
 * `lease` due when it lapses. The caller hands them over, so they need no wake-up and no take, or
 * no publish and no claim; if that fails, the leases lapse and the jobs are taken, or published,
 * again then. The rest are made as usual, and the statement notifies only when there are any. It
 * claims those that fit, not none, when a group makes more (unless `allOrNone`): at the edge of a
 * worker's capacity its room frees a few jobs at a time, and groups of batched events went whole
 * to the take (BENCHMARKS.md, "The take leaves commits their room").
 */
export async function insertEventsWithJobs(
  tx: TxSql | Sql,
  rows: NewEventRow[],
  graceMs: number,
  notifyChannel: string | null = null,
  claimFor: CommitClaim | null = null,
): Promise<InsertedBatch> {
  const result = await tx<{ kind: "e" | "j"; id: string; eventId: string | null; endpointId: string | null; expiresAt: Date | null; claimed: boolean }[]>`
    with input as (${eventInput(tx, rows)}
    ), inserted as (
      insert into events (id, app_id, type, payload, idempotency_key, created_at, trace_parent)
      select id, app_id, type, data::json, idempotency_key, created_at, trace_parent from input
      on conflict do nothing
      returning id
    ), routed as (
      -- The endpoints each (application, type) of the group fans out to, looked up once per pair
      -- rather than once per event: a group of single events is mostly one type.
      -- One index probe of routes (app_id, event_type) per pattern, in a subquery kept apart from
      -- the join (offset 0) so it stays one whatever the estimates. Joined directly as
      -- event_type = any (patterns), it was planned as a hash join on app_id with the patterns as a
      -- filter run for every (event, route of the application) pair: about 0.3 µs each, so 0.35 ms
      -- per event at 1,100 routes and 1.5 ms at 5,000; only past ~50,000 did the plan use the index.
      -- Distinct: an endpoint two of a type's patterns route to gets one job.
      -- Each endpoint routed to is locked for key share until the commit, in place of the foreign
      -- key jobs no longer have (migration 0016): a delete of the endpoint waits for this statement
      -- and then deletes the jobs it made; one that got there first is waited for, and its endpoint
      -- skipped. One lock per route probed, where the key's check locked the endpoint once per job.
      select distinct t.app_id, t.type, m.endpoint_id, m.ttl_seconds
      from (select distinct app_id, type, patterns from input) t
      cross join lateral unnest(string_to_array(t.patterns, ' ')) as p (pattern)
      cross join lateral (
        select r.endpoint_id, e.ttl_seconds from routes r
        join endpoints e on e.app_id = r.app_id and e.id = r.endpoint_id and e.enabled
        where r.app_id = t.app_id and r.event_type = p.pattern
        offset 0
        for key share of e
      ) m
    ), targets as (
      select i.id as event_id, i.app_id, i.type, i.created_at, rt.endpoint_id,
             i.created_at + make_interval(secs => coalesce(i.ttl_seconds, rt.ttl_seconds)) as expires_at,
             row_number() over () as n
      from inserted
      join input i on i.id = inserted.id
      join routed rt on rt.app_id = i.app_id and rt.type = i.type
    ), claim as (
      -- One row: how many of the jobs go, claimed, to the committing process's consumer (claimFor).
      select case when ${claimFor?.allOrNone ?? false}::bool and (select count(*) from targets) > ${claimFor?.maxJobs ?? 0}::int then 0
                  else ${claimFor?.maxJobs ?? 0}::int end as max_jobs,
             now() + ${claimFor?.leaseMs ?? 0}::int * interval '1 millisecond' as lease_until
    ), jobs_inserted as (
      insert into jobs (id, app_id, event_id, endpoint_id, event_type, status, next_attempt_at, created_at, expires_at)
      select evently_id('job'), t.app_id, t.event_id, t.endpoint_id, t.type,
             case when t.n <= c.max_jobs then 'delivering' else 'pending' end, case when t.n <= c.max_jobs then c.lease_until end,
             t.created_at, t.expires_at
      from targets t cross join claim c
      returning id, event_id, endpoint_id, created_at, expires_at, status = 'delivering' as claimed
    ), outbox_inserted as (
      insert into outbox (job_id, due_at, reason)
      select j.id, case when j.claimed then c.lease_until else j.created_at + ${graceMs} * interval '1 millisecond' end,
             case when j.claimed then 'lease' else 'publish' end
      from jobs_inserted j cross join claim c
    ), woken as (
      -- Always one row, so joining it keeps the rows of inserted; the notification is sent at commit.
      select count(*) as notified from (
        select pg_notify(${notifyChannel}::text, '') from (select 1 from jobs_inserted where not claimed limit 1) made
        where ${notifyChannel}::text is not null
      ) n
    )
    select 'e' as kind, id, null as event_id, null as endpoint_id, null::timestamptz as expires_at, false as claimed
    from inserted cross join woken
    union all
    select 'j' as kind, j.id, j.event_id, j.endpoint_id, j.expires_at, j.claimed from jobs_inserted j`;
  const insertedEventIds = new Set<string>();
  const claimedJobIds = new Set<string>();
  const jobs: CreatedJob[] = [];
  for (const row of result) {
    if (row.kind === "e") insertedEventIds.add(row.id);
    else {
      jobs.push({ id: row.id, eventId: row.eventId!, endpointId: row.endpointId!, expiresAt: row.expiresAt });
      if (row.claimed) claimedJobIds.add(row.id);
    }
  }
  return { insertedEventIds, jobs, claimedJobIds };
}

/**
 * The ingest statement's input rows. A group of one event (most groups at low rates, where a
 * request finds no commit running) is one row of parameters: a plan that knows it has one row runs
 * nested loops where the function's estimate of 100 builds hash tables, and it skips the PL/pgSQL
 * call. Measured on the statement alone (ingest-statement.ts, groups of 1, interleaved with the
 * function for every group): a median of 572 against 662 µs of Postgres CPU per event with claims
 * (`--claim`), 581 against 688 without. Larger groups go through evently_event_input. The two
 * texts are two prepared statements, each with its own generic plan.
 */
function eventInput(tx: TxSql | Sql, rows: NewEventRow[]) {
  if (rows.length === 1) {
    const r = rows[0]!;
    return tx`
      select ${r.id}::text as id, ${r.appId}::text as app_id, ${r.type}::text as type, ${r.dataJson}::text as data,
             ${r.idempotencyKey}::text as idempotency_key, ${r.createdAt.toISOString()}::timestamptz as created_at,
             ${matchingPatterns(r.type).join(" ")}::text as patterns, ${r.ttlSeconds}::int as ttl_seconds,
             ${r.traceParent ?? null}::text as trace_parent`;
  }
  return tx`
      select * from evently_event_input(
        ${rows.map((r) => r.id)}::text[], ${rows.map((r) => r.appId)}::text[], ${rows.map((r) => r.type)}::text[],
        ${rows.map((r) => r.dataJson)}::text[],
        ${rows.map((r) => r.idempotencyKey)}::text[], ${rows.map((r) => r.createdAt.toISOString())}::timestamptz[],
        ${rows.map((r) => matchingPatterns(r.type).join(" "))}::text[], ${rows.map((r) => r.ttlSeconds)}::int[],
        ${rows.map((r) => r.traceParent ?? null)}::text[]
      )`;
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
