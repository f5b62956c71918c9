import type { Sql, TxSql } from "../db/client.ts";
import type { RetryPolicy } from "../delivery/retry-policy.ts";
import { deleteJobsOf } from "../jobs/sql.ts";

export type Ordering = "unordered" | "fifo";

/** The columns a caller may set; `secret` only on insert and rotation. */
export interface EndpointValues {
  url: string;
  description: string;
  enabled: boolean;
  timeoutMs: number | null;
  headers: Record<string, string>;
  rateLimitPerSecond: number | null;
  metadata: Record<string, string>;
  /** Null: the installation's default policy. */
  retryPolicy: RetryPolicy | null;
  ordering: Ordering;
  /** Default TTL of the endpoint's jobs when the event carries none; null: none. */
  ttlSeconds: number | null;
}

/** Circuit breaker state as the workers share it (endpoint_health); closed with zero counts when never written. */
export interface CircuitView {
  state: "closed" | "open" | "half_open";
  since: Date | null;
  /** Open: when a probe may go; half-open: when the probe's claim lapses; closed: null. */
  retryAt: Date | null;
  consecutiveFailures: number;
  timesOpened: number;
  /** When the current run of failures began; null when the endpoint is healthy. */
  failingSince: Date | null;
}

/**
 * An endpoint as the API shows it: everything but the secrets, plus the event types routed to it and,
 * while a rotation's grace window is open, when the previous secret stops signing (else null).
 */
export interface EndpointRow extends EndpointValues {
  id: string;
  paused: boolean;
  /** Why the endpoint is paused or disabled (operator, 410 Gone, auto-disable); null when active. */
  statusReason: string | null;
  statusChangedAt: Date | null;
  circuit: CircuitView;
  eventTypes: string[];
  /** The endpoint's latest attempt, null before the first. */
  lastAttempt: LastAttempt | null;
  previousSecretExpiresAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
}

/** What the latest attempt tells about an endpoint: when, and how it ended (errorClass null: delivered). */
export interface LastAttempt {
  at: Date;
  responseStatus: number | null;
  errorClass: string | null;
  errorDetail: string | null;
}

type Db = Sql | TxSql;

interface RawEndpointRow extends Omit<EndpointRow, "headers" | "metadata" | "lastAttempt" | "retryPolicy" | "circuit"> {
  headersJson: string;
  metadataJson: string;
  retryPolicyJson: string | null;
  circuitState: CircuitView["state"] | null;
  circuitChangedAt: Date | null;
  circuitRetryAt: Date | null;
  consecutiveFailures: number | null;
  timesOpened: number | null;
  failingSince: Date | null;
  lastAttemptAt: Date | null;
  lastResponseStatus: number | null;
  lastErrorClass: string | null;
  lastErrorDetail: string | null;
}

// jsonb columns are read as text and parsed here, so user keys (`x_api_key`) come back verbatim
// whatever the client's transforms: today it camelCases column names only (db/client.ts), and a
// value transform added there later must not reach into users' headers and metadata.
const selectEndpoints = (sql: Db) => sql`
  select e.id, e.url, e.description, e.enabled, e.timeout_ms, e.headers::text as headers_json,
         e.rate_limit_per_second, e.metadata::text as metadata_json, e.created_at, e.updated_at,
         e.retry_policy::text as retry_policy_json, e.ordering, e.ttl_seconds, e.paused, e.status_reason, e.status_changed_at,
         h.circuit as circuit_state, h.circuit_retry_at, h.consecutive_failures, h.times_opened, h.failing_since,
         -- The row is made at the first failure; the circuit changed state only if it ever opened.
         case when h.times_opened > 0 or h.circuit <> 'closed' then h.circuit_changed_at end as circuit_changed_at,
         case when e.previous_secret_expires_at > now() then e.previous_secret_expires_at end as previous_secret_expires_at,
         array(select r.event_type from routes r where r.endpoint_id = e.id order by r.event_type) as event_types,
         last.created_at as last_attempt_at, last.response_status as last_response_status,
         last.error_class as last_error_class, last.error_detail as last_error_detail
  from endpoints e
  left join endpoint_health h on h.endpoint_id = e.id
  left join lateral (
    select a.created_at, a.response_status, a.error_class, a.error_detail from attempts a
    where a.endpoint_id = e.id order by a.id desc limit 1
  ) last on true`;

