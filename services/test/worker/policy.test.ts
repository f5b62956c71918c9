import { describe, expect, test } from "bun:test";
import { DeliveryLimiter } from "../../worker/delivery/limiter.ts";
import { addressClass, isPrivateAddress } from "../../core/net/addresses.ts";
import { checkHost } from "../../worker/http/ssrf.ts";
import { classifyError } from "../../worker/http/send.ts";
import { decideRetry } from "../../core/delivery/retry-policy.ts";
import { parseRetryAfter } from "../../worker/delivery/outcome.ts";

const policy = { type: "schedule" as const, delaysMs: [1000, 60_000], jitter: 0.2 };
const bounds = { minMs: 1000, maxMs: 3_600_000 };
const now = new Date("2026-01-01T00:00:00Z");

describe("retry policy", () => {
  test("follows the schedule with bounded jitter, then gives up", () => {
    const after = (n: number, r: number) => decideRetry(policy, n, 0, null, bounds, () => r);
    expect(after(1, 0.5)).toEqual({ kind: "retry", delayMs: 1000 });
    expect(after(1, 0)).toEqual({ kind: "retry", delayMs: 800 });
    expect(after(1, 1)).toEqual({ kind: "retry", delayMs: 1200 });
    expect(after(2, 0.5)).toEqual({ kind: "retry", delayMs: 60_000 });
    expect(after(3, 0.5)).toEqual({ kind: "give_up", reason: "retries_exhausted" });
  });

  test("Retry-After can delay a retry, within bounds, never hasten it", () => {
    expect(decideRetry(policy, 1, 0, 30_000, bounds, () => 0.5)).toEqual({ kind: "retry", delayMs: 30_000 });
    expect(decideRetry(policy, 1, 0, 10, bounds, () => 0.5)).toEqual({ kind: "retry", delayMs: 1000 });
    expect(decideRetry(policy, 1, 0, 999_999_999, bounds, () => 0.5)).toEqual({ kind: "retry", delayMs: 3_600_000 });
    expect(parseRetryAfter("120", now)).toBe(120_000);
    expect(parseRetryAfter("Thu, 01 Jan 2026 00:01:00 GMT", now)).toBe(60_000);
    expect(parseRetryAfter("soon", now)).toBeNull();
  });
});

describe("SSRF guard", () => {
  test("classifies addresses", () => {
    for (const a of ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0", "::1", "fd00::1", "fe80::1", "::ffff:127.0.0.1", "100.64.0.1"])
      expect([a, isPrivateAddress(a)]).toEqual([a, true]);
    for (const a of ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]) expect([a, isPrivateAddress(a)]).toEqual([a, false]);
  });

  test("names the class, and judges IPv4-mapped IPv6 by its IPv4 address in every spelling", () => {
    expect(addressClass("169.254.169.254")).toBe("cloud metadata");
    expect(addressClass("10.0.0.1")).toBe("private");
    expect(addressClass("fe80::1%eth0")).toBe("link-local");
    for (const a of ["::ffff:127.0.0.1", "::ffff:7f00:1", "0:0:0:0:0:ffff:7f00:1"]) expect([a, addressClass(a)]).toEqual([a, "loopback"]);
    expect(addressClass("example.com")).toBe("not an IP address");
  });

  test("refuses names that resolve to private addresses", async () => {
    expect(await checkHost("localhost")).toMatchObject({ ok: false, errorClass: "blocked_address" });
    expect(await checkHost("127.0.0.1")).toMatchObject({ ok: false, errorClass: "blocked_address" });
    expect(await checkHost("[::1]")).toMatchObject({ ok: false, errorClass: "blocked_address" });
  });
});

test("network errors are classified", () => {
  expect(classifyError(Object.assign(new Error("x"), { name: "TimeoutError" })).errorClass).toBe("timeout");
  expect(classifyError(Object.assign(new TypeError("x"), { code: "ECONNREFUSED" })).errorClass).toBe("connection_refused");
  expect(classifyError(Object.assign(new TypeError("x"), { code: "ENOTFOUND" })).errorClass).toBe("dns");
  expect(classifyError(Object.assign(new TypeError("x"), { code: "EPROTO" })).errorClass).toBe("tls");
  expect(classifyError(Object.assign(new TypeError("x"), { code: "CERT_HAS_EXPIRED" })).errorClass).toBe("tls");
  expect(classifyError(new Error("weird")).errorClass).toBe("network");
});

describe("delivery limiter", () => {
  test("bounds one endpoint and lets others through", async () => {
    const limiter = new DeliveryLimiter({ total: 10, perEndpoint: 2, maxWaitMs: 1000 });
    expect(await limiter.acquire("busy")).toBe("run");
    expect(await limiter.acquire("busy")).toBe("run");
    const queued = limiter.acquire("busy"); // no slot: waits (no duration known yet)
    expect(await limiter.acquire("other")).toBe("run"); // other endpoints unaffected
    expect(limiter.waiting).toBe(1);
    limiter.release("busy", 5);
    expect(await queued).toBe("run");
    expect(limiter.inFlight).toBe(3);
  });

  test("a slow endpoint's overflow is deferred, a fast endpoint's is queued", async () => {
    const limiter = new DeliveryLimiter({ total: 100, perEndpoint: 2, maxWaitMs: 1000 });
    // Teach the limiter the endpoints' speeds.
    for (const [id, ms] of [["slow", 800], ["fast", 4]] as const) {
      await limiter.acquire(id);
      limiter.release(id, ms);
    }
    for (const id of ["slow", "slow", "fast", "fast"]) expect(await limiter.acquire(id)).toBe("run");
    // Slow: 2 slots busy at ~800 ms; the 3rd waiter would wait ~1.2 s: deferred at once.
    const slowQueued = [limiter.acquire("slow"), limiter.acquire("slow")];
    expect(await limiter.acquire("slow")).toBe("defer");
    // Fast: hundreds may queue, each a few ms of expected wait.
    const fastQueued = Array.from({ length: 400 }, () => limiter.acquire("fast"));
    expect(limiter.waiting).toBe(402);
    limiter.release("fast", 4);
    limiter.release("fast", 4);
    expect(await fastQueued[0]).toBe("run");
    limiter.release("slow", 800);
    expect(await slowQueued[0]).toBe("run");
  });

  test("a waiter blocked only by the total keeps its place", async () => {
    const limiter = new DeliveryLimiter({ total: 1, perEndpoint: 1, maxWaitMs: 10 });
    expect(await limiter.acquire("a")).toBe("run");
    const waiting = limiter.acquire("b");
    setTimeout(() => limiter.release("a", 5), 100); // longer than 5 x maxWaitMs
    expect(await waiting).toBe("run");
  });

  test("reports every change in the number waiting (the evently_deliveries_waiting gauge)", async () => {
    let gauge = 0;
    const limiter = new DeliveryLimiter({ total: 100, perEndpoint: 10, maxWaitMs: 30, onWaitingChange: (d) => (gauge += d) });
    await limiter.acquire("slow");
    limiter.release("slow", 250); // slow enough to be deferred, a 25 ms expected wait per queued job
    for (let i = 0; i < 10; i++) await limiter.acquire("slow");
    const granted = limiter.acquire("slow");
    expect([gauge, limiter.waiting]).toEqual([1, 1]);
    limiter.release("slow", 250);
    expect(await granted).toBe("run");
    expect(gauge).toBe(0);
    const deferred = limiter.acquire("slow"); // still saturated after 5 x maxWaitMs: deferred
    expect(gauge).toBe(1);
    expect(await deferred).toBe("defer");
    expect([gauge, limiter.waiting]).toEqual([0, 0]);
  });
});
