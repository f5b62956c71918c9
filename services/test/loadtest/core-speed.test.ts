import { expect, test } from "bun:test";
import { coreSpeedApart, timesPerSecond } from "../../../loadtest/bench/core-speed.ts";

/**
 * The bench's core-speed probe (loadtest/bench/core-speed.ts): it counts runs per second of real
 * time, and its process of its own answers with the signing rate, and the JSON rate only when asked.
 */

test("counts how many times the work ran per second of its window", () => {
  // Each run sleeps 2 ms: at most 500 runs a second, and more than 100 unless a run overslept 8 ms.
  const rate = timesPerSecond(200, () => Bun.sleepSync(2), 1);
  expect(rate).toBeLessThanOrEqual(500);
  expect(rate).toBeGreaterThan(100);
});

test("a process of its own measures signatures, and JSON round trips when asked", () => {
  const signing = coreSpeedApart(50);
  expect(signing?.signaturesPerSec).toBeGreaterThan(1000);
  expect(signing?.jsonRoundTripsPerSec).toBeUndefined();
  const both = coreSpeedApart(50, true);
  expect(both?.signaturesPerSec).toBeGreaterThan(1000);
  expect(both?.jsonRoundTripsPerSec).toBeGreaterThan(1000);
});
