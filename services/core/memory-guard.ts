/**
 * Keeps a process's resident memory (RSS) near PROCESS_MEMORY_TARGET_BYTES by collecting garbage
 * sooner than the runtime would. The roles ask it before taking on more work: the API before each
 * request body's first byte (http/body-budget.ts), the worker before each message (worker/start.ts).
 *
 * Why: what is alive at once is bounded elsewhere (the body budget, the worker's prefetch and
 * in-flight limits), but most of a busy process's memory is what finished work left behind. A batch
 * of 500 events makes many times its size in short-lived strings, objects and buffers, and the
 * runtime lets them pile up until its heap passes ~100 MiB (on a starved machine, collections came
 * every ~25 s instead of every ~3 s). In the bench's million-event burst, with at most 4,000 events
 * and ~15 MiB of counted bodies alive at any moment, the API's RSS peaked at 233-280 MiB, once at
 * 520 MiB on a busy machine; the worker's at 252-272 MiB while draining it.
 *
 * How: above the target, a full collection runs before the work is taken on. Forced collections take
 * at most 1/COLLECT_SPACING of the process's time; work arriving sooner goes ahead without one. It
 * never refuses work: RSS counts pages the allocator keeps after a collection, so it cannot tell live
 * memory from free, and refusing on it turned ordinary requests away. When a collection does not
 * bring the process under the target, the spacing doubles (up to MAX_SPACING) until one does, so a
 * process whose live memory is above the target does not spend a tenth of its time collecting.
 */
export interface MemoryGuardOptions {
  /** The RSS above which work waits for a collection; 0: none. */
  limitBytes: number;
  /** The process's resident memory in bytes (tests give their own). */
  residentBytes?: () => number;
  /** A full, synchronous garbage collection (tests give their own). */
  collect?: () => void;
  /** Milliseconds on a monotonic clock (tests give their own). */
  now?: () => number;
}

/** Forced collections take at most about a tenth of the process's time... */
const COLLECT_SPACING = 10;
/** ...and about a 640th once they stopped helping. */
const MAX_SPACING = 640;
/** Reading RSS costs ~8 µs; single events arrive by the thousand a second, so a reading is reused this long. */
const READING_MS = 5;

export class MemoryGuard {
  readonly limitBytes: number;
  readonly #residentBytes: () => number;
  readonly #collect: () => void;
  readonly #now: () => number;
  #nextReadingAt = 0;
  #nextCollectAt = 0;
  #spacing = COLLECT_SPACING;

  constructor(options: MemoryGuardOptions) {
    this.limitBytes = options.limitBytes;
    this.#residentBytes = options.residentBytes ?? (() => process.memoryUsage.rss());
    this.#collect = options.collect ?? (() => Bun.gc(true));
    this.#now = options.now ?? (() => performance.now());
  }

  /** Before taking on work: a collection first when the process is above the target and one is due. */
  beforeWork(): void {
    if (this.limitBytes === 0) return;
    const now = this.#now();
    if (now < this.#nextReadingAt || now < this.#nextCollectAt) return;
    this.#nextReadingAt = now + READING_MS;
    if (this.#residentBytes() <= this.limitBytes) return;
    this.#collect();
    const ended = this.#now();
    this.#spacing = this.#residentBytes() <= this.limitBytes ? COLLECT_SPACING : Math.min(MAX_SPACING, this.#spacing * 2);
    this.#nextCollectAt = ended + this.#spacing * (ended - now);
  }
}
