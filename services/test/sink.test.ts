import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { Webhook } from "standardwebhooks";
import { generateSecret } from "../core/signing/index.ts";
import { LogHistogram } from "../../loadtest/sink/histogram.ts";
import { startSink, type Sink } from "../../loadtest/sink/server.ts";
import { RotatingMap } from "../../loadtest/sink/state.ts";
import { runClosedLoop, runOpenLoop } from "../../loadtest/bench/generator.ts";
import { envelopeTimestampMs } from "../../loadtest/sink/verify.ts";

// Deliveries are signed with the standardwebhooks reference package, not with Evently's own signer,
// so a bug shared by the signer and the sink's verifier cannot make these tests pass.

interface Delivery {
  path?: string;
  id?: string;
  secret?: string;
  /** Envelope timestamp (event creation). */
  createdAt?: Date;
  /** webhook-timestamp (send time). */
  sentAt?: Date;
  body?: string;
  tamper?: boolean;
}

let seq = 0;
function envelope(createdAt: Date, data: unknown = { amount: 42, note: "x".repeat(64) }): string {
  return JSON.stringify({ id: `evt_${++seq}`, type: "order.paid", timestamp: createdAt.toISOString(), data });
}

async function deliver(sink: Sink, d: Delivery = {}): Promise<Response> {
  const id = d.id ?? `job_${++seq}`;
  const sentAt = d.sentAt ?? new Date();
  const body = d.body ?? envelope(d.createdAt ?? new Date());
  const headers: Record<string, string> = { "content-type": "application/json", "webhook-id": id };
  headers["webhook-timestamp"] = String(Math.floor(sentAt.getTime() / 1000));
  headers["webhook-signature"] = new Webhook(d.secret ?? generateSecret()).sign(id, sentAt, body);
  return fetch(sink.url + (d.path ?? "/"), { method: "POST", headers, body: d.tamper ? body + " " : body });
}

