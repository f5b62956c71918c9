import { metrics, type Counter, type Histogram, type UpDownCounter } from "@opentelemetry/api";
import { METRIC } from "./names.ts";

// Latency buckets from 1 ms to 30 s: webhook latencies span four orders of magnitude.
const SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const BATCH = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000];

function build() {
  // The global meter: a no-op until startTelemetry registers the SDK, which then calls resetInstruments.
  const m = metrics.getMeter("evently");
  const counter = (name: string, description: string): Counter => m.createCounter(name, { description });
  const seconds = (name: string, description: string): Histogram =>
    m.createHistogram(name, { description, unit: "s", advice: { explicitBucketBoundaries: SECONDS } });
  const gauge = (name: string, description: string): UpDownCounter => m.createUpDownCounter(name, { description });
  return {
    httpRequests: counter(METRIC.httpRequests, "API requests by route and status"),
    httpDuration: seconds(METRIC.httpDuration, "API request duration by route"),
    eventsAccepted: counter(METRIC.eventsAccepted, "Events committed"),
    eventsDeduplicated: counter(METRIC.eventsDeduplicated, "Events answered from an existing idempotency key"),
    // Not by application: an installation may have many, and a label each would be a series each.
    eventsRateLimited: counter(METRIC.eventsRateLimited, "Events refused (429) because their application's ingest rate limit was used up"),
    jobsCreated: counter(METRIC.jobsCreated, "Jobs (event x endpoint) committed"),
    ingestBatchSize: m.createHistogram(METRIC.ingestBatchSize, {
      description: "Events per group-commit transaction",
      advice: { explicitBucketBoundaries: BATCH },
    }),
    ingestCommitDuration: seconds(METRIC.ingestCommitDuration, "Group-commit transaction duration"),
    jobsPublished: counter(METRIC.jobsPublished, "Jobs confirmed by RabbitMQ, by path (fast, sweep)"),
    publishFailures: counter(METRIC.publishFailures, "Publish attempts that failed, left for the sweeper"),
    publishDuration: seconds(METRIC.publishDuration, "Publish-with-confirm duration per batch"),
    outboxSwept: counter(METRIC.outboxSwept, "Outbox entries taken by the sweeper, by reason (publish, retry, lease) and whether a message was sent"),
    messagesConsumed: counter(METRIC.messagesConsumed, "AMQP messages consumed by workers"),
    messagesDeadLettered: counter(METRIC.messagesDeadLettered, "AMQP messages rejected to the dead-letter queue"),
    duplicateJobs: counter(METRIC.duplicateJobs, "Job messages dropped because the job was already claimed"),
    deliveryAttempts: counter(METRIC.deliveryAttempts, "HTTP delivery attempts by outcome and error class"),
    deliveryDuration: seconds(METRIC.deliveryDuration, "HTTP delivery attempt duration"),
    deliveryLag: seconds(METRIC.deliveryLag, "Time from event creation to a successful delivery"),
    deliveriesInFlight: gauge(METRIC.deliveriesInFlight, "HTTP deliveries in flight"),
    deliveriesWaiting: gauge(METRIC.deliveriesWaiting, "Deliveries waiting for an endpoint slot"),
    attemptsRecorded: counter(METRIC.attemptsRecorded, "Attempts written to Postgres"),
    recordDuration: seconds(METRIC.recordDuration, "Attempt batch write duration"),
    jobsEnded: counter(METRIC.jobsEnded, "Jobs that ended undelivered, by state (dead, expired, cancelled) and reason"),
    jobsDeferred: counter(
      METRIC.jobsDeferred,
      "Jobs held for later without an attempt, by reason (busy, paused, circuit_open, rate_limited, ordering)",
    ),
    // By target state only, never by endpoint: one series per endpoint would grow without bound.
    circuitTransitions: counter(METRIC.circuitTransitions, "Circuit breaker transitions, by the state entered (open, half_open, closed)"),
    // Circuits are shared, so every worker reports the installation's count: aggregate with max, not sum.
    circuitsOpen: gauge(METRIC.circuitsOpen, "Endpoints whose circuit is not closed, by state (open, half_open), as this worker sees the shared state"),
  };
}

export type Instruments = ReturnType<typeof build>;
let cached: Instruments | undefined;

/** Instruments bound to the current meter provider (no-ops until telemetry starts). */
export function instruments(): Instruments {
  return (cached ??= build());
}

/** Called by startTelemetry so instruments made before it rebind to the real provider. */
export function resetInstruments(): void {
  cached = undefined;
}
