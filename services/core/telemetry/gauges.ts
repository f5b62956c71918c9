import type { Sql } from "../db/client.ts";
import { withDeadline } from "../db/errors.ts";
import type { Logger } from "../log.ts";
import type { JobTransport } from "../queue/transport.ts";
import { observe, type Reading } from "./instruments.ts";

// A scrape must answer even when Postgres or RabbitMQ hangs: a source slower than this is left out
// of that collection (Prometheus' default scrape timeout is 10 s).
const READ_DEADLINE_MS = 3000;
// Every reason an outbox row can have (migration 0008): each is reported, 0 included, so a panel
// or alert never sees a series vanish when its backlog drains.
const OUTBOX_REASONS = ["publish", "retry", "lease", "dead_letter"] as const;

export interface PipelineGaugeOptions {
  /** METRICS_TOP_ENDPOINTS: how many failing endpoints get a series of their own. */
  topEndpoints: number;
}

/**
 * The gauges read from Postgres and the broker when /metrics is collected: outbox backlog and age,
 * work-queue depth and consumers, the endpoints failing most and the longest-open circuit. One
 * statement each, on the partial indexes of the outbox (migration 0009) and the small
 * endpoint_health table.
 *
 * Registered by one role per transport (runtime.ts): the dispatcher with RabbitMQ, workers with
 * the Postgres transport. Several such processes report the same values: aggregate with `max`
 * (the outbox queue's consumers, which each worker counts for itself, with `sum`).
 */
export function observePipeline(sql: Sql, transport: JobTransport, options: PipelineGaugeOptions, log: Logger): () => void {
  const bounded = <T>(what: string, work: () => Promise<T>): Promise<T> =>
    withDeadline(work(), READ_DEADLINE_MS, what).catch((err: Error) => {
      log.debug("gauge read failed", { what, error: err.message });
      throw err;
    });
  const sources: (() => Promise<Reading[]>)[] = [
    () => bounded("outbox backlog", () => outboxReadings(sql)),
    () => bounded("queue depth", () => queueReadings(transport)),
    () => bounded("endpoint health", () => endpointReadings(sql, options.topEndpoints)),
  ];
  const removals = sources.map((source) => observe(source));
  return () => removals.forEach((remove) => remove());
}

async function outboxReadings(sql: Sql): Promise<Reading[]> {
  // One aggregate per reason with the reason as a constant, so each reads its own partial index
  // (migrations 0009, 0012); joined to a list of reasons, the outbox was scanned whole.
  const perReason = OUTBOX_REASONS.map(
    (reason) => sql`
      select ${reason}::text as reason, count(*)::int as due, coalesce(extract(epoch from now() - min(due_at)), 0)::float8 as oldest
      from outbox where reason = ${sql.unsafe(`'${reason}'`)} and due_at <= now()`,
  );
  const rows = await sql<{ reason: string; due: number; oldest: number }[]>`
    ${perReason.reduce((all, part) => sql`${all} union all ${part}`)}`;
  return rows.flatMap((r) => [
    { gauge: "outboxBacklog" as const, value: r.due, attributes: { reason: r.reason } },
    { gauge: "outboxOldestDue" as const, value: Math.max(0, r.oldest), attributes: { reason: r.reason } },
  ]);
}

async function queueReadings(transport: JobTransport): Promise<Reading[]> {
  const depths = await transport.queueDepths();
  return depths.flatMap((d) => [
    { gauge: "queueMessages" as const, value: d.messages, attributes: { queue: d.queue } },
    { gauge: "queueConsumers" as const, value: d.consumers, attributes: { queue: d.queue } },
  ]);
}

/**
 * Per-endpoint labels are unbounded, so only the `top` endpoints with the most consecutive failures
 * (or a circuit not closed) get a series; which endpoints those are changes as they recover, and a
 * recovered endpoint's series simply stops. The longest-open circuit is one unlabelled series
 * over all endpoints, so the alert on it never misses one outside the top.
 */
async function endpointReadings(sql: Sql, top: number): Promise<Reading[]> {
  const [worst, [longest]] = await Promise.all([
    top > 0
      ? sql<{ endpointId: string; circuit: string; consecutiveFailures: number }[]>`
          select endpoint_id, circuit, consecutive_failures
          from endpoint_health
          where consecutive_failures > 0 or circuit <> 'closed'
          order by consecutive_failures desc, endpoint_id
          limit ${top}`
      : Promise.resolve([]),
    sql<{ seconds: number }[]>`
      select coalesce(extract(epoch from now() - min(coalesce(failing_since, circuit_changed_at))), 0)::float8 as seconds
      from endpoint_health
      where circuit <> 'closed'`,
  ]);
  return [
    ...worst.map((r) => ({
      gauge: "endpointFailures" as const,
      value: r.consecutiveFailures,
      attributes: { endpoint: r.endpointId, circuit: r.circuit },
    })),
    { gauge: "circuitLongestOpen" as const, value: Math.max(0, longest?.seconds ?? 0) },
  ];
}