function fromRaw(raw: RawEndpointRow): EndpointRow {
  const {
    headersJson, metadataJson, retryPolicyJson, lastAttemptAt, lastResponseStatus, lastErrorClass, lastErrorDetail,
    circuitState, circuitChangedAt, circuitRetryAt, consecutiveFailures, timesOpened, failingSince, ...rest
  } = raw;
  const lastAttempt =
    lastAttemptAt === null
      ? null
      : { at: lastAttemptAt, responseStatus: lastResponseStatus, errorClass: lastErrorClass, errorDetail: lastErrorDetail };
  const circuit: CircuitView = {
    state: circuitState ?? "closed",
    since: circuitChangedAt,
    retryAt: circuitRetryAt,
    consecutiveFailures: consecutiveFailures ?? 0,
    timesOpened: timesOpened ?? 0,
    failingSince,
  };
  return {
    ...rest,
    headers: JSON.parse(headersJson),
    metadata: JSON.parse(metadataJson),
    retryPolicy: retryPolicyJson === null ? null : JSON.parse(retryPolicyJson),
    lastAttempt,
    circuit,
  };
}

export async function insertEndpoint(sql: Db, appId: string, id: string, secret: string, values: EndpointValues): Promise<void> {
  await sql`
    insert into endpoints (id, app_id, url, description, secret, enabled, timeout_ms, headers, rate_limit_per_second, metadata,
                           retry_policy, ordering, ttl_seconds)
    values (${id}, ${appId}, ${values.url}, ${values.description}, ${secret}, ${values.enabled}, ${values.timeoutMs},
            ${sql.json(values.headers)}, ${values.rateLimitPerSecond}, ${sql.json(values.metadata)},
            ${values.retryPolicy === null ? null : sql.json(values.retryPolicy)}, ${values.ordering}, ${values.ttlSeconds})`;
}

export async function findEndpoint(sql: Db, appId: string, id: string): Promise<EndpointRow | null> {
  const [row] = await sql<RawEndpointRow[]>`${selectEndpoints(sql)} where e.app_id = ${appId} and e.id = ${id}`;
  return row ? fromRaw(row) : null;
}

/** Newest first; `before` is the last id of the previous page. */
export async function listEndpoints(sql: Db, appId: string, page: { before?: string; limit: number }): Promise<EndpointRow[]> {
  const rows = await sql<RawEndpointRow[]>`
    ${selectEndpoints(sql)}
    where e.app_id = ${appId} ${page.before ? sql`and e.id < ${page.before}` : sql``}
    order by e.id desc
    limit ${page.limit}`;
  return rows.map(fromRaw);
}

/**
 * Locks the row for a read-modify-write, so concurrent partial updates do not lose each other. With
 * the values comes `paused`, which a PATCH may change too (through changeEndpointStatus).
 */
export async function lockEndpointValues(tx: TxSql, appId: string, id: string): Promise<(EndpointValues & { paused: boolean }) | null> {
  const [row] = await tx<
    (Omit<EndpointValues, "headers" | "metadata" | "retryPolicy"> & {
      paused: boolean;
      headersJson: string;
      metadataJson: string;
      retryPolicyJson: string | null;
    })[]
  >`
    select url, description, enabled, paused, timeout_ms, headers::text as headers_json, rate_limit_per_second,
           metadata::text as metadata_json, retry_policy::text as retry_policy_json, ordering, ttl_seconds
    from endpoints where app_id = ${appId} and id = ${id}
    for update`;
  if (!row) return null;
  const { headersJson, metadataJson, retryPolicyJson, ...rest } = row;
  return {
    ...rest,
    headers: JSON.parse(headersJson),
    metadata: JSON.parse(metadataJson),
    retryPolicy: retryPolicyJson === null ? null : JSON.parse(retryPolicyJson),
  };
}

