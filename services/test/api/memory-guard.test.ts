import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { loadConfig } from "../../core/config/index.ts";
import { memoryTarget } from "../../core/config/schema.ts";
import { BodyBudget } from "../../http/body-budget.ts";
import { MemoryGuard } from "../../core/memory-guard.ts";
import { startApi, type TestApi } from "./harness.ts";

/**
 * PROCESS_MEMORY_TARGET_BYTES: above it, a garbage collection before the next piece of work (a
 * request body here), at most about a tenth of the time, less while collections do not help; never
 * a refusal. The guard's own rules are tested with a made-up RSS, collector and clock; the last test
 * runs the real ones through the API.
 */
const MiB = 1024 * 1024;
const LIMIT = 100 * MiB;

/**
 * A process whose RSS is `rss` until a collection sets it to `afterCollect`; a collection takes
 * `takesMs` on its own clock, which only collections and `pass` move.
 */
function fakeProcess(rss: number, afterCollect: number, takesMs = 0) {
  const state = { rss, afterCollect, reads: 0, collections: 0, clock: 0 };
  return {
    state,
    residentBytes: () => (state.reads++, state.rss),
    collect: () => {
      state.collections++;
      state.clock += takesMs;
      state.rss = state.afterCollect;
    },
    now: () => state.clock,
    /** Bodies arriving every millisecond for `ms`, with garbage back above the limit before each when `garbage`. */
    bodies(guard: MemoryGuard, ms: number, garbage = false) {
      for (const until = state.clock + ms; state.clock < until; state.clock++) {
        if (garbage) state.rss = rss;
        guard.beforeWork();
      }
    },
  };
}

describe("the guard", () => {
  test("under the limit, a body goes ahead without a collection", () => {
    const p = fakeProcess(LIMIT - 1, 0);
    new MemoryGuard({ limitBytes: LIMIT, ...p }).beforeWork();
    expect(p.state.collections).toBe(0);
  });

  test("above it, a collection runs before the body; bodies right after it go ahead without one", () => {
    const p = fakeProcess(LIMIT + 1, LIMIT / 2);
    const guard = new MemoryGuard({ limitBytes: LIMIT, ...p });
    guard.beforeWork();
    expect(p.state.collections).toBe(1);
    p.state.rss = LIMIT + 1;
    guard.beforeWork();
    guard.beforeWork();
    expect(p.state.collections).toBe(1);
  });

  test("forced collections take at most about a tenth of the time", () => {
    const p = fakeProcess(LIMIT + 1, LIMIT / 2, 5);
    const guard = new MemoryGuard({ limitBytes: LIMIT, ...p });
    p.bodies(guard, 1000, true); // garbage back above the limit before every body
    // Each takes 5 ms and the next is due 50 ms after it ended: one per 55 ms.
    expect(p.state.collections).toBe(Math.ceil(1000 / 55));
  });

  test("collections that do not bring it under are spaced further apart, up to a 640th, until one does", () => {
    const p = fakeProcess(LIMIT + 1, LIMIT + 1, 2);
    const guard = new MemoryGuard({ limitBytes: LIMIT, ...p });
    p.bodies(guard, 10_000);
    // Gaps after each: 40, 80, 160, 320, 640, 1280 ms, then 1280 each (2 ms × 640).
    expect(p.state.collections).toBe(12);
    p.state.afterCollect = LIMIT / 2; // now one helps: back to a tenth
    p.bodies(guard, 1500, true);
    const before = p.state.collections;
    p.bodies(guard, 1000, true);
    expect(p.state.collections - before).toBe(Math.ceil(1000 / 22));
  });

  test("through the body budget: once per body, before its first byte, never a refusal, and not with a limit of 0", () => {
    const p = fakeProcess(LIMIT + 1, LIMIT + 1);
    const budget = new BodyBudget(64 * MiB, new MemoryGuard({ limitBytes: LIMIT, ...p }));
    const first = budget.share();
    first.take(1000);
    expect(p.state.collections).toBe(1);
    first.take(1000); // more of the same body: not asked again
    expect(p.state.reads).toBe(2);
    budget.share().take(1000); // above the limit, another in flight: still taken
    expect(budget.inUseBytes).toBe(2 * 1000 * 10 + 1000 * 10);
    first.release();

    const off = fakeProcess(LIMIT + 1, LIMIT + 1);
    new BodyBudget(64 * MiB, new MemoryGuard({ limitBytes: 0, ...off })).share().take(1000);
    expect(off.state.reads).toBe(0);
  });
});

describe("PROCESS_MEMORY_TARGET_BYTES", () => {
  test("unset: 192 MiB for an API process, 224 MiB for a worker process, none otherwise; set, it applies to all; 0 is none", () => {
    const unset = loadConfig({}).process;
    expect(["api", "worker", "dispatcher", "all", undefined].map((role) => memoryTarget(unset, role))).toEqual([192 * MiB, 224 * MiB, 0, 224 * MiB, 0]);
    const set = loadConfig({ PROCESS_MEMORY_TARGET_BYTES: String(300 * MiB) }).process;
    expect([memoryTarget(set, "worker"), memoryTarget(set, undefined)]).toEqual([300 * MiB, 300 * MiB]);
    expect(memoryTarget(loadConfig({ PROCESS_MEMORY_TARGET_BYTES: "0" }).process, "api")).toBe(0);
  });

  test("a target under 64 MiB is refused at startup", () => {
    expect(() => loadConfig({ PROCESS_MEMORY_TARGET_BYTES: String(MiB) })).toThrow(/PROCESS_MEMORY_TARGET_BYTES: must be 0 \(none\) or at least 67108864/);
  });
});

describe("through the API, with the real RSS and collector", () => {
  let api: TestApi;
  // Live memory no collection can free, so the process stays above the 64 MiB target.
  let ballast: Buffer | undefined;
  beforeAll(async () => {
    api = await startApi({ env: { PROCESS_MEMORY_TARGET_BYTES: String(64 * MiB) } });
    ballast = Buffer.alloc(80 * MiB, 1);
  });
  afterAll(async () => {
    ballast = undefined;
    await api.close();
  });

  test("above the target, a body arriving while another is being read is still accepted", async () => {
    expect(process.memoryUsage.rss()).toBeGreaterThan(64 * MiB + ballast!.length / 2);
    const body = JSON.stringify({ events: [{ type: "order.paid", data: { n: 1 } }] });
    const headers = { "content-type": "application/json" };
    expect((await api.request("POST", "/events/batch", { body, headers })).status).toBe(202);

    // The first body is held mid-read, so it is in flight when the second arrives.
    let finish!: () => void;
    const rest = new Promise<void>((resolve) => (finish = resolve));
    let reading!: () => void;
    const read = new Promise<void>((resolve) => (reading = resolve));
    const bytes = new TextEncoder().encode(body);
    let pulls = 0;
    const stream = new ReadableStream<Uint8Array>(
      {
        async pull(controller) {
          if (++pulls === 1) return controller.enqueue(bytes.subarray(0, 10));
          reading();
          await rest;
          controller.enqueue(bytes.subarray(10));
          controller.close();
        },
      },
      new CountQueuingStrategy({ highWaterMark: 0 }),
    );
    const held = api.app.handle(
      new Request("http://localhost/events/batch", { method: "POST", headers: { ...headers, authorization: `Bearer ${api.appKey}` }, body: stream }),
    );
    await read;
    expect((await api.request("POST", "/events/batch", { body, headers })).status).toBe(202);
    finish();
    expect((await held).status).toBe(202);
  });
});
