-- The dispatcher's to-do list moves out of `jobs` into its own narrow table.
--
-- Until now a partial index on jobs (next_attempt_at) where status in (...) told the dispatcher
-- what was due. Every status change on the delivery path (published → claimed → delivered) touched
-- that index's column or predicate, so none of those updates could be HOT: each wrote a new tuple
-- into every index of `jobs`. With the due work kept in `outbox`, the delivery path changes only
-- unindexed columns of `jobs`, and with free space left on each page those updates stay HOT.

-- One row per job the dispatcher owes RabbitMQ a message for, due at `due_at`:
--   publish  committed by the API, not yet confirmed by the broker (due once the fast-path grace ends)
--   retry    a scheduled attempt: retry after a failure, a deferral, or a retry asked for by hand
--   lease    a delivery whose worker may have died (due when its claim lapses)
-- The API's fast path deletes `publish` rows once RabbitMQ confirmed them; the dispatcher deletes
-- whatever it swept, in the transaction that published it.
create table outbox (
  job_id text primary key references jobs (id) on delete cascade,
  due_at timestamptz not null,
  reason text not null check (reason in ('publish', 'retry', 'lease'))
);
create index outbox_due_idx on outbox (due_at);
-- A queue table: every row is inserted and deleted within seconds, so it is small but churns. Vacuum
-- it after a fixed number of dead rows rather than a share of its (tiny) size.
alter table outbox set (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
                        autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 5000);

insert into outbox (job_id, due_at, reason)
select id, coalesce(next_attempt_at, now()),
       case status when 'pending' then 'publish' when 'scheduled' then 'retry' else 'lease' end
from jobs
where status in ('pending', 'scheduled', 'delivering');

drop index jobs_due_idx;

-- `queued` (published, not yet claimed) is no longer recorded: recording it cost a write per job.
-- Jobs stay `pending` until a worker claims them.
update jobs set status = 'pending' where status = 'queued';
alter table jobs drop constraint jobs_status_check;
alter table jobs add constraint jobs_status_check
  check (status in ('pending', 'delivering', 'scheduled', 'delivered', 'failed'));

-- next_attempt_at is now informational: the retry time for `scheduled`, the claim's lease for
-- `delivering`, null otherwise.
update jobs set next_attempt_at = null where status = 'pending';

-- Room on each page for the updated versions of its rows, so those updates can be HOT.
alter table jobs set (fillfactor = 70);
