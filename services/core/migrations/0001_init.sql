-- Evently schema, version 1. Postgres is the source of truth: endpoints, routes, events, jobs
-- (which double as the transactional outbox) and attempts.

-- Same id shape as services/core/ids.ts: prefix, 12 hex digits of epoch ms, 20 random hex digits.
create function evently_id(prefix text) returns text
language sql volatile parallel safe as $$
  select prefix || '_'
    || lpad(to_hex((extract(epoch from clock_timestamp()) * 1000)::bigint), 12, '0')
    || substr(replace(gen_random_uuid()::text, '-', ''), 1, 20)
$$;

create table endpoints (
  id                    text primary key,
  url                   text not null,
  description           text not null default '',
  secret                text not null,
  enabled               boolean not null default true,
  timeout_ms            integer check (timeout_ms between 100 and 300000),
  headers               jsonb not null default '{}',
  -- Accepted and stored; enforcement arrives with the rate-limit work.
  rate_limit_per_second integer check (rate_limit_per_second > 0),
  metadata              jsonb not null default '{}',
  created_at            timestamptz not null default now(),
  updated_at            timestamptz not null default now()
);

-- A route subscribes an endpoint to an event type pattern: `order.paid`, `order.*` or `*`.
create table routes (
  id          text primary key,
  endpoint_id text not null references endpoints (id) on delete cascade,
  event_type  text not null,
  created_at  timestamptz not null default now(),
  unique (event_type, endpoint_id)
);
create index routes_endpoint_idx on routes (endpoint_id, id);

-- payload is `json`, not `jsonb`: it keeps the producer's bytes exactly, so every attempt of a
-- delivery sends an identical body, and ingest skips jsonb's binary conversion (a large share of
-- insert cost at high rates).
create table events (
  id              text primary key,
  type            text not null,
  payload         json not null,
  idempotency_key text unique,
  created_at      timestamptz not null
);
create index events_type_idx on events (type, id);

-- One event for one endpoint. The job row is also the outbox entry: `pending` jobs are not yet
-- known to RabbitMQ. next_attempt_at is when the dispatcher may (re)publish it: the fast-path grace
-- for pending, the due time for scheduled, the lease expiry for delivering.
create table jobs (
  id              text primary key,
  event_id        text not null references events (id) on delete cascade,
  endpoint_id     text not null references endpoints (id) on delete cascade,
  event_type      text not null,
  status          text not null default 'pending'
                  check (status in ('pending', 'queued', 'delivering', 'scheduled', 'delivered', 'failed')),
  attempt_count   integer not null default 0,
  next_attempt_at timestamptz,
  last_attempt_at timestamptz,
  delivered_at    timestamptz,
  created_at      timestamptz not null,
  updated_at      timestamptz not null default now()
);
create index jobs_event_idx on jobs (event_id);
create index jobs_endpoint_idx on jobs (endpoint_id, id);
create index jobs_due_idx on jobs (next_attempt_at) where status in ('pending', 'scheduled', 'delivering');

create table attempts (
  id              text primary key,
  job_id          text not null references jobs (id) on delete cascade,
  event_id        text not null,
  endpoint_id     text not null,
  attempt_number  integer not null,
  url             text not null,
  request_headers json not null,  -- json: written per attempt, only ever read back whole
  response_status integer,
  response_body   text,
  duration_ms     integer not null,
  -- null when delivered; otherwise timeout, connection_refused, dns, tls, network, http_status,
  -- blocked_address, invalid_url or endpoint_disabled
  error_class     text,
  error_detail    text,
  created_at      timestamptz not null
);
create index attempts_job_idx on attempts (job_id, id);
create index attempts_endpoint_idx on attempts (endpoint_id, id);

-- Workers cache endpoints and drop an entry when it changes.
create function evently_notify_endpoint() returns trigger
language plpgsql as $$
begin
  perform pg_notify('evently_endpoint_changed', coalesce(new.id, old.id));
  return null;
end $$;

create trigger endpoints_notify after insert or update or delete on endpoints
  for each row execute function evently_notify_endpoint();
