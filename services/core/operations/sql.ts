import type { Sql, TxSql } from "../db/client.ts";
import type { OperationKind, OperationState, Selection } from "./params.ts";

type Db = Sql | TxSql;

export interface OperationRow {
  id: string;
  appId: string;
  kind: OperationKind;
  /** jsonb, read back as stored (keys untouched by the client's camelCase transform). */
  params: unknown;
  state: OperationState;
  /** Jobs to replay, counted when the operation starts; null while queued. Exact once finished. */
  total: number | null;
  done: number;
  failed: number;
  /** The last job id handled: where the next step resumes, after a restart too. */
  cursor: string | null;
  error: string | null;
  createdAt: Date;
  updatedAt: Date;
  finishedAt: Date | null;
}

const COLUMNS = "id, app_id, kind, params, state, total, done, failed, cursor, error, created_at, updated_at, finished_at";

// ---- The API's statements ----

export async function insertOperation(sql: Db, op: { id: string; appId: string; kind: OperationKind; params: Record<string, unknown> }): Promise<OperationRow> {
  const [row] = await sql<OperationRow[]>`
    insert into operations (id, app_id, kind, params) values (${op.id}, ${op.appId}, ${op.kind}, ${sql.json(op.params as never)})
    returning ${sql.unsafe(COLUMNS)}`;
  return row!;
}

export async function findOperation(sql: Db, appId: string, id: string): Promise<OperationRow | null> {
  const [row] = await sql<OperationRow[]>`select ${sql.unsafe(COLUMNS)} from operations where app_id = ${appId} and id = ${id}`;
  return row ?? null;
}

export interface OperationListFilter {
  kind?: OperationKind;
  state?: OperationState;
  /** The last id of the previous page; lists run newest first. */
  before?: string;
  limit: number;
}

export async function listOperations(sql: Db, appId: string, filter: OperationListFilter): Promise<OperationRow[]> {
  return sql<OperationRow[]>`
    select ${sql.unsafe(COLUMNS)} from operations
    where app_id = ${appId}
      ${filter.kind ? sql`and kind = ${filter.kind}` : sql``}
      ${filter.state ? sql`and state = ${filter.state}` : sql``}
      ${filter.before ? sql`and id < ${filter.before}` : sql``}
    order by id desc
    limit ${filter.limit}`;
}

/**
 * Cancels a queued or running operation; null when it is not (any more). A runner in the middle of
 * a step holds the row: the cancel waits for that step to commit, and then finds the state it left.
 * Jobs already replayed stay replayed.
 */
export async function cancelOperation(sql: Db, appId: string, id: string): Promise<OperationRow | null> {
  const [row] = await sql<OperationRow[]>`
    update operations set state = 'cancelled', finished_at = now(), updated_at = now()
    where app_id = ${appId} and id = ${id} and state in ('queued', 'running')
    returning ${sql.unsafe(COLUMNS)}`;
  return row ?? null;
}

// ---- The runner's statements (runner.ts), each inside a step's transaction ----

/**
 * Locks the oldest operation with work left whose next step is due: queued, or running and last
 * stepped at least `paceMs` ago (so an operation replays at most its batch per pace, however many
 * runners there are). SKIP LOCKED: a runner never waits for, or takes, another runner's operation.
 */
export async function lockNextOperation(tx: TxSql, paceMs: number): Promise<OperationRow | null> {
  const [row] = await tx<OperationRow[]>`
    select ${tx.unsafe(COLUMNS)} from operations
    where state in ('queued', 'running')
      and (state = 'queued' or updated_at <= now() - ${paceMs}::int * interval '1 millisecond')
    order by id
    limit 1
    for update skip locked`;
  return row ?? null;
}

/** The jobs a selection names, after `cursor` when given. */
function selected(tx: TxSql, appId: string, s: Selection, cursor: string | null) {
  const where =
    s.kind === "replay_event"
      ? tx`j.app_id = ${appId} and j.event_id = ${s.eventId}`
      : tx`j.app_id = ${appId} and j.endpoint_id = ${s.endpointId} and j.created_at >= ${s.since} and j.created_at < ${s.until}`;
  return tx`${where} and j.status = any (${s.statuses as string[]}::text[]) ${cursor ? tx`and j.id > ${cursor}` : tx``}`;
}

/** How many jobs the selection holds now: the operation's total when it starts. */
export async function countSelected(tx: TxSql, appId: string, selection: Selection): Promise<number> {
  const [row] = await tx<{ n: number }[]>`select count(*)::int as n from jobs j where ${selected(tx, appId, selection, null)}`;
  return row!.n;
}

export interface Candidate {
  id: string;
  /** A disabled endpoint's replayed job would only be cancelled again: it is counted as failed instead. */
  endpointEnabled: boolean;
}

/**
 * The next `limit` jobs of the selection in id order after `cursor`, locked until the step
 * commits, so what is counted is what is replayed.
 */
export async function nextSelected(tx: TxSql, appId: string, selection: Selection, cursor: string | null, limit: number): Promise<Candidate[]> {
  return tx<Candidate[]>`
    select j.id, e.enabled as endpoint_enabled from jobs j join endpoints e on e.id = j.endpoint_id
    where ${selected(tx, appId, selection, cursor)}
    order by j.id
    limit ${limit}
    for update of j`;
}

export interface Progress {
  state: "running" | "completed" | "failed";
  total: number | null;
  done: number;
  failed: number;
  cursor: string | null;
  error?: string | null;
}

/** Writes a step's progress, in the step's transaction: a restart resumes from exactly this. */
export async function recordProgress(tx: TxSql, id: string, p: Progress): Promise<void> {
  await tx`
    update operations
    set state = ${p.state}, total = ${p.total}, done = ${p.done}, failed = ${p.failed}, cursor = ${p.cursor},
        error = ${p.error ?? null}, updated_at = now(),
        finished_at = case when ${p.state}::text in ('completed', 'failed') then now() else null end
    where id = ${id}`;
}
