import { OverloadedError } from "@evently/core/errors.ts";

/**
 * Holds an API process's resident memory (RSS) near MAX_API_MEMORY_BYTES while it reads request
 * bodies; the body budget (body-budget.ts) asks it before each body's first byte.
 *
 * Why: the body budget bounds what bodies keep alive, but most of an ingesting process's memory is
 * what they left behind. A batch of 500 events makes many times its size in short-lived strings,
 * objects and buffers, and the runtime lets them pile up until its heap passes ~100 MiB (on a
 * starved machine, collections came every ~25 s instead of every ~3 s). In the bench's burst of
 * 8 concurrent batches, at most 4,000 events and ~15 MiB of counted bodies were alive at any moment
 * while the API's RSS peaked at 233-280 MiB, and once at 520 MiB on a busy machine.
 *
 * How: above the limit, a full collection runs before the body is read, and then it is read. Forced
 * collections take at most about 1/COLLECT_SPACING of the process's time: a body arriving sooner
 * after the last one waits for the next (under a second: one took ~80 ms in the bench). Memory a
 * collection does not give back is live: while it stays above the limit, a body is refused with
 * 503 `overloaded` as long as another is still being handled (a body alone is always admitted, so
 * the process keeps making progress), and nobody waits for collections that did not help.
 */
export interface MemoryGuardOptions {
  /** The RSS above which bodies wait for a collection or are refused; 0: no limit. */
  limitBytes: number;
  /** The process's resident memory in bytes (tests give their own). */
  residentBytes?: () => number;
  /** A full, synchronous garbage collection (tests give their own). */
  collect?: () => void;
}

/** Forced collections take at most about a tenth of the process's time. */
const COLLECT_SPACING = 10;
/** Reading RSS costs ~8 µs; single events arrive by the thousand a second, so a reading is reused this long. */
const READING_MS = 5;

export class MemoryGuard {
  readonly limitBytes: number;
  readonly #residentBytes: () => number;
  readonly #collect: () => void;
  #reading = 0;
  #readAt = -Infinity;
  #nextCollectAt = 0;
  /** Whether the last collection brought memory under the limit: only then is the next worth waiting for. */
  #lastHelped = true;
  #collecting: Promise<void> | undefined;

  constructor(options: MemoryGuardOptions) {
    this.limitBytes = options.limitBytes;
    this.#residentBytes = options.residentBytes ?? (() => process.memoryUsage.rss());
    this.#collect = options.collect ?? (() => Bun.gc(true));
  }

  /**
   * Resolves once a body may be read as far as memory goes, after a collection when the process is
   * above the limit; throws OverloadedError when it is still above and `othersInFlight()`.
   */
  async admit(othersInFlight: () => boolean): Promise<void> {
    if (this.limitBytes === 0 || !this.#over()) return;
    if (this.#lastHelped || performance.now() >= this.#nextCollectAt) {
      // Bodies arriving meanwhile share the one collection.
      this.#collecting ??= this.#collectWhenDue().finally(() => (this.#collecting = undefined));
      await this.#collecting;
    }
    if (this.#over() && othersInFlight()) throw new OverloadedError(this.limitBytes, "memory");
  }

  async #collectWhenDue(): Promise<void> {
    const wait = this.#nextCollectAt - performance.now();
    if (wait > 0) {
      await Bun.sleep(wait);
      this.#readAt = -Infinity;
      // The runtime's own collector may have run meanwhile.
      if (!this.#over()) return;
    }
    const started = performance.now();
    this.#collect();
    const ended = performance.now();
    this.#nextCollectAt = ended + COLLECT_SPACING * (ended - started);
    this.#readAt = -Infinity;
    this.#lastHelped = !this.#over();
  }

  #over(): boolean {
    const now = performance.now();
    if (now - this.#readAt >= READING_MS) {
      this.#reading = this.#residentBytes();
      this.#readAt = now;
    }
    return this.#reading > this.limitBytes;
  }
}
