import { expect, test } from "bun:test";
import { kernelEventLines, threadLines } from "../../../loadtest/bench/kernel-report.ts";
import { cpuBetween, sampleCpu } from "../../../loadtest/bench/observe.ts";
import type { PhaseResult } from "../../../loadtest/bench/phases.ts";

/**
 * The bench's kernel events (loadtest/bench/observe.ts): context switches summed over every thread
 * of a process group and its page faults, between two samples; and the report's table of them per
 * delivered event (kernel-report.ts).
 */

// A role process of its own, so that its memory is fresh (in this one, a buffer freed by an earlier
// test would be reused without faulting): on "go" it sleeps 20 times and writes to 1,024 new pages.
const CHILD = `
  console.log("ready");
  for await (const line of console) {
    if (line !== "go") continue;
    for (let i = 0; i < 20; i++) await Bun.sleep(2);
    const memory = new Uint8Array(new ArrayBuffer(1024 * 4096));
    for (let i = 0; i < 1024; i++) memory[i * 4096] = 1;
    console.log("done");
  }`;

test("counts a process's sleeps and page faults between two samples", async () => {
  const child = Bun.spawn([process.execPath, "-e", CHILD], { stdin: "pipe", stdout: "pipe", stderr: "ignore" });
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const readLine = async () => (await lines.read()).value?.trim();
  try {
    expect(await readLine()).toBe("ready");
    const before = sampleCpu({ child: child.pid });
    child.stdin.write("go\n");
    child.stdin.flush();
    expect(await readLine()).toBe("done");
    const events = cpuBetween(before, sampleCpu({ child: child.pid })).kernel?.child;
    // Each sleep blocks the JavaScript thread once; each page of the fresh buffer faults once.
    expect(events?.sleeps).toBeGreaterThanOrEqual(20);
    expect(events?.faults).toBeGreaterThanOrEqual(512);
    expect(events?.preemptions).toBeGreaterThanOrEqual(0);
  } finally {
    child.kill();
    await child.exited;
  }
});

test("splits a role process's CPU by thread, its JavaScript thread as main", () => {
  const before = sampleCpu({});
  for (const end = performance.now() + 120; performance.now() < end; );
  const threads = cpuBetween(before, sampleCpu({})).threads?.bench;
  // /proc counts in hundredths of a second: 120 ms busy on this thread is at least 0.1 s.
  expect(threads?.main).toBeGreaterThanOrEqual(0.1);
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
            sink: { sleeps: 1200, preemptions: 0, faults: 300 },
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
  // The generator and the sink apart, neither in the stack's totals.
  expect(rows[0]).toContain("| bench 2.30 · 1.40<br>sink 1.20 · 0.30 |");
});

test("the report lists each role's threads per delivered event, the busiest first and the idle left out", () => {
  const phase = {
    transport: "postgres",
    spec: { name: "latency-1000", group: "latency" },
    delivery: { unique: 10_000 },
    cpu: { total: { threads: { api: { JITWorker: 0.49, main: 2.05, "mi-scavenger": 0.02 }, worker: { main: 1.77 } } } },
  } as unknown as PhaseResult;
  const lines = threadLines({ runs: [{ transport: "postgres", phases: [phase] }], peers: [] } as never);
  expect(lines.find((l) => l.startsWith("| Evently"))).toBe("| Evently, Postgres transport | latency-1000 | api: main 0.205 · JITWorker 0.049<br>worker: main 0.177 |");
});
