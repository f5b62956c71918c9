import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { DEFAULT_APPLICATION_ID } from "../../core/applications/sql.ts";
import { createSql, type Sql } from "../../core/db/client.ts";
import { insertEndpoint } from "../../core/endpoints/sql.ts";
import {
  applyObserved,
  isTroubled,
  nothingObserved,
  observe,
  openIntervalMs,
  passage,
  type CircuitPolicy,
  type Health,
  type Observed,
} from "../../core/health/circuit.ts";
import { newId } from "../../core/ids.ts";
import { silentLogger } from "../../core/log.ts";
import type { JobMessage } from "../../core/queue/messages.ts";
import type { DeliveryTarget } from "../../worker/endpoint-cache.ts";
import { CircuitBreaker } from "../../worker/delivery/circuit.ts";
import type { Sent } from "../../worker/delivery/sending.ts";
import { pollUntil } from "../support/poll.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";

const policy: CircuitPolicy = { failureThreshold: 5, failureRatio: 0.5, windowMs: 60_000, minAttempts: 10, openMs: 30_000, openMaxMs: 600_000 };
const t0 = new Date("2026-03-01T12:00:00Z");
const at = (ms: number) => new Date(t0.getTime() + ms);

function fresh(overrides: Partial<Health> = {}): Health {
  return {
    endpointId: "ep_x",
    circuit: "closed",
    circuitChangedAt: t0,
    circuitRetryAt: null,
    consecutiveFailures: 0,
    failingSince: null,
    windowStartedAt: t0,
    windowAttempts: 0,
    windowFailures: 0,
    timesOpened: 0,
    ...overrides,
  };
}

/** Attempts as a string: `f` failed, `s` succeeded, `P`/`p` the probe delivered/failed; one ms apart from `start`. */
function seen(outcomes: string, start = 0): Observed {
  const o = nothingObserved();
  [...outcomes].forEach((c, i) => observe(o, c === "s" || c === "P", at(start + i), c === "P" || c === "p"));
  return o;
}

