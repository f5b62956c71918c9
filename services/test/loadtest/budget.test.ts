import { describe, expect, test } from "bun:test";
import { latencyBudget, type LatencyBudget } from "../../../loadtest/bench/budget.ts";
import { SPAN } from "../../core/telemetry/names.ts";
import type { OtlpSpan } from "../support/otlp.ts";

/**
 * The latency budget (loadtest/bench/budget.ts) from hand-made spans laid out as the roles emit
 * them: a request's trace holds its commit and its jobs' attempts; a message and a write link every
 * trace they served; an attempt is a child of its event, not of its message.
 */

let ids = 0;
function span(name: string, traceId: string, startMs: number, endMs: number, extra: Partial<OtlpSpan> = {}): OtlpSpan {
  return { name, traceId, spanId: `s${++ids}`, parentSpanId: "", links: [], attributes: {}, startMs, endMs, ...extra };
}
const linking = (...traceIds: string[]) => ({ links: traceIds.map((traceId) => ({ traceId, spanId: "x" })) });
const attempt = (traceId: string, jobId: string, startMs: number, endMs: number) =>
  span(SPAN.deliverySend, traceId, startMs, endMs, { attributes: { "evently.job_id": jobId } });
const stage = (budget: LatencyBudget, name: string) => budget.stages.find((s) => s.stage === name)!;

describe("latency budget", () => {
  test("a batch request's jobs are one sample each, timed in the message each ran in and the write after its response", () => {
    const spans = [
      span(SPAN.httpRequest, "batch", 1000, 1004),
      span(SPAN.ingestCommit, "batch", 1001, 1003, linking("batch")),
      // Two takes served the batch's two jobs; the second also served another trace.
      span(SPAN.deliver, "m1", 1005, 1010, linking("batch")),
      span(SPAN.deliver, "m2", 1020, 1030, linking("batch", "other")),
      attempt("batch", "job-a", 1006, 1008),
      attempt("batch", "job-b", 1022, 1025),
      // Writes: one after job a's response, one after job b's (which reads as starting a fraction early).
      span(SPAN.attemptsRecord, "w1", 1009, 1012, linking("batch")),
      span(SPAN.attemptsRecord, "w2", 1024.5, 1040, linking("batch", "other")),
    ];
    const budget = latencyBudget(spans, 0, 2000);
    expect(budget.traces).toBe(1);
    expect(budget.jobs).toBe(2);
    expect(budget.skipped).toBe(0);
    // Queue wait: commit end (1003) → message start, 2 and 17 ms; p50 of two samples is the larger.
    expect(stage(budget, "queue wait")).toMatchObject({ p50: 17, p99: 17 });
    expect(stage(budget, "claim and checks")).toMatchObject({ p50: 2, p99: 2 }); // 1 and 2 ms
    expect(stage(budget, "record")).toMatchObject({ p50: 15, p99: 15 }); // 1008→1012 and 1025→1040
    expect(stage(budget, "request → attempt starts")).toMatchObject({ p50: 22 });
    expect(stage(budget, "publish").p50).toBeNaN(); // no publish span: the Postgres transport
  });

  test("a retried job, a trace still in flight and a trace started outside the window are left out", () => {
    const spans = [
      span(SPAN.httpRequest, "retried", 1000, 1002),
      span(SPAN.ingestCommit, "retried", 1000, 1001, linking("retried")),
      span(SPAN.deliver, "m", 1002, 1100, linking("retried")),
      attempt("retried", "job-r", 1003, 1004),
      attempt("retried", "job-r", 1090, 1091),
      span(SPAN.attemptsRecord, "w", 1092, 1093, linking("retried")),
      span(SPAN.httpRequest, "in-flight", 1500, 1501),
      span(SPAN.ingestCommit, "in-flight", 1500, 1501, linking("in-flight")),
      span(SPAN.httpRequest, "early", 10, 11),
    ];
    const budget = latencyBudget(spans, 500, 2000);
    expect(budget).toMatchObject({ traces: 0, jobs: 0, skipped: 2, skippedBy: { send: 2 } });
  });
});
