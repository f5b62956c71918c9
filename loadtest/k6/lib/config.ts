/**
 * Settings for one k6 run: a load profile (env/<PROFILE>.json, default `laptop`) with environment
 * overrides on top. The profile file is read by the entry script with open() — open() belongs to
 * the init stage and resolves paths against the entry script, so passing its text in keeps the
 * lookup unambiguous whichever k6 version runs.
 *
 *   API_URL (or EVENTLY_URL)   http://127.0.0.1:8080   where Evently's API listens
 *   SINK_URL                   http://127.0.0.1:9999   the sink as Evently's workers reach it
 *   SINK_CONTROL_URL           = SINK_URL              the sink as k6 reaches it, if different
 *   ADMIN_API_KEY              (none)                  sent as Authorization: Bearer
 *   EVENTLY_APPLICATION        default                 sent as Evently-Application with the admin key
 *   RATE                       events per second (per-request rate is RATE / BATCH_SIZE)
 *   DURATION                   e.g. 60s, 5m, 2h
 *   BATCH_SIZE                 1 = POST /events; >1 = POST /events/batch with that many events
 *   PAYLOAD_BYTES              approximate size of each event's `data`
 *   FANOUT                     endpoints subscribed to the run's event type (deliveries per event)
 *   HTTP_P99_MS                threshold on publish request p(99)
 *   LATENCY_P99_MS             threshold on delivery latency p99 measured by the sink
 *   RAMP_TO, RAMP_DURATION     publish.ts: the saturation ramp's final rate (events/s) and length
 *   STEPS                      publish.ts: comma-separated constant rates (events/s), e.g. 500,1000
 *   STEP_DURATION              publish.ts: length of each constant step
 *   DRAIN_TIMEOUT              latency.ts/soak.ts: how long to wait for the last deliveries
 */
declare global {
  // k6 gives scripts `console` (log, info, warn, error, debug), but @types/k6 does not declare it,
  // and lib "dom" would admit browser APIs that k6 lacks.
  const console: Record<"log" | "info" | "warn" | "error" | "debug", (...args: unknown[]) => void>;
}

export interface Config {
  apiUrl: string;
  sinkUrl: string;
  sinkControlUrl: string;
  /** The admin key (none: no Authorization header); it acts on the application named by `application`. */
  adminApiKey: string;
  application: string;
  rate: number;
  duration: string;
  batchSize: number;
  payloadBytes: number;
  fanout: number;
  httpP99Ms: number;
  latencyP99Ms: number;
  steps: number[];
  stepDuration: string;
  rampTo: number;
  rampDuration: string;
  drainTimeout: string;
  /** VUs pre-allocated for arrival-rate executors; maxVUs is 4× this. */
  vus: number;
}

export type ScriptName = "publish" | "latency" | "soak";

type ProfileSection = Partial<Omit<Config, "apiUrl" | "sinkUrl" | "sinkControlUrl" | "adminApiKey" | "application">>;
type Profile = Partial<Record<ScriptName | "defaults", ProfileSection>>;

const env = (name: string): string | undefined => {
  const v = __ENV[name];
  return v === undefined || v === "" ? undefined : v;
};

function num(name: string, fallback: number | undefined): number {
  const raw = env(name);
  const value = raw === undefined ? fallback : Number(raw);
  if (value === undefined || !Number.isFinite(value) || value < 0) throw new Error(`${name} must be a number ≥ 0 (got ${raw ?? "nothing"})`);
  return value;
}

/** Seconds in a k6 duration string such as "90s", "5m", "1h30m", "250ms". */
export function durationSeconds(d: string): number {
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
  let total = 0;
  let matched = "";
  for (let m = re.exec(d); m !== null; m = re.exec(d)) {
    matched += m[0];
    const unit = { ms: 0.001, s: 1, m: 60, h: 3600 }[m[2] as "ms" | "s" | "m" | "h"];
    total += Number(m[1]) * unit;
  }
  if (matched !== d || total <= 0) throw new Error(`not a duration: "${d}"`);
  return total;
}

export function loadConfig(profileJson: string, script: ScriptName): Config {
  const profile = JSON.parse(profileJson) as Profile;
  const p: ProfileSection = { ...profile.defaults, ...profile[script] };
  const apiUrl = (env("API_URL") ?? env("EVENTLY_URL") ?? "http://127.0.0.1:8080").replace(/\/$/, "");
  const sinkUrl = (env("SINK_URL") ?? "http://127.0.0.1:9999").replace(/\/$/, "");
  const cfg: Config = {
    apiUrl,
    sinkUrl,
    sinkControlUrl: (env("SINK_CONTROL_URL") ?? sinkUrl).replace(/\/$/, ""),
    adminApiKey: env("ADMIN_API_KEY") ?? "",
    application: env("EVENTLY_APPLICATION") ?? "default",
    rate: num("RATE", p.rate),
    duration: env("DURATION") ?? p.duration ?? "60s",
    batchSize: Math.max(1, Math.round(num("BATCH_SIZE", p.batchSize ?? 1))),
    payloadBytes: num("PAYLOAD_BYTES", p.payloadBytes ?? 256),
    fanout: Math.max(1, Math.round(num("FANOUT", p.fanout ?? 1))),
    httpP99Ms: num("HTTP_P99_MS", p.httpP99Ms ?? 500),
    latencyP99Ms: num("LATENCY_P99_MS", p.latencyP99Ms ?? 2000),
    steps: env("STEPS")?.split(",").map(Number) ?? p.steps ?? [],
    stepDuration: env("STEP_DURATION") ?? p.stepDuration ?? "30s",
    rampTo: num("RAMP_TO", p.rampTo ?? 0),
    rampDuration: env("RAMP_DURATION") ?? p.rampDuration ?? "60s",
    drainTimeout: env("DRAIN_TIMEOUT") ?? p.drainTimeout ?? "60s",
    vus: Math.max(1, Math.round(num("VUS", p.vus ?? 50))),
  };
  if (!(cfg.rate > 0)) throw new Error("RATE must be > 0 (set it or pick a PROFILE that does)");
  if (cfg.steps.some((s) => !(s > 0))) throw new Error("STEPS must be positive numbers");
  for (const d of [cfg.duration, cfg.stepDuration, cfg.rampDuration, cfg.drainTimeout]) durationSeconds(d);
  return cfg;
}

/** Iterations (requests) per second for an event rate, at least 1. */
export function requestRate(cfg: Config, eventsPerSecond: number): number {
  return Math.max(1, Math.round(eventsPerSecond / cfg.batchSize));
}
