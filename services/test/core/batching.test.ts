import { expect, test } from "bun:test";
import { Batcher, type BatcherOptions } from "../../core/batching.ts";

/** A Batcher whose batches end only when the test says so: it sees what started, and when. */
function controlled(options: BatcherOptions<number>) {
  const started: number[][] = [];
  const finishers: (() => void)[] = [];
  const batcher = new Batcher<number, number>(
    (items) =>
      new Promise((resolve) => {
        started.push(items);
        finishers.push(() => resolve(items.map((i) => (i < 0 ? new Error(`bad ${i}`) : i * 10))));
      }),
    options,
  );
  const finish = async (n: number) => {
    finishers[n]!();
    await Bun.sleep(0);
  };
  return { batcher, started, finish };
}

test("idle, an item runs alone at once; busy, items queue and the next batch takes them all", async () => {
  const { batcher, started, finish } = controlled({ maxBatch: 100, concurrency: 1 });
  const first = batcher.add(1);
  expect(started).toEqual([[1]]);
  const rest = [2, 3, 4].map((i) => batcher.add(i));
  expect(started).toHaveLength(1);
  await finish(0);
  expect(await first).toBe(10);
  expect(started[1]).toEqual([2, 3, 4]);
  await finish(1);
  expect(await Promise.all(rest)).toEqual([20, 30, 40]);
});

test("maxBatch bounds a batch by weight, and an Error result rejects its item alone", async () => {
  const { batcher, started, finish } = controlled({ maxBatch: 5, concurrency: 1, weight: (i) => Math.abs(i) });
  void batcher.add(1);
  const queued = [2, -3, 4].map((i) => batcher.add(i).then((v) => v, (e: Error) => e.message));
  await finish(0);
  // 2 + 3 fit in 5; 4 waits for the next batch.
  expect(started[1]).toEqual([2, -3]);
  await finish(1);
  expect(started[2]).toEqual([4]);
  await finish(2);
  expect(await Promise.all(queued)).toEqual([20, "bad -3", 40]);
});

test("overlapMinWeight: a batch starts beside a running one only once it is heavy enough", async () => {
  const { batcher, started, finish } = controlled({ maxBatch: 100, concurrency: 2, overlapMinWeight: 3 });
  void batcher.add(1);
  expect(started).toHaveLength(1);
  // One slot is free, but two items are below the least weight: they wait.
  void batcher.add(2);
  void batcher.add(3);
  expect(started).toHaveLength(1);
  // The third makes the batch heavy enough to start beside the running one.
  void batcher.add(4);
  expect(started).toEqual([[1], [2, 3, 4]]);
  // Light items wait while any batch runs, and go as soon as none does.
  void batcher.add(5);
  await finish(0);
  expect(started).toHaveLength(2);
  await finish(1);
  expect(started[2]).toEqual([5]);
});

test("overlapMinWeight above maxBatch: a full batch still starts beside a running one", async () => {
  const { batcher, started } = controlled({ maxBatch: 2, concurrency: 2, overlapMinWeight: 32 });
  void batcher.add(1);
  void batcher.add(2);
  expect(started).toHaveLength(1);
  void batcher.add(3);
  expect(started).toEqual([[1], [2, 3]]);
});

test("minIntervalMs: a batch soon after the last one waits to gather, a full one and an idle one do not", async () => {
  const { batcher, started, finish } = controlled({ maxBatch: 3, concurrency: 1, minIntervalMs: 60 });
  // Idle: the first item starts at once.
  void batcher.add(1);
  expect(started).toEqual([[1]]);
  await finish(0);
  // Right after it, with nothing running, items wait for the interval and go as one batch.
  void batcher.add(2);
  void batcher.add(3);
  await Bun.sleep(10);
  expect(started).toHaveLength(1);
  await Bun.sleep(70);
  expect(started).toEqual([[1], [2, 3]]);
  await finish(1);
  // A full batch does not wait.
  void batcher.add(4);
  void batcher.add(5);
  void batcher.add(6);
  expect(started[2]).toEqual([4, 5, 6]);
  await finish(2);
  // Once the interval has passed since the last start, an item goes at once again.
  await Bun.sleep(70);
  void batcher.add(7);
  expect(started[3]).toEqual([7]);
});
