interface Entry<T, R> {
  item: T;
  resolve: (result: R) => void;
  reject: (err: unknown) => void;
}

export interface BatcherOptions<T> {
  /** Most weight one batch carries (always at least one item, however heavy). */
  maxBatch: number;
  /** Batches in flight at once; callers arriving meanwhile queue up and share the next one. */
  concurrency: number;
  /** An item's share of maxBatch; 1 when absent. Group commit weighs a request by its events. */
  weight?: (item: T) => number;
  /**
   * Least weight a batch needs to start while another runs; less waits for a running batch to end
   * (0 or absent: no least). A batch has a fixed cost whatever it carries, so under load a
   * second one started for an item or two costs nearly what a full one does; idle, nothing runs
   * and an item still starts at once.
   */
  overlapMinWeight?: number;
  /**
   * Least time between the starts of two batches (0 or absent: none). A batch short of maxBatch that
   * could start sooner waits for the rest of it, gathering what comes meanwhile; a full one starts
   * at once, and so does any batch when the last one started longer ago (idle). Only for batches
   * off the latency path, whose callers can afford to wait that long: under load it bounds how
   * many statements a second a stream of small items makes.
   */
  minIntervalMs?: number;
}

/**
 * Turns many concurrent single-item calls into few batch calls without a timer: while
 * `concurrency` batches run, new items queue, and the next batch takes all of them (up to
 * maxBatch). Idle, an item runs alone at once; busy, batches grow with the load.
 * `run` returns one result per item, in order; a result that is an Error rejects that item alone,
 * so one bad item need not fail its neighbours. A rejected `run` rejects every item of the batch.
 */
export class Batcher<T, R> {
  private queue: Entry<T, R>[] = [];
  private inFlight = 0;
  private lastStart = Number.NEGATIVE_INFINITY;
  private waiting: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly run: (items: T[]) => Promise<(R | Error)[]>,
    private readonly options: BatcherOptions<T>,
  ) {}

  add(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.inFlight < this.options.concurrency && this.queue.length > 0) {
      const take = this.takeCount();
      // Capped at maxBatch, or a second batch could never start.
      if (this.inFlight > 0 && take.size < Math.min(this.options.overlapMinWeight ?? 0, this.options.maxBatch)) return;
      const wait = this.lastStart + (this.options.minIntervalMs ?? 0) - performance.now();
      if (wait > 0 && take.size < this.options.maxBatch) {
        this.waiting ??= setTimeout(() => {
          this.waiting = undefined;
          this.pump();
        }, wait);
        return;
      }
      this.lastStart = performance.now();
      const batch = this.queue.splice(0, take.count);
      this.inFlight++;
      this.run(batch.map((e) => e.item))
        .then(
          (results) =>
            batch.forEach((e, i) => {
              const result = results[i]!;
              if (result instanceof Error) e.reject(result);
              else e.resolve(result);
            }),
          (err) => batch.forEach((e) => e.reject(err)),
        )
        .finally(() => {
          this.inFlight--;
          this.pump();
        });
    }
  }

  /** How many queued items the next batch takes, and their weight: as many as fit in maxBatch, at least one. */
  private takeCount(): { count: number; size: number } {
    const weight = this.options.weight;
    if (!weight) {
      const count = Math.min(this.queue.length, this.options.maxBatch);
      return { count, size: count };
    }
    let count = 0;
    let size = 0;
    while (count < this.queue.length && (count === 0 || size + weight(this.queue[count]!.item) <= this.options.maxBatch))
      size += weight(this.queue[count++]!.item);
    return { count, size };
  }
}
