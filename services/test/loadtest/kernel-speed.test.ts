import { expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { flushesPerSecond, kernelSpeedApart, loopback, syscallCpu } from "../../../loadtest/bench/kernel-speed.ts";

/**
 * The bench's kernel probe (loadtest/bench/kernel-speed.ts): flushes leave no file behind; the
 * loopback round trips go to an echo process of its own, and the idle ones are spaced out, so each
 * costs the wake-ups the probe is for.
 */

const flushDirs = () => readdirSync(tmpdir()).filter((name) => name.startsWith("evently-flush-"));

test("flushes a page per fdatasync and removes its file", () => {
  const before = flushDirs().length;
  const rate = flushesPerSecond(100);
  expect(rate).toBeGreaterThan(10);
  expect(flushDirs().length).toBe(before);
});

test("round trips to an echo process, back to back and then 1 ms apart, with the CPU of both", async () => {
  const start = performance.now();
  const speed = await loopback(100, 50);
  // 50 trips each after a sleep of at least 1 ms.
  expect(performance.now() - start).toBeGreaterThan(150);
  expect(speed.loopbackRoundTripsPerSec).toBeGreaterThan(100);
  expect(speed.idleRoundTripCpuMicros).toBeGreaterThan(0);
  expect(speed.idleRoundTripCpuMicros).toBeLessThan(20_000);
  // The client blocks for its timer and for the answer, the echo for the question: a wake-up costs
  // about a third of a trip, and never more than all of it.
  expect(speed.wakeUpCpuMicros).toBeGreaterThan(0);
  expect(speed.wakeUpCpuMicros).toBeLessThanOrEqual(speed.idleRoundTripCpuMicros);
});

test("a process of its own takes every probe and answers with all of them", () => {
  const speed = kernelSpeedApart(50);
  expect(speed?.flushesPerSec).toBeGreaterThan(10);
  expect(speed?.loopbackRoundTripsPerSec).toBeGreaterThan(100);
  expect(speed?.idleRoundTripCpuMicros).toBeGreaterThan(0);
  expect(speed?.pageFaultCpuMicros).toBeGreaterThan(0);
  expect(speed?.syscallCpuMicros).toBeGreaterThan(0);
});

test("prices a page fault by the faults /proc counted, and a system call by the calls made", () => {
  // In a fresh process, as the probe runs: in this one a buffer freed by an earlier test would be
  // reused without faulting, and the probe would rightly decline to price it.
  const probe = `import { pageFaultCpu } from ${JSON.stringify(`${import.meta.dir}/../../../loadtest/bench/kernel-speed.ts`)}; console.log(pageFaultCpu(8));`;
  const fault = Number(Bun.spawnSync([process.execPath, "-e", probe]).stdout.toString());
  expect(fault).toBeGreaterThan(0);
  expect(fault).toBeLessThan(1_000);
  const call = syscallCpu(20);
  expect(call).toBeGreaterThan(0);
  expect(call).toBeLessThan(100);
});
