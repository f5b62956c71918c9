-- Applications (tenants) and their API keys.
--
-- Every endpoint, route, event, job and attempt belongs to exactly one application. Rows written
-- before this migration move into the `default` application, which every installation has: it is
-- also where a new installation's first events go. Links between rows of different applications are
-- made impossible by the database, not only by the API: a route, a job or an event's fan-out can
-- only join rows that carry the same app_id (composite foreign keys below).

create table applications (
  id                    text primary key,
  -- Chosen by the caller, so a producer can address "customer-42" without storing our id.
  uid                   text unique check (uid ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$' and uid !~ '^app_'),
  name                  text not null,
  metadata              jsonb not null default '{}',
  -- Events per second the application may ingest, across all API processes; null: unlimited.
  rate_limit_per_second integer check (rate_limit_per_second > 0),
  created_at            timestamptz not null default now(),
  updated_at            timestamptz not null default now()
);

-- A fixed id, so the columns below can be added with a constant default (no table rewrite).
insert into applications (id, uid, name)
values ('app_00000000000000000000000000000000', 'default', 'Default application');

-- Keys are stored as SHA-256 digests only: they are long random strings, so a slow password hash
-- would add nothing but cost. `prefix` is the key's first characters, enough to recognise it in a list.
create table api_keys (
  id           text primary key,
  app_id       text not null references applications (id) on delete cascade,
  name         text not null,
  prefix       text not null,
  key_hash     text not null unique,
  created_at   timestamptz not null default now(),
  expires_at   timestamptz,
  revoked_at   timestamptz,
  last_used_at timestamptz
);
create index api_keys_app_idx on api_keys (app_id, id);

-- API processes cache keys and applications (also the lookups that found none); any change to
-- either drops their caches, so a revoked key stops working at once, not when an entry ages out.
create function evently_notify_auth() returns trigger
language plpgsql as $$
begin
  perform pg_notify('evently_auth_changed', tg_table_name);
  return null;
end $$;
create trigger api_keys_notify after insert or update or delete on api_keys
  for each statement execute function evently_notify_auth();
create trigger applications_notify after insert or update or delete on applications
  for each statement execute function evently_notify_auth();

-- Endpoints and events: app_id, and (app_id, id) unique so other tables can reference the pair.
alter table endpoints add column app_id text not null default 'app_00000000000000000000000000000000'
  references applications (id) on delete cascade;
alter table endpoints alter column app_id drop default;
alter table endpoints add constraint endpoints_app_id_id_key unique (app_id, id);

alter table events add column app_id text not null default 'app_00000000000000000000000000000000'
  references applications (id) on delete cascade;
alter table events alter column app_id drop default;
-- Replaces the primary key's role for listing one application's events, newest first.
alter table events add constraint events_app_id_id_key unique (app_id, id);
-- Idempotency keys are unique per application, not per installation.
alter table events drop constraint events_idempotency_key_key;
create unique index events_app_idempotency_key_idx on events (app_id, idempotency_key) where idempotency_key is not null;
drop index events_type_idx;
create index events_app_type_idx on events (app_id, type, id);

-- Routes: fan-out looks routes up by (application, event type).
alter table routes add column app_id text not null default 'app_00000000000000000000000000000000';
alter table routes alter column app_id drop default;
alter table routes drop constraint routes_endpoint_id_fkey;
alter table routes add constraint routes_endpoint_fkey
  foreign key (app_id, endpoint_id) references endpoints (app_id, id) on delete cascade;
alter table routes drop constraint routes_event_type_endpoint_id_key;
alter table routes add constraint routes_app_event_type_endpoint_key unique (app_id, event_type, endpoint_id);

-- Jobs: their event and endpoint are of their own application.
alter table jobs add column app_id text not null default 'app_00000000000000000000000000000000';
alter table jobs alter column app_id drop default;
alter table jobs drop constraint jobs_event_id_fkey;
alter table jobs add constraint jobs_event_fkey
  foreign key (app_id, event_id) references events (app_id, id) on delete cascade;
alter table jobs drop constraint jobs_endpoint_id_fkey;
alter table jobs add constraint jobs_endpoint_fkey
  foreign key (app_id, endpoint_id) references endpoints (app_id, id) on delete cascade;
create index jobs_app_idx on jobs (app_id, id);

-- Attempts are reached through their job or endpoint; app_id is kept so they can be counted and
-- purged per application without a join.
alter table attempts add column app_id text not null default 'app_00000000000000000000000000000000';
alter table attempts alter column app_id drop default;
