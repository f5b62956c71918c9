import exec from "k6/execution";
import type { Options, Scenario } from "k6/options";
import { durationSeconds, loadConfig, requestRate } from "./lib/config.ts";
import { createTarget, publish, removeTarget, type Target } from "./lib/evently.ts";

/**
 * Publish throughput: how many events per second the API accepts (202 = committed to Postgres)
 * within the latency and error budget. Constant-arrival-rate steps (STEPS, each STEP_DURATION; or a
 * single RATE for DURATION) carry the pass/fail thresholds; then a ramping-arrival-rate ramp to
 * RAMP_TO finds the saturation point, visible as rising latency and dropped_iterations, and carries
 * no thresholds because saturating is its purpose. Deliveries flow to the sink meanwhile, so the API
 * competes with the workers as it would in production.
 *
 *   k6 run loadtest/k6/publish.ts                       # PROFILE=laptop
 *   PROFILE=batch k6 run loadtest/k6/publish.ts         # POST /events/batch, 100 events per request
 */
const cfg = loadConfig(open(`./env/${__ENV.PROFILE || "laptop"}.json`), "publish");

// Stragglers of one step get this long to finish before the next begins.
const GAP_S = 5;
const scenarios: Record<string, Scenario> = {};
const thresholds: NonNullable<Options["thresholds"]> = {};
const steps = cfg.steps.length > 0 ? cfg.steps : [cfg.rate];
const stepDuration = cfg.steps.length > 0 ? cfg.stepDuration : cfg.duration;
let startS = 0;
steps.forEach((eventsPerSecond, i) => {
  const name = `step${i + 1}_${eventsPerSecond}eps`;
  scenarios[name] = {
    executor: "constant-arrival-rate",
    exec: "run",
    rate: requestRate(cfg, eventsPerSecond),
    timeUnit: "1s",
    duration: stepDuration,
    preAllocatedVUs: cfg.vus,
    maxVUs: cfg.vus * 4,
    startTime: `${startS}s`,
    gracefulStop: `${GAP_S}s`,
  };
  thresholds[`http_req_failed{scenario:${name}}`] = ["rate<0.001"];
  thresholds[`http_req_duration{scenario:${name}}`] = [`p(99)<${cfg.httpP99Ms}`];
  startS += durationSeconds(stepDuration) + GAP_S;
});
if (cfg.rampTo > 0) {
  scenarios.ramp = {
    executor: "ramping-arrival-rate",
    exec: "run",
    startRate: requestRate(cfg, steps[steps.length - 1]!),
    timeUnit: "1s",
    preAllocatedVUs: cfg.vus,
    maxVUs: cfg.vus * 8,
    stages: [{ target: requestRate(cfg, cfg.rampTo), duration: cfg.rampDuration }],
    startTime: `${startS}s`,
    gracefulStop: `${GAP_S}s`,
  };
}

export const options: Options = {
  scenarios,
  thresholds,
  // p(99.9) too: at thousands of requests per second the tail is where queueing shows first.
  summaryTrendStats: ["avg", "min", "med", "p(90)", "p(95)", "p(99)", "p(99.9)", "max", "count"],
  setupTimeout: "60s",
  discardResponseBodies: false,
};

export function setup(): Target {
  return createTarget(cfg, "publish", false);
}

export function run(target: Target): void {
  publish(cfg, target, exec.scenario.iterationInTest);
}

export function teardown(target: Target): void {
  removeTarget(cfg, target);
}
