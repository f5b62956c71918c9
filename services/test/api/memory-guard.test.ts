import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { loadConfig } from "../../core/config/index.ts";
import { API_MEMORY_DEFAULT_BYTES, apiMemoryLimit } from "../../core/config/schema.ts";
import { OverloadedError } from "../../core/errors.ts";
import { BodyBudget } from "../../http/body-budget.ts";
import { MemoryGuard } from "../../http/memory-guard.ts";
import { startApi, type TestApi } from "./harness.ts";

/**
 * MAX_API_MEMORY_BYTES: above it, a garbage collection before the next body; while that does not
 * bring the process back under, 503 `overloaded` for a body that is not alone. The guard's own rules
 * are tested with a made-up RSS and collector; the last test runs the real ones through the API.
 */
const MiB = 1024 * 1024;
const LIMIT = 100 * MiB;

/** A process whose RSS is `rss` until a collection sets it to `afterCollect`; a collection takes `takesMs`. */
function fakeProcess(rss: number, afterCollect: number, takesMs = 0) {
  const state = { rss, reads: 0, collections: 0 };
  return {
    state,
    residentBytes: () => (state.reads++, state.rss),
    collect: () => {
      state.collections++;
      Bun.sleepSync(takesMs);
      state.rss = afterCollect;
    },
  };
}

const alone = () => false;
const notAlone = () => true;

describe("the guard", () => {
  test("under the limit, a body goes ahead without a collection", async () => {
    const p = fakeProcess(LIMIT - 1, 0);
    await new MemoryGuard({ limitBytes: LIMIT, ...p }).admit(notAlone);
    expect(p.state.collections).toBe(0);
  });

  test("above it, a collection runs first, and bodies arriving together share it", async () => {
    const p = fakeProcess(LIMIT + 1, LIMIT / 2);
    const guard = new MemoryGuard({ limitBytes: LIMIT, ...p });
    await Promise.all([guard.admit(notAlone), guard.admit(notAlone), guard.admit(notAlone)]);
    expect(p.state.collections).toBe(1);
  });

  test("memory a collection leaves is live: a body is refused while another is in flight, admitted alone", async () => {
    const p = fakeProcess(LIMIT + 1, LIMIT + 1);
    const guard = new MemoryGuard({ limitBytes: LIMIT, ...p });
    const refused = await guard.admit(notAlone).catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(OverloadedError);
    expect(refused).toMatchObject({ status: 503, code: "overloaded", headers: { "retry-after": "1" } });
    expect((refused as Error).message).toContain(`memory is above its limit of ${LIMIT} bytes`);
    await guard.admit(alone);
  });

  test("forced collections take at most about a tenth of the time: a body arriving sooner waits for the next", async () => {
    const p = fakeProcess(LIMIT + 1, LIMIT / 2, 5);
    const guard = new MemoryGuard({ limitBytes: LIMIT, ...p });
    await guard.admit(notAlone);
    p.state.rss = LIMIT + 1; // garbage again
    await Bun.sleep(10); // past the reused reading
    const started = performance.now();
    await guard.admit(notAlone);
    expect(p.state.collections).toBe(2);
    expect(performance.now() - started).toBeGreaterThanOrEqual(35); // 10 × 5 ms after the first ended, less the 10 slept
  });

  test("after a collection that did not help, nobody waits for the next: refused at once unless alone", async () => {
    const p = fakeProcess(LIMIT + 1, LIMIT + 1, 20);
    const guard = new MemoryGuard({ limitBytes: LIMIT, ...p });
    await guard.admit(alone);
    await Bun.sleep(10);
    const started = performance.now();
    expect(await guard.admit(notAlone).catch((err: unknown) => err)).toBeInstanceOf(OverloadedError);
    await guard.admit(alone);
    expect(performance.now() - started).toBeLessThan(50); // the next collection is due 200 ms after the first
    expect(p.state.collections).toBe(1);
  });

  test("through the body budget: once per body, before its first byte, and not with a limit of 0", async () => {
    const p = fakeProcess(LIMIT + 1, LIMIT + 1);
    const budget = new BodyBudget(64 * MiB, { limitBytes: LIMIT, ...p });
    const first = budget.share();
    await first.take(1000); // alone: admitted
    await first.take(1000); // more of the same body: not asked again
    expect(p.state.collections).toBe(1);
    expect(await budget.share().take(1000).catch((err: unknown) => err)).toBeInstanceOf(OverloadedError);
    first.release();
    expect(budget.inUseBytes).toBe(0);

    const off = fakeProcess(LIMIT + 1, LIMIT + 1);
    await new BodyBudget(64 * MiB, { limitBytes: 0, ...off }).share().take(1000);
    expect(off.state.reads).toBe(0);
  });
});

describe("MAX_API_MEMORY_BYTES", () => {
  test("unset: 192 MiB in the api role, none in all; set, it applies to both; 0 is none", () => {
    expect(API_MEMORY_DEFAULT_BYTES).toBe(192 * MiB);
    const unset = loadConfig({}).http;
    expect(apiMemoryLimit(unset, "api")).toBe(192 * MiB);
    expect(apiMemoryLimit(unset, "all")).toBe(0);
    const set = loadConfig({ MAX_API_MEMORY_BYTES: String(300 * MiB) }).http;
    expect([apiMemoryLimit(set, "api"), apiMemoryLimit(set, "all")]).toEqual([300 * MiB, 300 * MiB]);
    expect(apiMemoryLimit(loadConfig({ MAX_API_MEMORY_BYTES: "0" }).http, "api")).toBe(0);
  });

  test("a limit under 64 MiB is refused at startup", () => {
    expect(() => loadConfig({ MAX_API_MEMORY_BYTES: String(MiB) })).toThrow(/MAX_API_MEMORY_BYTES: must be 0 \(no limit\) or at least 67108864/);
  });
});

describe("through the API, with the real RSS and collector", () => {
  let api: TestApi;
  // Live memory no collection can free, so the process stays above the 64 MiB limit.
  let ballast: Buffer | undefined;
  beforeAll(async () => {
    api = await startApi({ env: { MAX_API_MEMORY_BYTES: String(64 * MiB) } });
    ballast = Buffer.alloc(80 * MiB, 1);
  });
  afterAll(async () => {
    ballast = undefined;
    await api.close();
  });

  test("a body alone is accepted; one arriving while another is being read gets 503 overloaded", async () => {
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
    const refused = await api.request("POST", "/events/batch", { body, headers });
    expect(refused.status).toBe(503);
    expect(refused.body).toEqual({ code: "overloaded", detail: expect.stringContaining(`memory is above its limit of ${64 * MiB} bytes`) });
    expect(refused.headers.get("retry-after")).toBe("1");
    finish();
    expect((await held).status).toBe(202);
  });
});
