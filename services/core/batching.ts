interface Entry<T, R> {
  item: T;
  resolve: (result: R) => void;
  reject: (err: unknown) => void;
}

export interface BatcherOptions {
  maxBatch: number;
  /** Batches in flight at once; callers arriving meanwhile queue up and share the next one. */
  concurrency: number;
}

/**
 * Turns many concurrent single-item calls into few batch calls without a timer: while
 * `concurrency` batches run, new items queue, and the next batch takes all of them (up to
 * maxBatch). Idle, an item runs alone at once; busy, batches grow with the load.
 * `run` returns one result per item, in order.
 */
export class Batcher<T, R> {
  private queue: Entry<T, R>[] = [];
  private inFlight = 0;

  constructor(
    private readonly run: (items: T[]) => Promise<R[]>,
    private readonly options: BatcherOptions,
  ) {}

  add(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.pump();
    });
  }

  get pending(): number {
    return this.queue.length;
  }

  private pump(): void {
    while (this.inFlight < this.options.concurrency && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.options.maxBatch);
      this.inFlight++;
      this.run(batch.map((e) => e.item))
        .then(
          (results) => batch.forEach((e, i) => e.resolve(results[i]!)),
          (err) => batch.forEach((e) => e.reject(err)),
        )
        .finally(() => {
          this.inFlight--;
          this.pump();
        });
    }
  }
}
