import { LogHistogram, type HistogramSummary } from "./histogram.ts";

/**
 * Remembers recent keys in two generations so memory stays bounded on a long soak: a key is found
 * while it is in the current or the previous generation, i.e. among at least the last `window / 2`
 * and at most the last `window` keys inserted. A duplicate arriving later than that is missed, which
 * `stats().dedupWindow` states openly rather than the sink growing without bound.
 */
export class RotatingMap<V> {
  private current = new Map<string, V>();
  private previous = new Map<string, V>();
  private readonly half: number;

  constructor(window: number) {
    this.half = Math.max(1, Math.floor(window / 2));
  }

  get(key: string): V | undefined {
    return this.current.get(key) ?? this.previous.get(key);
  }

  set(key: string, value: V): void {
    this.current.set(key, value);
    if (this.current.size >= this.half) {
      this.previous = this.current;
      this.current = new Map();
    }
  }

  clear(): void {
    this.current.clear();
    this.previous.clear();
  }
}

/** Counts per wall-clock second over the last RING seconds, plus the busiest second ever seen. */
const RING = 120;
export class RateMeter {
  private readonly counts = new Float64Array(RING);
  private readonly seconds = new Float64Array(RING).fill(-1);
  private peakCount = 0;

  mark(nowMs: number): void {
    const second = Math.floor(nowMs / 1000);
    const i = second % RING;
    if (this.seconds[i] !== second) {
      this.seconds[i] = second;
      this.counts[i] = 0;
    }
    const c = ++this.counts[i]!;
    if (c > this.peakCount) this.peakCount = c;
  }

  /** Count in a given whole second, 0 when it has rotated out or saw nothing. */
  countAt(second: number): number {
    const i = second % RING;
    return this.seconds[i] === second ? this.counts[i]! : 0;
  }

  get peak(): number {
    return this.peakCount;
  }

  /** The last `n` complete seconds before `nowMs`, oldest first. */
  series(nowMs: number, n: number): number[] {
    const now = Math.floor(nowMs / 1000);
    const out: number[] = [];
    for (let s = now - Math.min(n, RING - 1); s < now; s++) out.push(this.countAt(s));
    return out;
  }

  reset(): void {
    this.counts.fill(0);
    this.seconds.fill(-1);
    this.peakCount = 0;
  }
}

export interface SinkStats {
  /** Every POST that reached the delivery handler. */
  received: number;
  /** Answered 2xx: unique + duplicates. */
  accepted: number;
  /** First 2xx receipt of a webhook-id. */
  unique: number;
  /** 2xx receipt of a webhook-id already acknowledged (within dedupWindow). */
  duplicates: number;
  /** Signature, timestamp or header check failed; answered 401/400. */
  invalid: number;
  invalidReasons: Record<string, number>;
  /** Of the accepted, how many passed without a signature check because no secret applied. */
  unverified: number;
  /** Answered with the injected failure status. */
  injectedFailures: number;
  /** Unique deliveries whose envelope had no parseable `timestamp`; they have no latency. */
  missingTimestamp: number;
  /** Latency = receipt time − envelope timestamp (event creation), in milliseconds. */
  latencyMs: HistogramSummary;
  rate: {
    /** Unique deliveries in the last complete second. */
    lastSecond: number;
    /** Mean over the last 10 complete seconds. */
    avg10s: number;
    peakSecond: number;
    /** unique / (lastAt − firstAt), the sustained rate over the whole run. */
    overall: number;
    /** Last 60 complete seconds, oldest first. */
    series: number[];
  };
  firstAt: string | null;
  lastAt: string | null;
  byScope: Record<string, { accepted: number; unique: number }>;
  dedupWindow: number;
  startedAt: string;
  now: string;
}

/** All counters of one measurement period; `reset()` starts a new one. */
export class SinkState {
  received = 0;
  unique = 0;
  duplicates = 0;
  invalid = 0;
  unverified = 0;
  injectedFailures = 0;
  missingTimestamp = 0;
  firstAtMs = 0;
  lastAtMs = 0;
  startedAtMs = Date.now();
  readonly invalidReasons = new Map<string, number>();
  readonly latencyUs = new LogHistogram();
  readonly rate = new RateMeter();
  readonly seen: RotatingMap<true>;
  /** Failed-on-purpose attempts per webhook-id, for the `failFirst` fault. */
  readonly attempts: RotatingMap<number>;
  readonly scopes = new Map<string, { accepted: number; unique: number }>();

  constructor(readonly dedupWindow: number) {
    this.seen = new RotatingMap(dedupWindow);
    this.attempts = new RotatingMap(dedupWindow);
  }

  rejectInvalid(reason: string): void {
    this.invalid++;
    this.invalidReasons.set(reason, (this.invalidReasons.get(reason) ?? 0) + 1);
  }

  /** Records a 2xx answer; returns true when it was the first for this webhook-id. */
  accept(webhookId: string, scope: string, receivedAtMs: number, eventTimestampMs: number | undefined): boolean {
    let perScope = this.scopes.get(scope);
    if (!perScope) this.scopes.set(scope, (perScope = { accepted: 0, unique: 0 }));
    perScope.accepted++;
    if (this.seen.get(webhookId)) {
      this.duplicates++;
      return false;
    }
    this.seen.set(webhookId, true);
    this.unique++;
    perScope.unique++;
    if (this.firstAtMs === 0) this.firstAtMs = receivedAtMs;
    this.lastAtMs = receivedAtMs;
    this.rate.mark(receivedAtMs);
    if (eventTimestampMs === undefined) this.missingTimestamp++;
    else this.latencyUs.record((receivedAtMs - eventTimestampMs) * 1000);
    return true;
  }

  reset(): void {
    this.received = this.unique = this.duplicates = this.invalid = 0;
    this.unverified = this.injectedFailures = this.missingTimestamp = 0;
    this.firstAtMs = this.lastAtMs = 0;
    this.startedAtMs = Date.now();
    this.invalidReasons.clear();
    this.latencyUs.reset();
    this.rate.reset();
    this.seen.clear();
    this.attempts.clear();
    this.scopes.clear();
  }

  snapshot(nowMs = Date.now()): SinkStats {
    const series = this.rate.series(nowMs, 60);
    const last10 = series.slice(-10);
    const spanS = (this.lastAtMs - this.firstAtMs) / 1000;
    const iso = (ms: number) => (ms === 0 ? null : new Date(ms).toISOString());
    return {
      received: this.received,
      accepted: this.unique + this.duplicates,
      unique: this.unique,
      duplicates: this.duplicates,
      invalid: this.invalid,
      invalidReasons: Object.fromEntries(this.invalidReasons),
      unverified: this.unverified,
      injectedFailures: this.injectedFailures,
      missingTimestamp: this.missingTimestamp,
      latencyMs: this.latencyUs.summary(1000),
      rate: {
        lastSecond: series.at(-1) ?? 0,
        avg10s: last10.reduce((a, b) => a + b, 0) / Math.max(1, last10.length),
        peakSecond: this.rate.peak,
        overall: spanS > 0 ? Math.round(this.unique / spanS) : this.unique,
        series,
      },
      firstAt: iso(this.firstAtMs),
      lastAt: iso(this.lastAtMs),
      byScope: Object.fromEntries([...this.scopes].map(([k, v]) => [k, { ...v }])),
      dedupWindow: this.dedupWindow,
      startedAt: new Date(this.startedAtMs).toISOString(),
      now: new Date(nowMs).toISOString(),
    };
  }
}