const post = (sink: Sink, path: string, body: unknown) =>
  fetch(sink.url + path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

describe("sink over HTTP", () => {
  const secret = generateSecret();
  let sink: Sink;
  beforeAll(() => {
    sink = startSink({ port: 0, secrets: [secret] });
  });
  afterEach(() => {
    sink.reset();
    sink.setFaults({});
  });
  afterAll(() => sink.stop());

  test("accepts a correctly signed delivery and rejects tampering or a wrong key with 401", async () => {
    expect((await deliver(sink, { secret })).status).toBe(204);
    expect((await deliver(sink, { secret, tamper: true })).status).toBe(401);
    expect((await deliver(sink, { secret: generateSecret() })).status).toBe(401);
    const s = sink.stats();
    expect(s).toMatchObject({ received: 3, accepted: 1, unique: 1, invalid: 2, unverified: 0 });
    expect(s.invalidReasons).toEqual({ bad_signature: 2 });
  });

  test("rejects stale webhook-timestamps and missing headers", async () => {
    const old = new Date(Date.now() - 10 * 60_000);
    expect((await deliver(sink, { secret, sentAt: old })).status).toBe(401);
    const bare = await fetch(sink.url + "/", { method: "POST", body: envelope(new Date()) });
    expect(bare.status).toBe(400);
    expect(sink.stats().invalidReasons).toEqual({ stale_timestamp: 1, missing_headers: 1 });
  });

  test("counts a repeated webhook-id as a duplicate, not a new delivery", async () => {
    await deliver(sink, { secret, id: "job_a" });
    await deliver(sink, { secret, id: "job_a" });
    await deliver(sink, { secret, id: "job_b" });
    expect(sink.stats()).toMatchObject({ accepted: 3, unique: 2, duplicates: 1 });
  });

  test("records latency from the envelope timestamp to receipt", async () => {
    for (let i = 0; i < 20; i++) await deliver(sink, { secret, createdAt: new Date(Date.now() - 400) });
    const l = sink.stats().latencyMs;
    expect(l.count).toBe(20);
    expect(l.p50).toBeGreaterThanOrEqual(398);
    expect(l.p99).toBeLessThan(400 + 200);
    expect(l.max).toBeGreaterThanOrEqual(l.p99);
  });

  test("scoped secrets apply only to their /hooks/<scope>", async () => {
    const scoped = generateSecret();
    const res = await post(sink, "/secrets", { secret: scoped, scope: "shop" });
    expect(res.status).toBe(201);
    expect((await deliver(sink, { secret: scoped, path: "/hooks/shop" })).status).toBe(204);
    // The scope's own key replaces the global ones for that path...
    expect((await deliver(sink, { secret, path: "/hooks/shop" })).status).toBe(401);
    // ...while other paths keep using the global secret.
    expect((await deliver(sink, { secret, path: "/hooks/other" })).status).toBe(204);
    expect(sink.stats().byScope).toEqual({ shop: { accepted: 1, unique: 1 }, other: { accepted: 1, unique: 1 } });
    expect((await post(sink, "/secrets", { secret: "not-a-secret" })).status).toBe(400);
  });

  test("failFirst fails each webhook-id N times, then accepts it without counting a duplicate", async () => {
    expect((await post(sink, "/faults", { failFirst: 2, status: 503 })).status).toBe(200);
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await deliver(sink, { secret, id: "job_retry" })).status);
    expect(statuses).toEqual([503, 503, 204]);
    expect(sink.stats()).toMatchObject({ injectedFailures: 2, unique: 1, duplicates: 0 });
  });

  test("failRate, status and delay can be set per request through the query string", async () => {
    const res = await deliver(sink, { secret, path: "/hooks/flaky?fail=1&status=502" });
    expect(res.status).toBe(502);
    const started = performance.now();
    expect((await deliver(sink, { secret, path: "/hooks/slow?delay=150" })).status).toBe(204);
    expect(performance.now() - started).toBeGreaterThanOrEqual(145);
    expect((await deliver(sink, { secret, path: "/hooks/x?fail=7" })).status).toBe(400);
    expect(sink.stats()).toMatchObject({ injectedFailures: 1, unique: 1, invalidReasons: { bad_fault_query: 1 } });
  });

  test("a global failRate of 0.5 fails about half of the deliveries", async () => {
    sink.setFaults({ failRate: 0.5, status: 500 });
    const results = await Promise.all(Array.from({ length: 400 }, () => deliver(sink, { secret })));
    const failed = results.filter((r) => r.status === 500).length;
    // Binomial(400, 0.5): σ = 10, so ±60 is a 6σ band.
    expect(failed).toBeGreaterThan(140);
    expect(failed).toBeLessThan(260);
    expect(sink.stats().injectedFailures).toBe(failed);
  });

  test("rejects invalid fault settings", async () => {
    expect((await post(sink, "/faults", { failRate: 2 })).status).toBe(400);
    expect((await post(sink, "/faults", { bogus: 1 })).status).toBe(400);
    expect(await (await fetch(sink.url + "/faults")).json()).toMatchObject({ failRate: 0, delayMs: 0 });
  });

  test("/stats long-polls until the wanted count arrives, /reset returns and clears, /metrics exposes", async () => {
    const waiting = fetch(sink.url + "/stats?waitUnique=3&timeoutMs=5000").then((r) => r.json());
    for (let i = 0; i < 3; i++) await deliver(sink, { secret });
    expect(((await waiting) as { unique: number }).unique).toBe(3);

    const metrics = await (await fetch(sink.url + "/metrics")).text();
    expect(metrics).toContain('sink_requests_total{outcome="unique"} 3');
    expect(metrics).toMatch(/sink_delivery_latency_seconds_count 3\n/);

    const cleared = (await (await fetch(sink.url + "/reset", { method: "POST" })).json()) as { unique: number };
    expect(cleared.unique).toBe(3);
    expect(sink.stats().unique).toBe(0);
  });

  test("a wrong method on a control path is refused, not counted as a delivery", async () => {
    expect((await fetch(sink.url + "/stats", { method: "POST", body: "{}" })).status).toBe(405);
    expect((await fetch(sink.url + "/hooks/x")).status).toBe(404);
    expect(sink.stats().received).toBe(0);
  });

  test("waitFor returns on quiet and on timeout", async () => {
    const start = Date.now();
    const s = await sink.waitFor({ quietMs: 100, timeoutMs: 5000 });
    expect(Date.now() - start).toBeLessThan(1000);
    expect(s.unique).toBe(0);
    const t = Date.now();
    await sink.waitFor({ unique: 1, timeoutMs: 120 });
    expect(Date.now() - t).toBeGreaterThanOrEqual(100);
  });
});

test("without any secret deliveries are accepted and counted as unverified", async () => {
  const sink = startSink({ port: 0 });
  try {
    expect((await deliver(sink)).status).toBe(204);
    expect(sink.stats()).toMatchObject({ unique: 1, unverified: 1, invalid: 0 });
  } finally {
    await sink.stop();
  }
});

