import { SPAN } from "../../services/core/telemetry/names.ts";
import type { OtlpSpan } from "../../services/test/support/otlp.ts";

/**
 * The latency budget of one event: where its time goes between the producer's request and the
 * attempt's write, read from the spans of the traces a phase sampled (`npm run bench -- --budget`).
 * A trace is one request, of one event or a batch; each of its jobs' first attempts is a sample.
 * Each stage is the gap between two span edges: the request, its commit and (RabbitMQ) publish are
 * the trace's, shared by its jobs (where a hop happened twice, a publish the sweep repeated, the
 * first counts); the message is the one the attempt ran in (the trace's latest to start before the
 * attempt: an attempt's span is its event's, not its message's child), and the write the first of
 * the trace's attempt writes to start after the response. A span that served many events (a
 * commit, a publish, a message, a write) belongs to every trace it links. Left out and counted: a
 * trace missing a hop (still in flight at the phase's end) and a job attempted more than once (a
 * retry).
 */
export interface BudgetStage {
  stage: string;
  /** What the stage is made of, for the report. */
  means: string;
  p50: number;
  p90: number;
  p99: number;
}

export interface LatencyBudget {
  /** Traces with at least one job measured. */
  traces: number;
  /** Jobs measured, each one sample of every stage (the same as `traces` for single events). */
  jobs?: number;
  /** Traces or jobs left out: a hop missing, or a retry. */
  skipped: number;
  /** Of those, how many for each reason, by hop (`send`: a retry, or no attempt yet). */
  skippedBy: Record<string, number>;
  stages: BudgetStage[];
}

type TraceHop = "request" | "commit" | "publish" | "consume" | "record";
const TRACE_SPANS: Record<string, TraceHop> = {
  [SPAN.httpRequest]: "request",
  [SPAN.ingestCommit]: "commit",
  [SPAN.outboxPublish]: "publish",
  [SPAN.deliver]: "consume",
  [SPAN.attemptsRecord]: "record",
};

// A publish span is RabbitMQ's only: the Postgres transport's jobs leave with the commit (a NOTIFY
// inside it, or the hand-over's frame right after it), so its stages run from the commit's end.
interface Hops {
  request: OtlpSpan;
  commit: OtlpSpan;
  publish?: OtlpSpan;
  consume: OtlpSpan;
  send: OtlpSpan;
  record: OtlpSpan;
}
type Edge = (hops: Hops) => number | undefined;
const STAGES: { stage: string; means: string; from: Edge; to: Edge }[] = [
  { stage: "wait for a commit", means: "request start → its group commit starts (auth, parsing, a commit in flight)", from: (h) => h.request.startMs, to: (h) => h.commit.startMs },
  { stage: "commit", means: "the group's one INSERT of events and jobs", from: (h) => h.commit.startMs, to: (h) => h.commit.endMs },
  { stage: "to publish", means: "commit done → hand-off to the queue starts", from: (h) => h.commit.endMs, to: (h) => h.publish?.startMs },
  { stage: "publish", means: "AMQP publish until confirmed (RabbitMQ; none on Postgres, whose NOTIFY is in the commit)", from: (h) => h.publish?.startMs, to: (h) => h.publish?.endMs },
  {
    stage: "queue wait",
    means:
      "published (or committed, where no publish span) → the worker starts on the message (broker, prefetch; Postgres: the hand-over's frame, or wake-up and take)",
    from: (h) => h.publish?.endMs ?? h.commit.endMs,
    to: (h) => h.consume.startMs,
  },
  { stage: "claim and checks", means: "worker starts the message → the attempt starts (claim, unless the take made it; endpoint, flow control, slot)", from: (h) => h.consume.startMs, to: (h) => h.send.startMs },
  { stage: "send", means: "the signed HTTP request until the receiver's response", from: (h) => h.send.startMs, to: (h) => h.send.endMs },
  { stage: "record", means: "response → the attempt and outcome are written (batched)", from: (h) => h.send.endMs, to: (h) => h.record.endMs },
  { stage: "request → attempt starts", means: "the end-to-end part the producer waits for, without the receiver", from: (h) => h.request.startMs, to: (h) => h.send.startMs },
  { stage: "202 answered", means: "request start → the API's answer", from: (h) => h.request.startMs, to: (h) => h.request.endMs },
];