describe("circuit state machine (pure, clock injected)", () => {
  test("folding attempts keeps the failures after the last success and when they began", () => {
    expect(seen("ffsff", 100)).toEqual({ attempts: 5, failures: 4, trailingFailures: 2, succeeded: true, trailingSince: at(103), probe: null });
    expect(seen("fff", 10)).toMatchObject({ trailingFailures: 3, succeeded: false, trailingSince: at(10) });
    expect(seen("ffs")).toMatchObject({ trailingFailures: 0, trailingSince: null });
  });

  test("opens on the threshold of consecutive failures, counted across writes, with the open interval set", () => {
    let h = applyObserved(fresh(), seen("fff", 0), policy, at(10));
    expect(h).toMatchObject({ circuit: "closed", consecutiveFailures: 3, failingSince: at(0) });
    h = applyObserved(h, seen("f", 20), policy, at(30));
    expect(h.circuit).toBe("closed");
    h = applyObserved(h, seen("f", 40), policy, at(50));
    expect(h).toMatchObject({ circuit: "open", circuitChangedAt: at(50), timesOpened: 1, consecutiveFailures: 5, failingSince: at(0) });
    expect(h.circuitRetryAt).toEqual(at(50 + policy.openMs));
  });

  test("a success in between ends the run; failures after it start a new one", () => {
    const h = applyObserved(fresh({ consecutiveFailures: 4, failingSince: at(-5000) }), seen("sff", 0), policy, at(10));
    expect(h).toMatchObject({ circuit: "closed", consecutiveFailures: 2, failingSince: at(1) });
    expect(applyObserved(h, seen("s", 20), policy, at(30))).toMatchObject({ consecutiveFailures: 0, failingSince: null });
  });

  test("opens on the failure ratio once the window has enough attempts, not before", () => {
    // 4 of 8 failed: half, but fewer than minAttempts.
    let h = applyObserved(fresh(), seen("fsfsfsfs"), policy, at(10));
    expect(h).toMatchObject({ circuit: "closed", windowAttempts: 8, windowFailures: 4 });
    h = applyObserved(h, seen("sf", 20), policy, at(30));
    expect(h).toMatchObject({ circuit: "open", timesOpened: 1 });
    // 4 of 10 is below the ratio: stays closed.
    expect(applyObserved(fresh(), seen("fsfsfsfsss"), policy, at(10)).circuit).toBe("closed");
  });

  test("a window that ran out starts over with what is applied next", () => {
    const old = fresh({ windowStartedAt: at(0), windowAttempts: 9, windowFailures: 4 });
    const h = applyObserved(old, seen("f", policy.windowMs + 5), policy, at(policy.windowMs + 10));
    expect(h).toMatchObject({ circuit: "closed", windowStartedAt: at(policy.windowMs + 10), windowAttempts: 1, windowFailures: 1 });
  });

  test("either rule can be turned off with 0", () => {
    const noCount = { ...policy, failureThreshold: 0 };
    expect(applyObserved(fresh(), seen("fffffffff"), noCount, at(10)).circuit).toBe("closed");
    expect(applyObserved(fresh(), seen("ffffffffff"), noCount, at(10)).circuit).toBe("open"); // ratio, 10 attempts
    const off = { ...noCount, failureRatio: 0 };
    expect(applyObserved(fresh(), seen("f".repeat(100)), off, at(200)).circuit).toBe("closed");
  });

  test("while open or half-open only the probe moves the circuit; stragglers update the run", () => {
    const open = fresh({ circuit: "open", circuitRetryAt: at(30_000), consecutiveFailures: 5, failingSince: at(0), timesOpened: 1 });
    expect(applyObserved(open, seen("ffs", 100), policy, at(200))).toMatchObject({ circuit: "open", consecutiveFailures: 0, failingSince: null });
    expect(applyObserved(open, seen("ff", 100), policy, at(200))).toMatchObject({ circuit: "open", consecutiveFailures: 7, circuitRetryAt: at(30_000) });
    const half = { ...open, circuit: "half_open" as const, circuitRetryAt: at(60_000) };
    expect(applyObserved(half, seen("s", 100), policy, at(200)).circuit).toBe("half_open");
  });

  test("a delivered probe closes the circuit and clears the run; a failed one reopens it for longer", () => {
    const half = fresh({ circuit: "half_open", circuitRetryAt: at(100_000), consecutiveFailures: 6, failingSince: at(0), timesOpened: 1 });
    const closed = applyObserved(half, seen("P", 90_000), policy, at(90_010));
    expect(closed).toMatchObject({ circuit: "closed", circuitChangedAt: at(90_010), circuitRetryAt: null, consecutiveFailures: 0, failingSince: null, timesOpened: 1 });
    const reopened = applyObserved(half, seen("p", 90_000), policy, at(90_010));
    // Failing for 90 s: the circuit stays open 90 s (between 30 s and 10 min), and a reopen is not counted as an opening.
    expect(reopened).toMatchObject({ circuit: "open", consecutiveFailures: 7, timesOpened: 1 });
    expect(reopened.circuitRetryAt).toEqual(at(90_010 + 90_010));
    // A probe result for a circuit that is not half-open any more (enabled afresh meanwhile) is an ordinary attempt.
    expect(applyObserved(fresh(), seen("P"), policy, at(5)).circuit).toBe("closed");
  });

  test("the open interval grows with the failure run, within its bounds", () => {
    expect(openIntervalMs({ failingSince: null }, policy, at(0))).toBe(30_000);
    expect(openIntervalMs({ failingSince: at(0) }, policy, at(45_000))).toBe(45_000);
    expect(openIntervalMs({ failingSince: at(0) }, policy, at(86_400_000))).toBe(600_000);
  });

  test("troubled: circuit not closed, a failure run, or failures in a live window; healthy otherwise", () => {
    expect(isTroubled(fresh(), policy, at(0))).toBe(false);
    expect(isTroubled(fresh({ consecutiveFailures: 1 }), policy, at(0))).toBe(true);
    expect(isTroubled(fresh({ circuit: "open" }), policy, at(0))).toBe(true);
    expect(isTroubled(fresh({ windowFailures: 1, windowAttempts: 3 }), policy, at(policy.windowMs - 1))).toBe(true);
    expect(isTroubled(fresh({ windowFailures: 1, windowAttempts: 3 }), policy, at(policy.windowMs))).toBe(false);
  });

  test("passage: closed passes, open waits for its retry time, then a probe may be claimed", () => {
    expect(passage({ circuit: "closed", circuitRetryAt: null }, 0)).toEqual({ kind: "pass" });
    expect(passage({ circuit: "open", circuitRetryAt: at(1000) }, t0.getTime())).toEqual({ kind: "wait", untilMs: at(1000).getTime() });
    expect(passage({ circuit: "open", circuitRetryAt: at(1000) }, at(1000).getTime())).toEqual({ kind: "probe" });
    expect(passage({ circuit: "half_open", circuitRetryAt: at(1000) }, at(999).getTime()).kind).toBe("wait");
  });
});

