-- Attempt rows inserted with and without attempts' foreign key to jobs, on a database migrated to 0015 or 0016
-- (from 0017 on, add the key back first).
-- (psql -f, one session; 2,000 statements of 50 rows each per run, the runs interleaved; the timed runs
-- were DO blocks with the same loop inline, and the alter table statements were outside the timing).
-- 2026-12-07 13:53: with the key 1,129.6 and 1,100.2 ms; without 603.8 and 521.0 ms (11.0-11.3 against 5.2-6.0 us per row).
-- Run again as this file, 14:23: with the key 1,269.0 and 1,193.5 ms; without 642.7 and 564.4 ms.
\set QUIET on
truncate attempts, outbox, jobs, events cascade;
insert into applications (id, name) values ('app_x', 'x') on conflict do nothing;
insert into endpoints (id, app_id, url, secret) values ('ep_x', 'app_x', 'http://127.0.0.1:9/x', 'whsec_x') on conflict do nothing;
insert into events (id, app_id, type, payload, created_at) values ('evt_x', 'app_x', 't', '{}', now());
insert into jobs (id, app_id, event_id, endpoint_id, event_type, status, created_at)
  select 'job_' || g, 'app_x', 'evt_x', 'ep_x', 't', 'delivering', now() from generate_series(1, 200000) g;
analyze;
-- 2,000 statements of 50 attempt rows each, for jobs first+1 .. first+100,000.
create or replace function pg_temp.insert_attempts(prefix text, first int) returns void language plpgsql as $$
begin
  for b in 0..1999 loop
    insert into attempts (id, app_id, job_id, event_id, endpoint_id, attempt_number, url, request_headers, response_status, response_body, duration_ms, created_at)
    select prefix || g, 'app_x', 'job_' || g, 'evt_x', 'ep_x', 1, 'http://127.0.0.1:9/x', '{}'::json, 200, 'ok', 1, now()
    from generate_series(first + b * 50 + 1, first + b * 50 + 50) g;
  end loop;
end $$;
\timing on
select pg_temp.insert_attempts('att_a', 0);   -- with the key
alter table attempts drop constraint attempts_job_id_fkey;
select pg_temp.insert_attempts('att_b', 100000);   -- without
alter table attempts add constraint attempts_job_id_fkey foreign key (job_id) references jobs (id) on delete cascade;
select pg_temp.insert_attempts('att_c', 0);   -- with
alter table attempts drop constraint attempts_job_id_fkey;
select pg_temp.insert_attempts('att_d', 100000);   -- without
