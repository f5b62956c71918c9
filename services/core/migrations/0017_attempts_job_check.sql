-- Attempts keep no foreign key to their job.
--
-- Its check ran once per attempt row, a query of its own for each, and could only succeed: the one
-- statement that writes attempts (core/jobs/sql.ts `recordOutcomes`) locks their jobs first and
-- writes only the attempts of jobs it locked, so a job deleted meanwhile drops its attempts
-- (core/attempts/sql.ts `attemptsInsert`). What the key also did, deleting a job's attempts with it,
-- is done without it: jobs are deleted only with their endpoint or application, and that delete
-- takes their attempts and outbox entries with them (core/jobs/sql.ts `deleteJobsOf`).
alter table attempts drop constraint attempts_job_id_fkey;
