import exec from "k6/execution";
import type { Options } from "k6/options";
import { durationSeconds, loadConfig, requestRate } from "./lib/config.ts";
import { createTarget, publish, removeTarget, type Target } from "./lib/evently.ts";
import { collectDeliveries, collectScenario, deliveryThresholds } from "./lib/sink.ts";

/**
 * End-to-end delivery latency at a fixed rate well below saturation: event creation (the envelope
 * `timestamp`) to receipt at the sink, measured by the sink's histogram, so k6's own scheduling does
 * not enter the number. Publishing runs RATE events/s for DURATION; a final `collect` scenario waits
 * for the deliveries to drain and turns the sink's statistics into metrics with thresholds:
 * every event delivered (delivered_ratio), no invalid signature, p99 under LATENCY_P99_MS.
 * The sink is reset in setup(), so run one latency test per sink at a time.
 *
 *   k6 run loadtest/k6/latency.ts
 *   RATE=1000 DURATION=2m LATENCY_P99_MS=1000 k6 run loadtest/k6/latency.ts
 */
const cfg = loadConfig(open(`./env/${__ENV.PROFILE || "laptop"}.json`), "latency");
const durationS = durationSeconds(cfg.duration);
const perSecond = requestRate(cfg, cfg.rate);
const GRACE_S = 10;
/** constant-arrival-rate starts exactly rate × duration iterations unless it drops some. */
const expected = Math.round(perSecond * durationS) * cfg.batchSize * cfg.fanout;

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
    collect: collectScenario(cfg, durationS + GRACE_S),
  },
  thresholds: {
    "http_req_failed{scenario:publish}": ["rate<0.001"],
    "http_req_duration{scenario:publish}": [`p(99)<${cfg.httpP99Ms}`],
    // A dropped iteration is an event never sent: the rate was not held and `expected` is off.
    dropped_iterations: ["count==0"],
    ...deliveryThresholds(cfg, 0.999),
  },
  setupTimeout: "60s",
};

export function setup(): Target {
  return createTarget(cfg, "latency", true);
}

export function run(target: Target): void {
  publish(cfg, target, exec.scenario.iterationInTest);
}

export function collect(target: Target): void {
  collectDeliveries(cfg, target, expected);
}

export function teardown(target: Target): void {
  removeTarget(cfg, target);
}
