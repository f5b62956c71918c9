-- Delivery guarantees under operator control: job end states with reasons, event TTL, per-endpoint
-- retry policy, flow control (pause, disable, circuit breaker, rate limit, ordering) and bulk replay
-- as background operations.

-- ---- Jobs: end states and TTL ----
-- `failed` becomes `dead` (retries exhausted or a final status); a job can also end `expired` (its
-- TTL passed before it was delivered) or `cancelled` (its endpoint was disabled, or an operator
-- cancelled it). end_reason says why, in a word a program can match (`retries_exhausted`,
-- `max_age`, `final_status`, `gone`, `blocked_address`, `invalid_url`, `ttl`, `endpoint_disabled`, …);
-- null while the job is live or once it is delivered.
alter table jobs drop constraint jobs_status_check;
update jobs set status = 'dead' where status = 'failed';
alter table jobs add constraint jobs_status_check
  check (status in ('pending', 'delivering', 'scheduled', 'delivered', 'dead', 'expired', 'cancelled'));
alter table jobs add column end_reason text;
-- Not delivered by then: the job ends `expired` and is never sent late. Null: no TTL.
alter table jobs add column expires_at timestamptz;
update jobs set end_reason = 'retries_exhausted' where status = 'dead';

-- Dead jobs are listed per application, newest first (GET /jobs?status=dead); the partial index
-- keeps that list cheap however many delivered jobs there are, and costs the delivery path nothing
-- until a job dies.
create index jobs_dead_idx on jobs (app_id, id) where status = 'dead';

-- ---- Outbox: dead letters ----
-- `dead_letter`: a job died and its notice is owed to the dead-letter exchange (RabbitMQ transport).
alter table outbox drop constraint outbox_reason_check;
alter table outbox add constraint outbox_reason_check check (reason in ('publish', 'retry', 'lease', 'dead_letter'));

-- ---- Endpoints: policy and flow control ----
-- The retry policy as data (core/delivery/retry-policy.ts); null: the installation's default.
alter table endpoints add column retry_policy jsonb;
-- `fifo`: a job is sent only once every earlier job of the endpoint is delivered or ended.
alter table endpoints add column ordering text not null default 'unordered' check (ordering in ('unordered', 'fifo'));
-- Default TTL of the endpoint's jobs, when the event does not carry one.
alter table endpoints add column ttl_seconds integer check (ttl_seconds between 1 and 2592000);
-- Paused: jobs are held (not attempted) and delivered after resume. Disabled (`enabled` false): no
-- new jobs. Why, and since when, for either; set by the operator, a 410 Gone or auto-disable.
alter table endpoints add column paused boolean not null default false;
alter table endpoints add column status_reason text;
alter table endpoints add column status_changed_at timestamptz;
-- The enforced rate limit keeps the existing column's name and range (rate_limit_per_second).

-- Circuit breaker and failure run per endpoint, shared by every worker process. Written by workers
-- only when something changes (a failure, the first success after failures, a state transition),
-- so a healthy endpoint costs no writes here.
create table endpoint_health (
  endpoint_id          text primary key references endpoints (id) on delete cascade,
  app_id               text not null,
  circuit              text not null default 'closed' check (circuit in ('closed', 'open', 'half_open')),
  circuit_changed_at   timestamptz not null default now(),
  -- When an open circuit lets a probe through (half-open).
  circuit_retry_at     timestamptz,
  consecutive_failures integer not null default 0,
  -- Start of the current run of failures (auto-disable measures from here); null when healthy.
  failing_since        timestamptz,
  -- Attempts and failures in the current ratio window, which started at window_started_at.
  window_started_at    timestamptz not null default now(),
  window_attempts      integer not null default 0,
  window_failures      integer not null default 0,
  times_opened         integer not null default 0,
  updated_at           timestamptz not null default now()
);

-- Per-endpoint delivery rate limit shared by every worker: the same token bucket as the ingest
-- limit (migration 0005), keyed by endpoint. Unlogged for the same reasons.
create unlogged table delivery_rate_buckets (
  endpoint_id text primary key,
  empty_at    double precision not null,
  granted     integer not null check (granted >= 0)
);
alter table delivery_rate_buckets set (fillfactor = 50);

-- ---- Operations: bulk replay in the background ----
-- An `op_…` resource: replay an event's jobs, or recover an endpoint's ended jobs in a time window.
-- A dispatcher works through it in batches, in job id order, keeping `cursor` (the last job id
-- handled) so a restart resumes where it stopped.
create table operations (
  id          text primary key,
  app_id      text not null references applications (id) on delete cascade,
  kind        text not null check (kind in ('replay_event', 'recover_endpoint')),
  -- What the operation works on: {eventId, only} or {endpointId, since, until, statuses}.
  params      jsonb not null,
  state       text not null default 'queued' check (state in ('queued', 'running', 'completed', 'cancelled', 'failed')),
  total       integer,
  done        integer not null default 0,
  failed      integer not null default 0,
  cursor      text,
  error       text,
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now(),
  finished_at timestamptz
);
create index operations_app_idx on operations (app_id, id);
create index operations_active_idx on operations (id) where state in ('queued', 'running');

-- ---- Ingest: TTL per event ----
-- The ingest statement's input gains each event's ttl (seconds, null: the endpoint's default).
drop function evently_event_input(text[], text[], text[], text[], text[], timestamptz[], text[]);
create function evently_event_input(
  p_ids text[], p_app_ids text[], p_types text[], p_data text[], p_keys text[], p_created timestamptz[], p_patterns text[],
  p_ttls integer[]
) returns table (id text, app_id text, type text, data text, idempotency_key text, created_at timestamptz, patterns text,
                 ttl_seconds integer)
language plpgsql stable parallel safe rows 100 as $$
begin
  return query select * from unnest(p_ids, p_app_ids, p_types, p_data, p_keys, p_created, p_patterns, p_ttls);
end $$;
