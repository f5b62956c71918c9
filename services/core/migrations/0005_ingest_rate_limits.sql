-- Per-application ingest rate limits, shared by every API process (services/core/ratelimit/).
--
-- One token bucket per application, refilled continuously at the application's limit. API
-- processes claim chunks of it (one upsert under the row lock) and admit from their chunk locally,
-- so the database sees a claim per chunk, not a statement per request.
--
-- The bucket is stored as the moment it was, or will be, empty: its level at time t is
-- (t - empty_at) * limit, capped. One number, read and written with the database's clock, so API
-- processes whose clocks differ still agree on it, and a change of limit takes effect at once.
--
-- `app_id` names an application but does not reference `applications`: a claim must not pay for a
-- foreign-key check, and a deleted application's row is simply left to the idle cleanup. A row idle
-- for a second or more is a full bucket, the same as no row at all, so deleting it loses nothing.
--
-- Unlogged: a bucket is worth nothing after a crash, and a transaction that writes only unlogged
-- tables commits without waiting for a WAL flush, so a claim costs a round trip, not a disk sync.
-- After a crash or a failover the table starts empty: every bucket full, one burst at worst.
create unlogged table ingest_rate_buckets (
  app_id   text primary key,
  -- Seconds since the epoch (database clock) at which the bucket was, or will be, empty.
  empty_at double precision not null,
  -- What the latest claim was granted: RETURNING sees only the new row, and a claim needs to know
  -- how much of it went to itself.
  granted  integer not null check (granted >= 0)
);
-- No index besides the primary key, deliberately: every claim rewrites empty_at, and with only a
-- column no claim changes indexed, those updates stay HOT and prune their own pages, which matters
-- with autovacuum off. The cleanup scans the table, which has one row per application.
alter table ingest_rate_buckets set (fillfactor = 50);
