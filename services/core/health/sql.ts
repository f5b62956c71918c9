import type { Sql, TxSql } from "../db/client.ts";
import type { Health } from "./circuit.ts";

/**
 * endpoint_health (migration 0008): the circuit breaker and failure run per endpoint, shared by
 * every worker. Written only off the healthy path (a failure, the first success after failures, a
 * transition); every change a worker must act on (the circuit's state, an endpoint starting or
 * ending a run of failures) is announced on this channel, so workers keep a local view without
 * polling. Payload: the endpoint id.
 */
export const CIRCUIT_CHANGED_CHANNEL = "evently_circuit_changed";

type Db = Sql | TxSql;

const columns = (sql: Db) => sql`
  endpoint_id, circuit, circuit_changed_at, circuit_retry_at, consecutive_failures, failing_since,
  window_started_at, window_attempts, window_failures, times_opened`;

export async function readHealth(sql: Db, endpointIds: string[]): Promise<Health[]> {
  if (endpointIds.length === 0) return [];
  return sql<Health[]>`select ${columns(sql)} from endpoint_health where endpoint_id = any (${endpointIds}::text[])`;
}

/**
 * Every endpoint off the healthy path (circuit not closed, or failures in its run or window): what
 * a worker reads when it starts listening, and again whenever the listening connection comes back,
 * as notifications sent meanwhile are lost. Reads the whole table, which holds a row only for
 * endpoints that ever failed; it runs that rarely.
 */
export async function readTroubled(sql: Db): Promise<Health[]> {
  return sql<Health[]>`
    select ${columns(sql)} from endpoint_health
    where circuit <> 'closed' or consecutive_failures > 0 or window_failures > 0`;
}

/**
 * In a transaction: makes sure these endpoints have a row (those deleted meanwhile are skipped) and
 * locks the rows in id order, so workers writing the same endpoints queue instead of deadlocking.
 * Returns the rows with the database's clock, which every worker then applies its observations by.
 */
export async function lockHealth(tx: TxSql, endpoints: { id: string; appId: string }[]): Promise<{ now: Date; rows: Health[] }> {
  const ids = endpoints.map((e) => e.id);
  await tx`
    insert into endpoint_health (endpoint_id, app_id)
    select u.id, u.app_id from unnest(${ids}::text[], ${endpoints.map((e) => e.appId)}::text[]) as u (id, app_id)
    where exists (select 1 from endpoints e where e.id = u.id)
    order by u.id
    on conflict (endpoint_id) do nothing`;
  const rows = await tx<(Health & { now: Date })[]>`
    select ${columns(tx)}, now() as now from endpoint_health
    where endpoint_id = any (${ids}::text[])
    order by endpoint_id
    for update`;
  const now = rows[0]?.now ?? new Date();
  return { now, rows: rows.map(({ now: _now, ...row }) => row) };
}

const iso = (d: Date | null) => d?.toISOString() ?? null;

/** Writes rows locked by lockHealth, in one statement, and announces the endpoints in `notify`. */
export async function writeHealth(tx: TxSql, rows: Health[], notify: string[]): Promise<void> {
  if (rows.length === 0) return;
  await tx`
    with u as (
      select * from unnest(
        ${rows.map((r) => r.endpointId)}::text[], ${rows.map((r) => r.circuit)}::text[],
        ${rows.map((r) => iso(r.circuitChangedAt))}::timestamptz[], ${rows.map((r) => iso(r.circuitRetryAt))}::timestamptz[],
        ${rows.map((r) => r.consecutiveFailures)}::int[], ${rows.map((r) => iso(r.failingSince))}::timestamptz[],
        ${rows.map((r) => iso(r.windowStartedAt))}::timestamptz[], ${rows.map((r) => r.windowAttempts)}::int[],
        ${rows.map((r) => r.windowFailures)}::int[], ${rows.map((r) => r.timesOpened)}::int[]
      ) as u (endpoint_id, circuit, circuit_changed_at, circuit_retry_at, consecutive_failures, failing_since,
              window_started_at, window_attempts, window_failures, times_opened)
    ), updated as (
      update endpoint_health h
      set circuit = u.circuit, circuit_changed_at = u.circuit_changed_at, circuit_retry_at = u.circuit_retry_at,
          consecutive_failures = u.consecutive_failures, failing_since = u.failing_since,
          window_started_at = u.window_started_at, window_attempts = u.window_attempts, window_failures = u.window_failures,
          times_opened = u.times_opened, updated_at = now()
      from u where h.endpoint_id = u.endpoint_id
    )
    select pg_notify(${CIRCUIT_CHANGED_CHANNEL}, n.id) from unnest(${notify}::text[]) as n (id)`;
}

/**
 * Claims the probe of an open circuit whose retry time has passed (or of a half-open one whose
 * probe's claim lapsed): the circuit becomes half-open until `leaseMs` from now. The row lock makes
 * exactly one of any number of concurrent claims win. The losers get the row as it is, and hold
 * their jobs by it; they are not notified of the claim, which they learn by trying.
 */
export async function claimProbe(sql: Db, endpointId: string, leaseMs: number): Promise<{ won: boolean; health: Health | null }> {
  const rows = await sql<(Health & { won: boolean })[]>`
    with claimed as (
      update endpoint_health
      set circuit = 'half_open', circuit_changed_at = now(),
          circuit_retry_at = now() + ${Math.round(leaseMs)}::int * interval '1 millisecond', updated_at = now()
      where endpoint_id = ${endpointId} and circuit in ('open', 'half_open') and circuit_retry_at <= now()
      returning ${columns(sql)}
    )
    select true as won, ${columns(sql)} from claimed
    union all
    select false as won, ${columns(sql)} from endpoint_health
    where endpoint_id = ${endpointId} and not exists (select 1 from claimed)`;
  const [row] = rows;
  if (!row) return { won: false, health: null };
  const { won, ...health } = row;
  return { won, health };
}
