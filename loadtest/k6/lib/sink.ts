import http from "k6/http";
import { Counter, Gauge } from "k6/metrics";
import { durationSeconds, type Config } from "./config.ts";
import type { Target } from "./evently.ts";

/**
 * Delivery-side results, read from the sink by a final `collect` scenario rather than in teardown():
 * samples emitted by teardown() are not reliably included in the end-of-test summary or threshold
 * evaluation (k6 issue #680 and related), while samples from a scenario iteration always are. So the
 * thresholds on these metrics are evaluated by construction.
 */
export const deliveryLatencyP50 = new Gauge("delivery_latency_p50_ms");
export const deliveryLatencyP95 = new Gauge("delivery_latency_p95_ms");
export const deliveryLatencyP99 = new Gauge("delivery_latency_p99_ms");
export const deliveryLatencyMax = new Gauge("delivery_latency_max_ms");
/** Unique deliveries of this run ÷ deliveries expected (events scheduled × FANOUT). */
export const deliveredRatio = new Gauge("delivered_ratio");
export const deliveriesUnique = new Counter("sink_unique_deliveries");
export const deliveriesDuplicate = new Counter("sink_duplicate_deliveries");
export const deliveriesInvalid = new Counter("sink_invalid_deliveries");

export interface SinkStats {
  unique: number;
  duplicates: number;
  invalid: number;
  invalidReasons: Record<string, number>;
  latencyMs: { count: number; p50: number; p95: number; p99: number; max: number };
  rate: { overall: number; peakSecond: number };
  byScope: Record<string, { accepted: number; unique: number }>;
}

/** Scenario options for the collector: one iteration, starting when publishing has ended. */
export function collectScenario(cfg: Config, startAfterSeconds: number) {
  return {
    executor: "shared-iterations" as const,
    exec: "collect",
    vus: 1,
    iterations: 1,
    startTime: `${Math.ceil(startAfterSeconds)}s`,
    maxDuration: `${Math.ceil(durationSeconds(cfg.drainTimeout)) + 30}s`,
  };
}

/**
 * Waits (server-side long poll) until the sink has `expected` unique deliveries or none arrived
 * for 5 s, then records the run's delivery results as metrics.
 */
export function collectDeliveries(cfg: Config, target: Target, expected: number): SinkStats {
  const drainS = durationSeconds(cfg.drainTimeout);
  // The sink's total is only a shortcut for the wait; the verdict uses this run's own scopes.
  const url = `${cfg.sinkControlUrl}/stats?waitUnique=${expected}&quietMs=5000&timeoutMs=${Math.round(drainS * 1000)}`;
  const res = http.get(url, { timeout: `${Math.ceil(drainS) + 15}s`, tags: { name: "GET sink /stats" } });
  if (res.status !== 200) throw new Error(`sink /stats answered ${res.status}`);
  const stats = res.json() as unknown as SinkStats;
  let unique = 0;
  for (const e of target.endpoints) unique += stats.byScope[e.scope]?.unique ?? 0;

  deliveriesUnique.add(unique);
  deliveriesDuplicate.add(stats.duplicates);
  deliveriesInvalid.add(stats.invalid);
  deliveredRatio.add(expected > 0 ? unique / expected : 0);
  deliveryLatencyP50.add(stats.latencyMs.p50);
  deliveryLatencyP95.add(stats.latencyMs.p95);
  deliveryLatencyP99.add(stats.latencyMs.p99);
  deliveryLatencyMax.add(stats.latencyMs.max);
  console.log(
    `sink: ${unique}/${expected} delivered, ${stats.duplicates} duplicates, ${stats.invalid} invalid ` +
      `${JSON.stringify(stats.invalidReasons)}, latency p50 ${stats.latencyMs.p50} ms p99 ${stats.latencyMs.p99} ms ` +
      `max ${stats.latencyMs.max} ms, ${stats.rate.overall}/s sustained, peak ${stats.rate.peakSecond}/s`,
  );
  return stats;
}

/** Thresholds on the collected metrics; the latency ones are meaningful only with a reset sink. */
export function deliveryThresholds(cfg: Config, minRatio: number) {
  return {
    delivered_ratio: [`value>=${minRatio}`],
    sink_invalid_deliveries: ["count==0"],
    delivery_latency_p99_ms: [`value<${cfg.latencyP99Ms}`],
  };
}
