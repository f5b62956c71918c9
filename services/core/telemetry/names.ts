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
  jobsHandedOver: "evently_jobs_handed_over_total",
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
  // Read at collect time (telemetry/gauges.ts), not recorded on a path: see docs/observability.md
  // for which role reports each.
  outboxBacklog: "evently_outbox_backlog",
  outboxOldestDue: "evently_outbox_oldest_due_seconds",
  queueMessages: "evently_queue_messages",
  queueConsumers: "evently_queue_consumers",
  endpointFailures: "evently_endpoint_consecutive_failures",
  circuitLongestOpen: "evently_circuit_longest_open_seconds",
  processResidentMemory: "evently_process_resident_memory_bytes",
  processHeap: "evently_process_heap_bytes",
  eventLoopLag: "evently_event_loop_lag_seconds",
} as const;

/**
 * Spans, in the order an event meets them. One trace per event: its request span's context is kept
 * with the event (events.trace_parent) and every later span of its jobs joins it; a span serving
 * many events (a commit, a message, a batch of writes) links each of them.
 */
export const SPAN = {
  /** One API request; a child of the caller's `traceparent` when it sent one. */
  httpRequest: "evently.http.request",
  ingestCommit: "evently.ingest.commit",
  /** A hand-off of jobs to RabbitMQ: publish with confirms (fast path or sweep). The Postgres transport's wake-up is inside the commit. */
  outboxPublish: "evently.outbox.publish",
  outboxSweep: "evently.outbox.sweep",
  /** The worker consuming one message: every job in it, from claim to recorded outcome. */
  deliver: "evently.deliver",
  /** One delivery attempt: its `traceparent` is sent on the webhook request. */
  deliverySend: "evently.delivery.send",
  attemptsRecord: "evently.attempts.record",
} as const;