/** Writes the values but `enabled`: a status change goes through changeEndpointStatus, which records why. */
export async function updateEndpoint(sql: Db, appId: string, id: string, values: Omit<EndpointValues, "enabled">): Promise<void> {
  await sql`
    update endpoints
    set url = ${values.url}, description = ${values.description},
        timeout_ms = ${values.timeoutMs}, headers = ${sql.json(values.headers)},
        rate_limit_per_second = ${values.rateLimitPerSecond}, metadata = ${sql.json(values.metadata)},
        retry_policy = ${values.retryPolicy === null ? null : sql.json(values.retryPolicy)}, ordering = ${values.ordering},
        ttl_seconds = ${values.ttlSeconds},
        updated_at = now()
    where app_id = ${appId} and id = ${id}`;
}

/** What the API shows as `status`: disabled wins over paused (disabling ends a pause). */
export type EndpointStatus = "active" | "paused" | "disabled";

export interface StatusChange {
  to: EndpointStatus;
  /** The reason given with the change; null when none was given. */
  reason: string | null;
  /** Recorded when the status changes and no reason was given ("paused by operator"). */
  defaultReason: string | null;
}

/**
 * Moves an endpoint to a status, and says which it had (null: no such endpoint). A change records
 * its reason (given, else the default) and when; `active` clears the reason. A repeat (the status it
 * has) keeps status_changed_at, and its reason unless a new one is given, so repeating a call is
 * harmless. Leaving `disabled` also forgets the endpoint's circuit and failure run (endpoint_health):
 * an endpoint enabled after being auto-disabled would otherwise count its next failure as the
 * continuation of a run days old, and be disabled again at once. Workers see the change through
 * the endpoint cache's notification (trigger on endpoints).
 */
export async function changeEndpointStatus(sql: Db, appId: string, id: string, change: StatusChange): Promise<EndpointStatus | null> {
  const { to, reason, defaultReason } = change;
  const [row] = await sql<{ previous: EndpointStatus }[]>`
    with old as (
      select id, case when not enabled then 'disabled' when paused then 'paused' else 'active' end as status, status_reason
      from endpoints where app_id = ${appId} and id = ${id}
      for no key update
    ), health_reset as (
      delete from endpoint_health h using old where h.endpoint_id = old.id and old.status = 'disabled' and ${to}::text <> 'disabled'
    )
    update endpoints e
    set enabled = ${to}::text <> 'disabled',
        paused = ${to}::text = 'paused',
        status_reason = case when ${to}::text = 'active' then null
                             when old.status = ${to}::text then coalesce(${reason}::text, old.status_reason)
                             else coalesce(${reason}::text, ${defaultReason}::text) end,
        status_changed_at = case when old.status = ${to}::text then e.status_changed_at else now() end,
        updated_at = case when old.status = ${to}::text and ${reason}::text is null then e.updated_at else now() end
    from old
    where e.id = old.id
    returning old.status as previous`;
  return row?.previous ?? null;
}

/** Locks the endpoint's row and reads its status, for a change that depends on it; null: no such endpoint. */
export async function lockEndpointStatus(tx: TxSql, appId: string, id: string): Promise<EndpointStatus | null> {
  const [row] = await tx<{ status: EndpointStatus }[]>`
    select case when not enabled then 'disabled' when paused then 'paused' else 'active' end as status
    from endpoints where app_id = ${appId} and id = ${id}
    for no key update`;
  return row?.status ?? null;
}

/**
 * Disables an enabled endpoint on the workers' behalf (410 Gone, sustained failure) and returns
 * when; null when it was disabled already (by an operator, or another worker a moment ago: only
 * one of several concurrent disables wins, so the change is reported once) or is gone.
 */