describe("envelopeTimestampMs", () => {
  const t = "2026-01-02T03:04:05.678Z";
  const ms = Date.parse(t);

  test("reads the envelope timestamp in the serialised order", () => {
    expect(envelopeTimestampMs(JSON.stringify({ id: "e", type: "a", timestamp: t, data: { timestamp: "x" } }))).toBe(ms);
  });

  test("is not fooled by a nested timestamp when data comes first", () => {
    const body = JSON.stringify({ id: "e", data: { timestamp: "2000-01-01T00:00:00Z" }, type: "a", timestamp: t });
    expect(envelopeTimestampMs(body)).toBe(ms);
  });

  test("handles pretty-printed JSON and reports missing or invalid timestamps", () => {
    expect(envelopeTimestampMs(JSON.stringify({ id: "e", timestamp: t, data: 1 }, null, 2))).toBe(ms);
    expect(envelopeTimestampMs(JSON.stringify({ id: "e", data: {} }))).toBeUndefined();
    expect(envelopeTimestampMs(JSON.stringify({ timestamp: "yesterday", data: {} }))).toBeUndefined();
    expect(envelopeTimestampMs("not json")).toBeUndefined();
  });
});

describe("LogHistogram", () => {
  test("percentiles of a uniform distribution are within 1 %", () => {
    const h = new LogHistogram();
    for (let v = 1; v <= 100_000; v++) h.record(v);
    for (const p of [50, 90, 99, 99.9]) {
      const exact = (p / 100) * 100_000;
      expect(Math.abs(h.percentile(p) - exact) / exact).toBeLessThan(0.01);
    }
    expect(h.max).toBe(100_000);
    expect(h.min).toBe(1);
    expect(h.mean).toBeCloseTo(50_000.5, 5);
  });

  test("percentiles of a skewed distribution match the exact order statistics within 1 %", () => {
    const h = new LogHistogram();
    const values: number[] = [];
    for (let i = 0; i < 50_000; i++) {
      const v = Math.round(2000 + -Math.log(1 - Math.random()) * 800); // exponential tail, like latency
      values.push(v);
      h.record(v);
    }
    values.sort((a, b) => a - b);
    for (const p of [50, 95, 99, 99.9]) {
      const exact = values[Math.ceil((p / 100) * values.length) - 1]!;
      expect(Math.abs(h.percentile(p) - exact) / exact).toBeLessThan(0.01);
    }
    expect(h.percentile(100)).toBe(values.at(-1)!);
  });

  test("small values are exact and huge ones are clamped, merge and reset work", () => {
    const a = new LogHistogram();
    [3, 3, 7, 200].forEach((v) => a.record(v));
    expect(a.percentile(50)).toBe(3);
    expect(a.percentile(75)).toBe(7);
    expect(a.percentile(100)).toBe(200);
    const b = new LogHistogram();
    b.record(1e12);
    b.record(-5);
    a.merge(b);
    expect(a.count).toBe(6);
    expect(a.min).toBe(0);
    expect(a.max).toBe(2 ** 36 - 1);
    a.reset();
    expect(a.summary()).toMatchObject({ count: 0, p99: 0, max: 0 });
  });
});

test("RotatingMap remembers at least the last window/2 keys and forgets older generations", () => {
  const m = new RotatingMap<number>(4);
  for (let i = 0; i < 6; i++) m.set(`k${i}`, i);
  expect(m.get("k5")).toBe(5);
  expect(m.get("k4")).toBe(4);
  expect(m.get("k0")).toBeUndefined();
});

// The generators drive the sink in the benchmark, so their accounting is checked here too.
describe("load generators", () => {
  test("open loop holds its schedule and drops starts beyond the in-flight limit", async () => {
    const held = await runOpenLoop({ rate: 2000, durationMs: 500, concurrencyLimit: 100, send: () => Bun.sleep(2) });
    expect(held).toMatchObject({ started: 1000, ok: 1000, dropped: 0, errors: 0 });
    expect(held.durationMs).toBeLessThan(1500);
    // 10 slots × 50 ms per request = at most ~200 starts/s can run; the other ~800/s are dropped.
    const limited = await runOpenLoop({ rate: 1000, durationMs: 500, concurrencyLimit: 10, send: () => Bun.sleep(50) });
    expect(limited.started + limited.dropped).toBe(500);
    expect(limited.started).toBeGreaterThanOrEqual(50); // slack for a busy CI machine
    expect(limited.started).toBeLessThanOrEqual(130);
  });

  test("closed loop stops at count and counts errors by message", async () => {
    let concurrent = 0;
    let peak = 0;
    const r = await runClosedLoop({
      concurrency: 8,
      count: 100,
      send: async (i) => {
        peak = Math.max(peak, ++concurrent);
        await Bun.sleep(2);
        concurrent--;
        if (i % 10 === 0) throw new Error("HTTP 503");
      },
    });
    expect(r).toMatchObject({ started: 100, ok: 90, errors: 10, errorKinds: { "HTTP 503": 10 } });
    expect(peak).toBe(8);
    expect(r.latencyMs.count).toBe(90);
  });
});
