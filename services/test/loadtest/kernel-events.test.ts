import { expect, test } from "bun:test";
import { kernelEventLines } from "../../../loadtest/bench/kernel-report.ts";
import { cpuBetween, sampleCpu } from "../../../loadtest/bench/observe.ts";
import type { PhaseResult } from "../../../loadtest/bench/phases.ts";

/**
 * The bench's kernel events (loadtest/bench/observe.ts): context switches summed over every thread
 * of a process group and its page faults, between two samples; and the report's table of them per
 * delivered event (kernel-report.ts).
 */

test("counts a process's sleeps and page faults between two samples", async () => {
  const before = sampleCpu({});
  for (let i = 0; i < 20; i++) await Bun.sleep(2);
  const pages = 1024;
  const memory = new Uint8Array(new ArrayBuffer(pages * 4096));
  for (let i = 0; i < pages; i++) memory[i * 4096] = 1;
  const own = cpuBetween(before, sampleCpu({})).kernel?.bench;
  // Each sleep blocks the JavaScript thread once; each page of the fresh buffer faults once.
  expect(own?.sleeps).toBeGreaterThanOrEqual(20);
  expect(own?.faults).toBeGreaterThanOrEqual(pages / 2);
  expect(own?.preemptions).toBeGreaterThanOrEqual(0);
});

test("the report divides each group's counts by the events delivered, with the stack's totals", () => {
  const phase = (transport: string, name: string, kernel: object) =>
    ({
      transport,
      spec: { name, group: name === "warmup" ? "warmup" : "latency" },
      delivery: { unique: 1000 },
      cpu: { total: { kernel } },
    }) as unknown as PhaseResult;
  const lines = kernelEventLines({
    runs: [
      {
        transport: "postgres",
        phases: [
          phase("postgres", "warmup", { api: { sleeps: 9000, preemptions: 0, faults: 0 } }),
          phase("postgres", "latency-1000", {
            api: { sleeps: 1100, preemptions: 100, faults: 1750 },
            worker: { sleeps: 2500, preemptions: 300, faults: 1850 },
            postgres: { sleeps: 3500, preemptions: 100, faults: 600 },
            bench: { sleeps: 2300, preemptions: 0, faults: 1400 },
          }),
        ],
      },
    ],
    peers: [],
  } as never);
  const rows = lines.filter((l) => l.startsWith("| Evently"));
  // The warm-up is not a measurement.
  expect(rows).toHaveLength(1);
  expect(rows[0]).toContain("api 1.10 · worker 2.50 · postgres 3.50");
  expect(rows[0]).toContain("api 1.75 · worker 1.85 · postgres 0.60");
  expect(rows[0]).toContain("**7.1** · 0.5 · **4.2**");
  expect(rows[0]).toContain("| 2.30 · 1.40 |");
});