describe("circuit breaker over a shared database (two workers)", () => {
  let db: TestDatabase;
  let sql: Sql;
  const disabled: { id: string; reason: string }[] = [];
  const control = { disable: async (target: DeliveryTarget, reason: string) => void disabled.push({ id: target.id, reason }) };
  const fast: CircuitPolicy = { ...policy, failureThreshold: 3, openMs: 300, openMaxMs: 300 };
  const workers: CircuitBreaker[] = [];
  const worker = async (autoDisableAfterMs = 0) => {
    const w = new CircuitBreaker(sql, control, silentLogger, { policy: fast, autoDisableAfterMs, timeoutMs: () => 1000, flushDelayMs: 5 });
    await w.start();
    workers.push(w);
    return w;
  };

  beforeAll(async () => {
    db = await createTestDatabase();
    sql = createSql({ DATABASE_URL: db.url, DATABASE_POOL_MAX: 6 }, { pool: "test" });
  });
  afterAll(async () => {
    for (const w of workers) await w.stop();
    await sql.end();
    await db.drop();
  });

  async function endpoint(): Promise<DeliveryTarget> {
    const id = newId("endpoint");
    await insertEndpoint(sql, DEFAULT_APPLICATION_ID, id, "whsec_x", {
      url: "https://hooks.example.com/c", description: "", enabled: true, timeoutMs: null, headers: {}, rateLimitPerSecond: null,
      metadata: {}, retryPolicy: null, ordering: "unordered", ttlSeconds: null,
    });
    return { id, appId: DEFAULT_APPLICATION_ID, recordedUrl: "https://hooks.example.com/c" } as DeliveryTarget;
  }
  const job = (endpointId: string): JobMessage => ({
    jobId: newId("job"), eventId: newId("event"), endpointId, attempt: 0, createdAt: Date.now(), expiresAt: null, body: "{}",
  });
  const sent = (ok: boolean): Sent => ({
    attemptedAt: new Date(),
    headers: {},
    result: { status: ok ? 200 : 500, errorClass: ok ? null : "http_status", errorDetail: null, durationMs: 1, responseBody: "", retryAfter: null } as Sent["result"],
  });
  const attempt = (w: CircuitBreaker, target: DeliveryTarget, ok: boolean, j = job(target.id)) =>
    w.attempted(target, j, sent(ok), { jobId: j.jobId, status: ok ? "delivered" : "scheduled", endReason: null, attemptNumber: 1, nextAttemptAt: null, attemptedAt: new Date() });
  const healthOf = async (id: string) => (await sql`select * from endpoint_health where endpoint_id = ${id}`)[0]!;

  test("a healthy endpoint costs no write: many successes leave no row", async () => {
    const w = await worker();
    const target = await endpoint();
    for (let i = 0; i < 200; i++) attempt(w, target, true);
    await w.flush();
    await Bun.sleep(50);
    expect((await sql`select 1 from endpoint_health where endpoint_id = ${target.id}`).length).toBe(0);
    expect(await w.check(job(target.id), target, Date.now())).toBeNull();
  });

  test("failures open the circuit; the other worker learns it by notification and holds too", async () => {
    const [a, b] = [await worker(), await worker()];
    const target = await endpoint();
    for (let i = 0; i < 3; i++) attempt(a, target, false);
    await pollUntil(async () => (await sql`select circuit from endpoint_health where endpoint_id = ${target.id}`)[0]?.circuit === "open", { what: "circuit open" });
    const verdict = await pollUntil(async () => (await b.check(job(target.id), target, Date.now())) ?? false, { what: "worker b holds" });
    expect(verdict).toMatchObject({ kind: "hold", reason: "circuit_open" });
    expect((verdict as { delayMs: number }).delayMs).toBeLessThanOrEqual(fast.openMs);
    expect(await a.check(job(target.id), target, Date.now())).toMatchObject({ kind: "hold", reason: "circuit_open" });
  });

  test("after the open interval exactly one of many concurrent deliveries, across workers, is the probe", async () => {
    const [a, b] = [await worker(), await worker()];
    const target = await endpoint();
    for (let i = 0; i < 3; i++) attempt(a, target, false);
    await pollUntil(() => b.viewOf(target.id)?.circuit === "open", { what: "b sees open" });
    await pollUntil(() => a.viewOf(target.id)?.circuit === "open", { what: "a sees open" });
    await Bun.sleep(fast.openMs + 20);
    const jobs = Array.from({ length: 20 }, () => job(target.id));
    const verdicts = await Promise.all(jobs.map((j, i) => (i % 2 ? a : b).check(j, target, Date.now())));
    const probes = verdicts.flatMap((v, i) => (v === null ? [jobs[i]!] : []));
    expect(probes).toHaveLength(1);
    expect(verdicts.filter((v) => v?.kind === "hold")).toHaveLength(19);
    expect((await healthOf(target.id)).circuit).toBe("half_open");

    // The probe fails: open again. After the interval, a new probe; delivered: closed, and every worker passes again.
    const prober = jobs.indexOf(probes[0]!) % 2 ? a : b;
    attempt(prober, target, false, probes[0]);
    await pollUntil(async () => (await healthOf(target.id)).circuit === "open", { what: "reopened" });
    await Bun.sleep(fast.openMs + 20);
    const second = job(target.id);
    expect(await a.check(second, target, Date.now())).toBeNull();
    attempt(a, target, true, second);
    await pollUntil(async () => (await healthOf(target.id)).circuit === "closed", { what: "closed" });
    const row = await healthOf(target.id);
    expect(row).toMatchObject({ consecutiveFailures: 0, failingSince: null, timesOpened: 1 });
    await pollUntil(async () => (await b.check(job(target.id), target, Date.now())) === null, { what: "b passes" });
  });

  test("a job that passed the check before the circuit opened is held by the recheck at its slot; the probe is not", async () => {
    const [a, b] = [await worker(), await worker()];
    const target = await endpoint();
    const waiting = job(target.id);
    expect(await b.check(waiting, target, Date.now())).toBeNull(); // passed while closed, then waits for a slot
    for (let i = 0; i < 3; i++) attempt(a, target, false);
    await pollUntil(() => b.viewOf(target.id)?.circuit === "open", { what: "b sees open" });
    expect(b.recheck(waiting, target, Date.now())).toMatchObject({ kind: "hold", reason: "circuit_open" });

    await Bun.sleep(fast.openMs + 20);
    const probe = job(target.id);
    expect(await b.check(probe, target, Date.now())).toBeNull(); // won the probe
    expect(b.recheck(probe, target, Date.now())).toBeNull();
    expect(b.recheck(job(target.id), target, Date.now())).toMatchObject({ kind: "hold", reason: "circuit_open" });
  });

  test("an endpoint failing longer than the auto-disable time is disabled at its next failure", async () => {
    const w = await worker(200);
    const target = await endpoint();
    attempt(w, target, false);
    await pollUntil(async () => (await sql`select consecutive_failures from endpoint_health where endpoint_id = ${target.id}`)[0]?.consecutiveFailures === 1, {
      what: "first failure",
    });
    expect(disabled.filter((d) => d.id === target.id)).toEqual([]);
    await Bun.sleep(250);
    attempt(w, target, false);
    const found = await pollUntil(() => disabled.find((d) => d.id === target.id), { what: "auto-disable" });
    expect(found.reason).toMatch(/^failing since \d{4}-\d\d-\d\dT[\d:.]+Z: auto-disabled$/);
  });
});
