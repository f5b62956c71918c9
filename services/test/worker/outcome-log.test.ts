import { describe, expect, test } from "bun:test";
import { DeliveryOutcomeLog, type ObservedAttempt } from "../../worker/delivery/outcome-log.ts";
import { captureLog } from "../support/log.ts";

const URL = "https://user:pass@hooks.example.com:8443/in/t0ken?sig=abc";

function setup() {
  const { log, lines } = captureLog();
  let now = 1_000_000;
  const outcomes = new DeliveryOutcomeLog(log, { intervalMs: 60_000, now: () => now });
  let attempt = 0;
  const observe = (endpointId: string, over: Partial<ObservedAttempt> = {}) =>
    outcomes.observe({
      jobId: `job_${++attempt}`,
      endpointId,
      url: URL,
      attempt: 1,
      status: 500,
      errorClass: "http_status",
      errorDetail: "endpoint answered 500",
      gaveUp: false,
      ...over,
    });
  const ok = { status: 200, errorClass: null, errorDetail: null } as const;
  return { lines, observe, ok, advance: (ms: number) => (now += ms), msgs: () => lines.map((l) => l.msg) };
}

describe("delivery outcome log", () => {
  test("healthy endpoints log nothing; first failure and recovery log once each, host only", () => {
    const { lines, observe, ok, msgs } = setup();
    observe("ep_a", ok);
    expect(lines).toHaveLength(0);
    observe("ep_a", { attempt: 1, jobId: "job_x" });
    observe("ep_a", { attempt: 2 });
    observe("ep_a", { attempt: 3, status: null, errorClass: "timeout" });
    observe("ep_a", { ...ok, attempt: 4, jobId: "job_y" });
    observe("ep_a", ok);
    expect(msgs()).toEqual(["delivery failing", "delivery recovered"]);
    expect(lines[0]).toEqual({
      level: "warn",
      msg: "delivery failing",
      endpointId: "ep_a",
      host: "hooks.example.com:8443",
      errorClass: "http_status",
      status: 500,
      attempt: 1,
      jobId: "job_x",
    });
    expect(lines[1]).toMatchObject({ level: "info", endpointId: "ep_a", status: 200, attempt: 4, jobId: "job_y", failedAttempts: 3 });
    const text = JSON.stringify(lines);
    for (const secret of ["pass", "t0ken", "sig=abc", "endpoint answered"]) expect(text).not.toContain(secret);
  });

  test("a dead endpoint at 1,000 attempts a second logs one summary a minute and one 'job failed' a minute", () => {
    const { lines, observe, advance, msgs } = setup();
    for (let s = 0; s < 150; s++) {
      for (let i = 0; i < 1000; i++) observe("ep_dead", { attempt: 8, gaveUp: i % 2 === 0 });
      advance(1000);
    }
    // t=0: the first failure gives up (a job failed line); t=60s and t=120s: a summary and a job failed line.
    expect(msgs()).toEqual(["job dead: no more retries", "job dead: no more retries", "delivery still failing", "job dead: no more retries", "delivery still failing"]);
    expect(lines[2]).toMatchObject({ failedAttempts: 60_000, jobsFailed: 30_000, periodMs: 60_000, failingForMs: 60_000 });
    // Other endpoints are not held back by it.
    observe("ep_other");
    expect(msgs().at(-1)).toBe("delivery failing");
  });

  test("a flapping endpoint logs its first failure and recovery, then a summary at most once a minute", () => {
    const { observe, ok, advance, msgs, lines } = setup();
    for (let i = 0; i < 100; i++) {
      observe("ep_flap");
      observe("ep_flap", ok);
      advance(1000);
    }
    expect(msgs()).toEqual(["delivery failing", "delivery recovered", "delivery still failing", "delivery recovered"]);
    expect(lines[2]).toMatchObject({ failedAttempts: 60 });
    // Quiet for a minute: the next failure is a new run, announced again.
    advance(120_000);
    observe("ep_flap", ok);
    observe("ep_flap");
    expect(msgs().at(-1)).toBe("delivery failing");
  });

  test("an SSRF refusal is explained once per endpoint", () => {
    const { observe, lines, advance, msgs } = setup();
    const blocked = { status: null, errorClass: "blocked_address", errorDetail: "10.0.0.5 resolves to non-public address 10.0.0.5" } as const;
    for (let i = 0; i < 5; i++) {
      observe("ep_private", blocked);
      advance(30_000);
    }
    observe("ep_private", { ...blocked, gaveUp: true });
    // t=0 the explanation; t=60s and t=120s a summary; t=150s the job gives up.
    expect(msgs()).toEqual([expect.stringContaining("DELIVERY_ALLOW_PRIVATE_NETWORKS"), "delivery still failing", "delivery still failing", "job dead: no more retries"]);
    expect(lines[0]).toMatchObject({ level: "warn", endpointId: "ep_private", errorClass: "blocked_address", detail: blocked.errorDetail });
    observe("ep_other_private", blocked);
    expect(msgs().filter((m) => m.includes("DELIVERY_ALLOW_PRIVATE_NETWORKS"))).toHaveLength(2);
  });
});
