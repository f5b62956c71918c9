import { sleep } from "k6";
import exec from "k6/execution";
import http from "k6/http";
import { Trend } from "k6/metrics";
import type { Options } from "k6/options";
import { durationSeconds, loadConfig, requestRate } from "./lib/config.ts";
import { createTarget, publish, removeTarget, type Target } from "./lib/evently.ts";
import { collectDeliveries, collectScenario, deliveryThresholds, type SinkStats } from "./lib/sink.ts";

/**
 * Soak: a long constant rate (default 30 minutes) to surface leaks, slow drift and backlog growth
 * that a short run hides. A `monitor` scenario samples the sink every 10 s, so the delivery rate and
 * the running p99 are charted over the whole run (k6 --out …); the final `collect` scenario applies
 * the same delivery thresholds as latency.ts. The sink is reset in setup().
 *
 *   k6 run loadtest/k6/soak.ts
 *   RATE=500 DURATION=2h k6 run --out json=soak.json loadtest/k6/soak.ts
 */
const cfg = loadConfig(open(`./env/${__ENV.PROFILE || "laptop"}.json`), "soak");
const durationS = durationSeconds(cfg.duration);
const perSecond = requestRate(cfg, cfg.rate);
const GRACE_S = 10;
const expected = Math.round(perSecond * durationS) * cfg.batchSize * cfg.fanout;

const sinkRate = new Trend("sink_deliveries_per_second");
const sinkP99 = new Trend("sink_running_latency_p99_ms");

export const options: Options = {
  scenarios: {
    publish: {
      executor: "constant-arrival-rate",
      exec: "run",
      rate: perSecond,
      timeUnit: "1s",
      duration: cfg.duration,
      preAllocatedVUs: cfg.vus,
      maxVUs: cfg.vus * 4,
      gracefulStop: `${GRACE_S}s`,
    },
    monitor: { executor: "constant-vus", exec: "monitor", vus: 1, duration: cfg.duration, gracefulStop: "5s" },
    collect: collectScenario(cfg, durationS + GRACE_S),
  },
  thresholds: {
    "http_req_failed{scenario:publish}": ["rate<0.001"],
    "http_req_duration{scenario:publish}": [`p(99)<${cfg.httpP99Ms}`],
    dropped_iterations: ["count==0"],
    ...deliveryThresholds(cfg, 0.999),
  },
  setupTimeout: "60s",
};

export function setup(): Target {
  return createTarget(cfg, "soak", true);
}

export function run(target: Target): void {
  publish(cfg, target, exec.scenario.iterationInTest);
}

export function monitor(): void {
  sleep(10);
  const res = http.get(`${cfg.sinkControlUrl}/stats`, { tags: { name: "GET sink /stats" } });
  if (res.status !== 200) return;
  const stats = res.json() as unknown as SinkStats & { rate: { avg10s: number } };
  sinkRate.add(stats.rate.avg10s);
  sinkP99.add(stats.latencyMs.p99);
}

export function collect(target: Target): void {
  collectDeliveries(cfg, target, expected);
}

export function teardown(target: Target): void {
  removeTarget(cfg, target);
}
