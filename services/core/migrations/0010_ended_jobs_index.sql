-- The index of dead jobs (0008) is replaced by one of every job that ended undelivered.
--
-- jobs_dead_idx was partial on `status = 'dead'`. A partial index's predicate counts as an indexed
-- column for HOT updates, so with it every status change on the delivery path (pending →
-- delivering → delivered) became a non-HOT update writing a new entry into every index of `jobs`:
-- the very cost migration 0002 removed. Measured with `bun run bench`: Postgres's CPU in a drain
-- of 150,000 jobs went from 25 to 94 s, and the drain from 8,900 to 3,000 jobs/s.
--
-- end_reason is null on the delivery path from start to `delivered`, so an index whose predicate is
-- `end_reason is not null` leaves those updates HOT; it holds exactly the dead, expired and
-- cancelled jobs that GET /jobs?status=… lists per application (jobs/sql.ts adds the predicate).
drop index jobs_dead_idx;
create index jobs_ended_idx on jobs (app_id, id) where end_reason is not null;
