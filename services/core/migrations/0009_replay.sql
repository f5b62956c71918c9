-- Replay and recovery: a replayed job runs its retry policy afresh; due retries leave the outbox at
-- a bounded rate without slowing first deliveries.

-- ---- Jobs: a replay starts a new run of the retry policy ----
-- A replay (POST /jobs/:id/replay, an event replay, an endpoint recovery) makes an ended job due
-- again. Its attempts continue the job's history (attempt numbers go on from attempt_count), but
-- the retry policy counts only the attempts of this run, attempt_count - attempt_base, so a job
-- that died after its last retry gets every retry again; and maxAgeSeconds is measured from
-- replayed_at, not from the event's creation, or an old event's replay would die on its first
-- failure. Both are 0/null for a job never replayed. Unindexed: the delivery path stays HOT.
alter table jobs add column attempt_base integer not null default 0;
alter table jobs add column replayed_at timestamptz;

-- ---- Outbox: retries apart from the rest ----
-- The dispatcher (and a Postgres-transport worker) takes due `retry` entries at most
-- DISPATCH_MAX_RETRIES_PER_SECOND, and everything else (first deliveries, lapsed leases, dead
-- letters) at full speed. After an outage the outbox can hold a million due retries ahead of a
-- few new jobs; with one index on due_at, the query for "due, not a retry" would walk past all of
-- them on every sweep. Two partial indexes let each query read only its own entries. Every row is
-- in exactly one of them, so a write costs what it cost with the single index.
drop index outbox_due_idx;
create index outbox_due_retry_idx on outbox (due_at) where reason = 'retry';
create index outbox_due_other_idx on outbox (due_at) where reason <> 'retry';
