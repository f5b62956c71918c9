import { LogHistogram, type HistogramSummary } from "../sink/histogram.ts";

/**
 * Two small in-process load generators for the benchmark and the ceiling probes.
 *
 * - Open loop (`runOpenLoop`): requests start on a fixed schedule whatever the system does, as real
 *   producers do. Like k6's constant-arrival-rate, a start that finds `concurrencyLimit` requests in
 *   flight is dropped and counted, so an overloaded target shows up as `dropped > 0` and a lower
 *   achieved rate instead of as a silently stretched schedule (coordinated omission).
 * - Closed loop (`runClosedLoop`): N workers each send as soon as their previous request finished;
 *   it finds the maximum throughput at that concurrency.
 *
 * `send(i)` performs request number i; resolving counts as ok, throwing as an error (the message,
 * e.g. "HTTP 503", becomes the error kind). Latency is the time `send` took.
 */
export type Send = (i: number) => Promise<unknown>;

export interface LoadProgress {
  elapsedMs: number;
  started: number;
  ok: number;
  errors: number;
  inFlight: number;
}

export interface LoadResult {
  /** Requests started. */
  started: number;
  ok: number;
  errors: number;
  /** Up to 20 distinct error messages with their counts. */
  errorKinds: Record<string, number>;
  /** Open loop only: scheduled starts skipped because the in-flight limit was reached. */
  dropped: number;
  /** From the first start until the last request finished. */
  durationMs: number;
  /** ok / duration, per second. */
  okPerSecond: number;
  latencyMs: HistogramSummary;
}

class Recorder {
  started = 0;
  ok = 0;
  errors = 0;
  dropped = 0;
  inFlight = 0;
  readonly errorKinds = new Map<string, number>();
  readonly latencyUs = new LogHistogram();
  readonly t0 = performance.now();

  async run(send: Send, i: number): Promise<void> {
    this.started++;
    this.inFlight++;
    const t = performance.now();
    try {
      await send(i);
      this.ok++;
      this.latencyUs.record((performance.now() - t) * 1000);
    } catch (err) {
      this.errors++;
      const kind = String((err as Error)?.message ?? err).slice(0, 120);
      if (this.errorKinds.has(kind) || this.errorKinds.size < 20) this.errorKinds.set(kind, (this.errorKinds.get(kind) ?? 0) + 1);
    } finally {
      this.inFlight--;
    }
  }

  progress(): LoadProgress {
    const { started, ok, errors, inFlight } = this;
    return { elapsedMs: performance.now() - this.t0, started, ok, errors, inFlight };
  }

  result(): LoadResult {
    const durationMs = performance.now() - this.t0;
    return {
      started: this.started,
      ok: this.ok,
      errors: this.errors,
      errorKinds: Object.fromEntries(this.errorKinds),
      dropped: this.dropped,
      durationMs: Math.round(durationMs),
      okPerSecond: durationMs > 0 ? Math.round((this.ok / durationMs) * 1000) : 0,
      latencyMs: this.latencyUs.summary(1000),
    };
  }
}

function everySecond(rec: Recorder, onProgress?: (p: LoadProgress) => void): () => void {
  if (!onProgress) return () => {};
  const timer = setInterval(() => onProgress(rec.progress()), 1000);
  return () => clearInterval(timer);
}

export interface OpenLoopOptions {
  /** Starts per second. */
  rate: number;
  durationMs: number;
  /** Most requests in flight; further scheduled starts are dropped. */
  concurrencyLimit: number;
  send: Send;
  onProgress?: (p: LoadProgress) => void;
  /** Stop early (the in-flight requests still finish). */
  signal?: AbortSignal;
}

// Timers fire with ~1 ms jitter; every wake-up starts all requests that fell due since the last,
// so the schedule holds on average even at tens of thousands of starts per second.
const TICK_MS = 2;

export async function runOpenLoop(o: OpenLoopOptions): Promise<LoadResult> {
  if (!(o.rate > 0) || !(o.durationMs > 0) || !(o.concurrencyLimit >= 1)) throw new Error("rate, durationMs and concurrencyLimit must be positive");
  const rec = new Recorder();
  const stopProgress = everySecond(rec, o.onProgress);
  const pending = new Set<Promise<void>>();
  const total = Math.floor((o.rate * o.durationMs) / 1000);
  let scheduled = 0;
  try {
    while (scheduled < total && !o.signal?.aborted) {
      const due = Math.min(total, Math.floor(((performance.now() - rec.t0) * o.rate) / 1000) + 1);
      for (; scheduled < due; scheduled++) {
        if (rec.inFlight >= o.concurrencyLimit) {
          rec.dropped++;
          continue;
        }
        const p = rec.run(o.send, scheduled);
        pending.add(p);
        void p.finally(() => pending.delete(p));
      }
      await Bun.sleep(TICK_MS);
    }
    await Promise.all(pending);
  } finally {
    stopProgress();
  }
  return rec.result();
}

export interface ClosedLoopOptions {
  concurrency: number;
  /** Stop after this many requests… */
  count?: number;
  /** …or after this long, whichever comes first (at least one of the two is required). */
  durationMs?: number;
  send: Send;
  onProgress?: (p: LoadProgress) => void;
  signal?: AbortSignal;
}

export async function runClosedLoop(o: ClosedLoopOptions): Promise<LoadResult> {
  if (o.count === undefined && o.durationMs === undefined) throw new Error("closed loop needs count or durationMs");
  if (!(o.concurrency >= 1)) throw new Error("concurrency must be ≥ 1");
  const rec = new Recorder();
  const stopProgress = everySecond(rec, o.onProgress);
  const deadline = o.durationMs === undefined ? Infinity : rec.t0 + o.durationMs;
  const count = o.count ?? Infinity;
  let next = 0;
  const worker = async () => {
    while (next < count && performance.now() < deadline && !o.signal?.aborted) await rec.run(o.send, next++);
  };
  try {
    await Promise.all(Array.from({ length: o.concurrency }, worker));
  } finally {
    stopProgress();
  }
  return rec.result();
}
