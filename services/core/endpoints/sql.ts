import type { Sql, TxSql } from "../db/client.ts";
import type { RetryPolicy } from "../delivery/retry-policy.ts";

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
         h.circuit as circuit_state, h.circuit_changed_at, h.consecutive_failures, h.times_opened, h.failing_since,
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
    circuitState, circuitChangedAt, consecutiveFailures, timesOpened, failingSince, ...rest
  } = raw;
  const lastAttempt =
    lastAttemptAt === null
      ? null
      : { at: lastAttemptAt, responseStatus: lastResponseStatus, errorClass: lastErrorClass, errorDetail: lastErrorDetail };
  const circuit: CircuitView = {
    state: circuitState ?? "closed",
    since: circuitChangedAt,
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

/** Locks the row for a read-modify-write, so concurrent partial updates do not lose each other. */
export async function lockEndpointValues(tx: TxSql, appId: string, id: string): Promise<EndpointValues | null> {
  const [row] = await tx<
    (Omit<EndpointValues, "headers" | "metadata" | "retryPolicy"> & { headersJson: string; metadataJson: string; retryPolicyJson: string | null })[]
  >`
    select url, description, enabled, timeout_ms, headers::text as headers_json, rate_limit_per_second,
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

export async function updateEndpoint(sql: Db, appId: string, id: string, values: EndpointValues): Promise<void> {
  await sql`
    update endpoints
    set url = ${values.url}, description = ${values.description}, enabled = ${values.enabled},
        timeout_ms = ${values.timeoutMs}, headers = ${sql.json(values.headers)},
        rate_limit_per_second = ${values.rateLimitPerSecond}, metadata = ${sql.json(values.metadata)},
        retry_policy = ${values.retryPolicy === null ? null : sql.json(values.retryPolicy)}, ordering = ${values.ordering},
        ttl_seconds = ${values.ttlSeconds},
        status_reason = case when enabled is distinct from ${values.enabled}
                             then case when ${values.enabled}::boolean then null else 'disabled by update' end
                             else status_reason end,
        status_changed_at = case when enabled is distinct from ${values.enabled} then now() else status_changed_at end,
        updated_at = now()
    where app_id = ${appId} and id = ${id}`;
}

/**
 * Pauses, resumes, disables or enables an endpoint, with the reason shown in the API (null clears
 * it). Workers see the change through the endpoint cache's notification. Returns false when the
 * endpoint does not exist.
 */
export async function setEndpointStatus(
  sql: Db,
  appId: string,
  id: string,
  change: { enabled?: boolean; paused?: boolean; reason: string | null },
): Promise<boolean> {
  const result = await sql`
    update endpoints
    set enabled = coalesce(${change.enabled ?? null}::boolean, enabled),
        paused = coalesce(${change.paused ?? null}::boolean, paused),
        status_reason = ${change.reason},
        status_changed_at = now(),
        updated_at = now()
    where app_id = ${appId} and id = ${id}`;
  return result.count > 0;
}

/** Deletes the endpoint with its routes, jobs and attempts (cascade); false when it did not exist. */
export async function deleteEndpoint(sql: Db, appId: string, id: string): Promise<boolean> {
  const result = await sql`delete from endpoints where app_id = ${appId} and id = ${id}`;
  return result.count > 0;
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