/** The budget of the traces that started within [fromMs, toMs) (the phase's publishing window). */
export function latencyBudget(spans: OtlpSpan[], fromMs: number, toMs: number): LatencyBudget {
  const hopsByTrace = new Map<string, Partial<Record<TraceHop, OtlpSpan[]>>>();
  // Every attempt of each job, under the trace of its event.
  const attemptsByTrace = new Map<string, Map<string, OtlpSpan[]>>();
  for (const span of spans) {
    const hop = TRACE_SPANS[span.name];
    if (hop) {
      for (const traceId of tracesOf(span)) {
        let hops = hopsByTrace.get(traceId);
        if (!hops) hopsByTrace.set(traceId, (hops = {}));
        (hops[hop] ??= []).push(span);
      }
    } else if (span.name === SPAN.deliverySend) {
      let jobs = attemptsByTrace.get(span.traceId);
      if (!jobs) attemptsByTrace.set(span.traceId, (jobs = new Map()));
      const jobId = String(span.attributes["evently.job_id"] ?? span.spanId);
      jobs.set(jobId, [...(jobs.get(jobId) ?? []), span]);
    }
  }
  const samples = STAGES.map(() => [] as number[]);
  let traces = 0;
  let jobsMeasured = 0;
  const skippedBy: Record<string, number> = {};
  const skip = (reason: string) => (skippedBy[reason] = (skippedBy[reason] ?? 0) + 1);
  for (const [traceId, hops] of hopsByTrace) {
    const request = first(hops.request);
    if (!request || request.startMs < fromMs || request.startMs >= toMs) continue;
    const commit = first(hops.commit);
    const jobs = attemptsByTrace.get(traceId);
    if (!commit || !jobs) {
      skip(!commit ? "commit" : "send");
      continue;
    }
    let measured = 0;
    for (const attempts of jobs.values()) {
      if (attempts.length > 1) {
        skip("send");
        continue;
      }
      const send = attempts[0]!;
      const consume = latest((hops.consume ?? []).filter((c) => c.startMs <= send.startMs));
      // A span's start is read to the whole millisecond (the SDK anchors it to Date.now()), its end
      // as the start plus a precise duration: a write that started just after the response can
      // read up to 1 ms before it.
      const record = first((hops.record ?? []).filter((r) => r.startMs > send.endMs - 1));
      if (!consume || !record) {
        skip(!consume ? "consume" : "record");
        continue;
      }
      const one: Hops = { request, commit, publish: first(hops.publish), consume, send, record };
      STAGES.forEach((s, i) => {
        const from = s.from(one);
        const to = s.to(one);
        if (from !== undefined && to !== undefined) samples[i]!.push(to - from);
      });
      measured++;
    }
    jobsMeasured += measured;
    if (measured > 0) traces++;
  }
  return {
    traces,
    jobs: jobsMeasured,
    skipped: Object.values(skippedBy).reduce((a, b) => a + b, 0),
    skippedBy,
    stages: STAGES.map((s, i) => {
      const sorted = samples[i]!.sort((a, b) => a - b);
      return { stage: s.stage, means: s.means, p50: quantile(sorted, 0.5), p90: quantile(sorted, 0.9), p99: quantile(sorted, 0.99) };
    }),
  };
}

/** The traces a span belongs to: its own, where it has no links, or every trace it links. */
function tracesOf(span: OtlpSpan): Set<string> {
  return new Set(span.links.length > 0 ? span.links.map((l) => l.traceId) : [span.traceId]);
}

function latest(list: OtlpSpan[]): OtlpSpan | undefined {
  return list.length ? list.reduce((a, b) => (b.startMs > a.startMs ? b : a)) : undefined;
}

function first(list: OtlpSpan[] | undefined): OtlpSpan | undefined {
  return list?.length ? list.reduce((a, b) => (b.startMs < a.startMs ? b : a)) : undefined;
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const value = sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  return Math.round(value * 100) / 100;
}

/** The budget tables of every run that has one: a row per stage, p50 / p90 / p99 per phase. */
export function budgetLines(runs: { transport: string; phases: { spec: { name: string }; budget?: LatencyBudget }[] }[]): string[] {
  const lines: string[] = [];
  for (const run of runs) {
    const phases = run.phases.filter((p) => p.budget && p.spec.name !== "warmup");
    if (phases.length === 0) continue;
    lines.push(
      `## Latency budget (${run.transport})`,
      "",
      "Each stage's time in ms (p50 / p90 / p99) over the jobs of the traces the phase sampled (one per request; a",
      "batch request's trace has a job per event); stages overlap nothing and run in order, except the last two",
      "rows, which span several. Counted: " + phases.map((p) => `${p.spec.name} ${countedText(p.budget!)}`).join(", ") + ".",
      "",
      `| stage | what it is | ${phases.map((p) => p.spec.name).join(" | ")} |`,
      `| --- | --- | ${phases.map(() => "---:").join(" | ")} |`,
      ...phases[0]!.budget!.stages.map(
        (stage, i) =>
          `| ${stage.stage} | ${stage.means} | ${phases.map((p) => { const s = p.budget!.stages[i]!; return s.p50 == null || Number.isNaN(s.p50) ? "– (none on this transport)" : `${s.p50} / ${s.p90} / ${s.p99}`; }).join(" | ")} |`,
      ),
      "",
    );
  }
  return lines;
}

function countedText(budget: LatencyBudget): string {
  const jobs = budget.jobs !== undefined && budget.jobs !== budget.traces ? `, ${budget.jobs} jobs` : "";
  return `${budget.traces} traces${jobs} (${budget.skipped} left out${skippedText(budget)})`;
}

function skippedText(budget: LatencyBudget): string {
  const by = Object.entries(budget.skippedBy);
  const text = (hop: string, n: number) =>
    hop === "send" ? `${n} retried or never attempted` : `${n} without a ${hop} span`;
  return by.length ? `: ${by.map(([hop, n]) => text(hop, n)).join(", ")}` : "";
}
