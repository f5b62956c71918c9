/**
 * Every metric and span name Evently emits, defined once. Dashboards and alerts depend on these:
 * renaming one is a breaking change.
 */
export const METRIC = {
  httpRequests: "evently_http_requests_total",
  httpDuration: "evently_http_request_duration_seconds",
  eventsAccepted: "evently_events_accepted_total",
  eventsDeduplicated: "evently_events_idempotent_replays_total",
  eventsRateLimited: "evently_events_rate_limited_total",
  jobsCreated: "evently_jobs_created_total",
  ingestBatchSize: "evently_ingest_batch_events",
  ingestCommitDuration: "evently_ingest_commit_duration_seconds",
  jobsPublished: "evently_jobs_published_total",
  publishFailures: "evently_publish_failures_total",
  publishDuration: "evently_publish_duration_seconds",
  outboxSwept: "evently_outbox_swept_jobs_total",
  messagesConsumed: "evently_messages_consumed_total",
  messagesDeadLettered: "evently_messages_dead_lettered_total",
  duplicateJobs: "evently_duplicate_jobs_total",
  deliveryAttempts: "evently_delivery_attempts_total",
  deliveryDuration: "evently_delivery_duration_seconds",
  deliveryLag: "evently_delivery_lag_seconds",
  deliveriesInFlight: "evently_deliveries_in_flight",
  deliveriesWaiting: "evently_deliveries_waiting",
  attemptsRecorded: "evently_attempts_recorded_total",
  recordDuration: "evently_record_duration_seconds",
  jobsEnded: "evently_jobs_ended_total",
  jobsDeferred: "evently_jobs_deferred_total",
  circuitTransitions: "evently_circuit_transitions_total",
  circuitsOpen: "evently_circuits_open",
} as const;

export const SPAN = {
  ingestCommit: "evently.ingest.commit",
  outboxSweep: "evently.outbox.sweep",
  deliver: "evently.deliver",
  deliverySend: "evently.delivery.send",
  attemptsRecord: "evently.attempts.record",
} as const;
