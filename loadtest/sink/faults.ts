/**
 * Failure and slowness the sink injects, to exercise retries, per-endpoint concurrency limits and
 * timeouts. Set globally (`POST /faults`, env, `startSink({faults})`) or per endpoint through the
 * delivery URL's query string, which the endpoint keeps: an endpoint registered as
 * `<sink>/hooks/flaky?failRate=0.3&status=503` stays flaky while its neighbours stay healthy.
 */
export interface Faults {
  /** Probability (0–1) that a delivery is answered with `status`. */
  failRate: number;
  /** Status code of an injected failure (400–599). */
  status: number;
  /** Fail the first N attempts of every webhook-id, then accept: deterministic retries. */
  failFirst: number;
  /** Wait this long before answering (any outcome), e.g. to push the worker into its timeout. */
  delayMs: number;
  /** Extra uniformly random delay in [0, delayJitterMs). */
  delayJitterMs: number;
}

export const NO_FAULTS: Readonly<Faults> = Object.freeze({
  failRate: 0,
  status: 503,
  failFirst: 0,
  delayMs: 0,
  delayJitterMs: 0,
});

const LIMITS: Record<keyof Faults, [min: number, max: number, integer: boolean]> = {
  failRate: [0, 1, false],
  status: [400, 599, true],
  failFirst: [0, 1000, true],
  delayMs: [0, 600_000, true],
  delayJitterMs: [0, 600_000, true],
};

// Short aliases accepted in query strings, so a URL stays readable: ?fail=0.2&delay=50
const ALIASES: Record<string, keyof Faults> = {
  fail: "failRate",
  failRate: "failRate",
  status: "status",
  failFirst: "failFirst",
  delay: "delayMs",
  delayMs: "delayMs",
  jitter: "delayJitterMs",
  delayJitterMs: "delayJitterMs",
};

export class FaultError extends Error {}

/** Overlays `input` on `base`, validating each field; unknown fields are an error, not ignored. */
export function mergeFaults(base: Readonly<Faults>, input: Record<string, unknown>): Faults {
  const out: Faults = { ...base };
  for (const [name, raw] of Object.entries(input)) {
    const field = ALIASES[name];
    if (!field) throw new FaultError(`unknown fault field "${name}"`);
    const value = typeof raw === "string" && raw.trim() !== "" ? Number(raw) : raw;
    const [min, max, integer] = LIMITS[field];
    if (typeof value !== "number" || !Number.isFinite(value) || value < min || value > max)
      throw new FaultError(`${field} must be a number in [${min}, ${max}]`);
    if (integer && !Number.isInteger(value)) throw new FaultError(`${field} must be an integer`);
    out[field] = value;
  }
  return out;
}

/** Faults from a URL query (`?fail=0.5&status=500`), or `base` when the query names none. */
export function faultsFromQuery(base: Readonly<Faults>, query: URLSearchParams): Faults {
  const fields: Record<string, string> = {};
  for (const [k, v] of query) if (k in ALIASES) fields[k] = v;
  return Object.keys(fields).length === 0 ? { ...base } : mergeFaults(base, fields);
}

/** Faults from SINK_FAIL_RATE, SINK_FAIL_STATUS, SINK_FAIL_FIRST, SINK_DELAY_MS, SINK_DELAY_JITTER_MS. */
export function faultsFromEnv(env: Record<string, string | undefined>): Faults {
  const fields: Record<string, string> = {};
  const map: Record<string, keyof Faults> = {
    SINK_FAIL_RATE: "failRate",
    SINK_FAIL_STATUS: "status",
    SINK_FAIL_FIRST: "failFirst",
    SINK_DELAY_MS: "delayMs",
    SINK_DELAY_JITTER_MS: "delayJitterMs",
  };
  for (const [name, field] of Object.entries(map)) {
    const v = env[name];
    if (v !== undefined && v !== "") fields[field] = v;
  }
  return mergeFaults(NO_FAULTS, fields);
}

export function isActive(f: Readonly<Faults>): boolean {
  return f.failRate > 0 || f.failFirst > 0 || f.delayMs > 0 || f.delayJitterMs > 0;
}

export function delayFor(f: Readonly<Faults>): number {
  return f.delayMs + (f.delayJitterMs > 0 ? Math.floor(Math.random() * f.delayJitterMs) : 0);
}
