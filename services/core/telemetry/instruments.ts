import { metrics, type Attributes, type Counter, type Histogram, type ObservableGauge, type UpDownCounter } from "@opentelemetry/api";
import { METRIC } from "./names.ts";

// Latency buckets from 1 ms to 30 s: webhook latencies span four orders of magnitude.
const SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
// Event to delivery includes retries, which run for hours: up to a day, so a p99 over minutes is measurable.
const LAG = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400];
const BATCH = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000];

function build() {
  // The global meter: a no-op until startTelemetry registers the SDK, which then calls resetInstruments.
  const m = metrics.getMeter("evently");
  const counter = (name: string, description: string): Counter => m.createCounter(name, { description });
  const seconds = (name: string, description: string): Histogram =>
    m.createHistogram(name, { description, unit: "s", advice: { explicitBucketBoundaries: SECONDS } });
  const gauge = (name: string, description: string): UpDownCounter => m.createUpDownCounter(name, { description });
  const counters = {
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
    jobsHandedOver: counter(METRIC.jobsHandedOver, "Jobs claimed by the commit that made them and handed to a worker, counted by the worker: from its own process (role all) or from an API process over the hand-over connection"),
    messagesDeadLettered: counter(METRIC.messagesDeadLettered, "AMQP messages rejected to the dead-letter queue"),
    duplicateJobs: counter(METRIC.duplicateJobs, "Job messages dropped because the job was already claimed"),
    deliveryAttempts: counter(
      METRIC.deliveryAttempts,
      "HTTP delivery attempts by outcome (delivered, scheduled: a retry was scheduled, dead, expired), error class and status class (2xx, 3xx, 4xx, 5xx, none)",
    ),
    deliveryDuration: seconds(METRIC.deliveryDuration, "HTTP delivery attempt duration"),
    deliveryLag: m.createHistogram(METRIC.deliveryLag, {
      description: "Time from event creation (or replay) to a successful delivery, retries included",
      unit: "s",
      advice: { explicitBucketBoundaries: LAG },
    }),
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
  observeAll(m);
  return counters;
}

/**
 * Gauges read when /metrics is collected rather than recorded on a path: a value that lives in
 * Postgres, RabbitMQ or the runtime. Which role registers a collector for which gauge is
 * telemetry/gauges.ts's business; the process gauges are reported by every process.
 */
export const OBSERVED = {
  outboxBacklog: { name: METRIC.outboxBacklog, description: "Outbox entries due now, by reason (publish, retry, lease, dead_letter)" },
  outboxOldestDue: {
    name: METRIC.outboxOldestDue,
    description: "Seconds since the oldest due outbox entry became due, by reason (0 when nothing is due)",
  },
  queueMessages: { name: METRIC.queueMessages, description: "Messages ready in each work queue (RabbitMQ), or due outbox entries (queue=outbox, Postgres transport)" },
  queueConsumers: { name: METRIC.queueConsumers, description: "Consumers on each work queue (RabbitMQ), or workers listening for due jobs (queue=outbox, Postgres transport)" },
  endpointFailures: {
    name: METRIC.endpointFailures,
    description: "Consecutive failed attempts of the METRICS_TOP_ENDPOINTS endpoints failing most, by endpoint and circuit state",
  },
  circuitLongestOpen: { name: METRIC.circuitLongestOpen, description: "Seconds the longest-failing endpoint with a circuit not closed has been failing (0 when none)" },
  processResidentMemory: { name: METRIC.processResidentMemory, description: "Resident set size of this process, in bytes" },
  processHeap: { name: METRIC.processHeap, description: "JavaScript heap of this process, in bytes, by kind (used, total)" },
  eventLoopLag: { name: METRIC.eventLoopLag, description: "Longest event-loop delay seen in the last 5-10 seconds" },
} as const;
export type ObservedGauge = keyof typeof OBSERVED;
export interface Reading {
  gauge: ObservedGauge;
  value: number;
  attributes?: Attributes;
}
/** Returns the readings of one source; a source that throws is skipped for that collection. */
export type Collector = () => Promise<Reading[]> | Reading[];

// Module-level, not per meter provider: a collector registered before a telemetry restart keeps reporting.
const collectors = new Set<Collector>();

/** Registers a collector run on every collection; returns its removal. */
export function observe(collector: Collector): () => void {
  instruments(); // makes sure the batch callback is registered with the current provider
  collectors.add(collector);
  return () => void collectors.delete(collector);
}

function observeAll(m: ReturnType<typeof metrics.getMeter>): void {
  const gauges = Object.fromEntries(
    Object.entries(OBSERVED).map(([key, { name, description }]) => [key, m.createObservableGauge(name, { description })]),
  ) as Record<ObservedGauge, ObservableGauge>;
  m.addBatchObservableCallback(async (result) => {
    const readings: Reading[][] = await Promise.all([
      processReadings(),
      // One source failing (Postgres down at scrape time) must not blank the others.
      ...[...collectors].map((collect) => Promise.resolve().then(collect).catch((): Reading[] => [])),
    ]);
    for (const r of readings.flat()) result.observe(gauges[r.gauge], r.value, r.attributes);
  }, Object.values(gauges));
}

function processReadings(): Reading[] {
  const memory = process.memoryUsage();
  return [
    { gauge: "processResidentMemory", value: memory.rss },
    { gauge: "processHeap", value: memory.heapUsed, attributes: { kind: "used" } },
    { gauge: "processHeap", value: memory.heapTotal, attributes: { kind: "total" } },
    { gauge: "eventLoopLag", value: loopLag.seconds() },
  ];
}

/**
 * Event-loop lag as a timer sees it: how late a 250 ms tick fires. The longest delay of the current
 * and the previous 5 s window is reported, so a stall shows on the next scrape whatever its timing,
 * and reading never resets it (several scrapers may read).
 */
const loopLag = (() => {
  const TICK_MS = 250;
  const WINDOW_MS = 5000;
  let timer: ReturnType<typeof setInterval> | undefined;
  let windowStart = 0;
  let current = 0;
  let previous = 0;
  let expected = 0;
  const start = () => {
    windowStart = expected = performance.now() + TICK_MS;
    timer = setInterval(() => {
      const now = performance.now();
      const late = Math.max(0, now - expected);
      expected = now + TICK_MS;
      if (now - windowStart >= WINDOW_MS) {
        previous = current;
        current = 0;
        windowStart = now;
      }
      current = Math.max(current, late);
    }, TICK_MS);
    timer.unref?.(); // never what keeps a process alive
  };
  return {
    seconds(): number {
      if (!timer) start();
      return Math.max(current, previous) / 1000;
    },
  };
})();

/**
 * Counters that stay at zero in a healthy installation start at 0 in the role that counts them, so
 * rates and alerts built on them read 0, not "no data" (and `unless`/ratios behave) until the first
 * failure. Called once per started role set; adding 0 again is harmless.
 */
export function startSeries(roles: { api: boolean; worker: boolean; dispatcher: boolean }, rabbitmq: boolean): void {
  const m = instruments();
  if (roles.api) {
    m.eventsRateLimited.add(0);
    m.eventsDeduplicated.add(0);
    if (rabbitmq) m.publishFailures.add(0, { path: "fast" });
  }
  if (roles.dispatcher && rabbitmq) m.publishFailures.add(0, { path: "sweep" });
  if (roles.worker) {
    m.duplicateJobs.add(0);
    if (rabbitmq) m.messagesDeadLettered.add(0);
  }
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