export async function disableEnabledEndpoint(sql: Db, appId: string, id: string, reason: string): Promise<Date | null> {
  const [row] = await sql<{ statusChangedAt: Date }[]>`
    update endpoints
    set enabled = false, paused = false, status_reason = ${reason}, status_changed_at = now(), updated_at = now()
    where app_id = ${appId} and id = ${id} and enabled
    returning status_changed_at`;
  return row?.statusChangedAt ?? null;
}

/**
 * Makes the held jobs of these endpoints due now: resume (paused → active) and a closing circuit
 * call it. Held jobs are `scheduled` with a `retry` outbox entry due later; so are jobs waiting for
 * a retry after a failed attempt, which cannot be told apart from them and come forward too (a
 * resume or a closing circuit says the receiver is ready; the attempt count is untouched). Found
 * through the outbox, which holds only live work, not through the endpoint's whole job history.
 * Jobs are locked before their outbox rows, in id order, as every other writer of both does.
 * Returns how many jobs came forward.
 */
export async function releaseHeldJobs(sql: Db, endpointIds: string[]): Promise<number> {
  if (endpointIds.length === 0) return 0;
  const rows = await sql<{ id: string }[]>`
    with held as (
      select j.id from outbox o join jobs j on j.id = o.job_id
      where j.endpoint_id = any (${endpointIds}::text[]) and j.status = 'scheduled' and o.reason = 'retry' and o.due_at > now()
      order by j.id
      for update of j
    ), moved as (
      update jobs j set next_attempt_at = now(), updated_at = now() from held where j.id = held.id
      returning j.id
    )
    update outbox o set due_at = now() from moved where o.job_id = moved.id and o.reason = 'retry'
    returning o.job_id as id`;
  return rows.length;
}

/**
 * Deletes the endpoint with its routes (cascade), its jobs with their attempts and outbox entries
 * (`deleteJobsOf`); false when it did not exist. The endpoint is locked first: that waits for any
 * ingest that routed to it, and holds off new jobs for it.
 */
export async function deleteEndpoint(sql: Sql, appId: string, id: string): Promise<boolean> {
  return sql.begin(async (tx) => {
    const [found] = await tx`select id from endpoints where app_id = ${appId} and id = ${id} for update`;
    if (found === undefined) return false;
    await deleteJobsOf(tx, { appId, endpointId: id });
    await tx`delete from endpoints where app_id = ${appId} and id = ${id}`;
    return true;
  });
}

export async function endpointExists(sql: Db, appId: string, id: string): Promise<boolean> {
  const [row] = await sql<{ exists: boolean }[]>`
    select exists (select 1 from endpoints where app_id = ${appId} and id = ${id}) as exists`;
  return row!.exists;
}

export async function findSecret(sql: Db, appId: string, id: string): Promise<string | null> {
  const [row] = await sql<{ secret: string }[]>`select secret from endpoints where app_id = ${appId} and id = ${id}`;
  return row?.secret ?? null;
}

/**
 * Makes `secret` the signing secret. With `graceSeconds` > 0 the secret it replaces is kept as the
 * previous one, used alongside it until the grace ends; a previous secret from an earlier rotation
 * is dropped (only one is kept). With 0 any previous secret is dropped too: only the new one signs.
 * Returns null when the endpoint does not exist, else when the previous secret expires (null for 0).
 * Workers drop their cached copy on the change notification.
 */
export async function replaceSecret(
  sql: Db,
  appId: string,
  id: string,
  secret: string,
  graceSeconds: number,
): Promise<{ previousSecretExpiresAt: Date | null } | null> {
  // In an UPDATE, `secret` on the right-hand side is the value before this statement.
  const [row] = await sql<{ previousSecretExpiresAt: Date | null }[]>`
    update endpoints
    set previous_secret = case when ${graceSeconds}::integer > 0 then secret end,
        previous_secret_expires_at = case when ${graceSeconds}::integer > 0
                                          then now() + make_interval(secs => ${graceSeconds}::integer) end,
        secret = ${secret},
        updated_at = now()
    where app_id = ${appId} and id = ${id}
    returning previous_secret_expires_at`;
  return row ?? null;
}
