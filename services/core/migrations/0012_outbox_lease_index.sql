-- Leases get an index of their own, so that taking due jobs never walks over them.
--
-- A Postgres-transport worker takes a job by turning its `publish` entry into a `lease` due when
-- the take lapses (QUEUE_TAKE_LEASE_MS), and the recorded outcome deletes it. Until a vacuum, each
-- of those deleted leases leaves a dead entry in whatever index holds leases, at its lapse time.
-- With leases in `outbox_due_other_idx`, every take (due, not a retry, oldest first) had to step
-- over all of them once their lapse times had passed, which is most of them in a backlog drained
-- for longer than one lease: a long drain ran 2-4 times slower. Lapsed leases are rare (a worker
-- died, or an answer was lost), so they are looked for separately and seldom (outbox/sql.ts).
-- Every row is still in exactly one partial index.
drop index outbox_due_other_idx;
create index outbox_due_fresh_idx on outbox (due_at) where reason <> 'retry' and reason <> 'lease';
create index outbox_due_lease_idx on outbox (due_at) where reason = 'lease';
