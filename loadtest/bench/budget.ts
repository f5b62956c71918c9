import { SPAN } from "../../services/core/telemetry/names.ts";
import type { OtlpSpan } from "../../services/test/support/otlp.ts";

/**
 * The latency budget of one event: where its time goes between the producer's request and the
 * attempt's write, read from the spans of the traces a phase sampled (`npm run bench -- --budget`).
 * Each stage is the gap between two span edges of the same trace; a span that served many events (a
 * commit, a publish, a message) belongs to every trace it links, and where a hop happened twice (a
 * publish the sweep repeated, a message offered again) the first counts. Traces with more than one
 * attempt (a retry) or a missing hop are left out and counted.
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
  /** Traces with every hop, the ones the stages are taken from. */
  traces: number;
  /** Sampled traces left out: a hop missing (still in flight at the phase's end) or a retry. */
  skipped: number;
  /** Of those, how many lacked each hop (or, for `send`, had a retry), by hop. */
  skippedBy: Record<string, number>;
  stages: BudgetStage[];
}

type Hop = "request" | "commit" | "publish" | "consume" | "send" | "record";
const HOP_SPANS: Record<string, Hop> = {
  [SPAN.httpRequest]: "request",
  [SPAN.ingestCommit]: "commit",
  [SPAN.outboxPublish]: "publish",
  [SPAN.deliver]: "consume",
  [SPAN.deliverySend]: "send",
  [SPAN.attemptsRecord]: "record",
};

// A publish span is RabbitMQ's only: the Postgres transport's wake-up is a NOTIFY inside the
// commit, so its stages run from the commit's end.
type Hops = Record<Exclude<Hop, "publish">, OtlpSpan> & { publish?: OtlpSpan };
type Edge = (hops: Hops) => number | undefined;
const STAGES: { stage: string; means: string; from: Edge; to: Edge }[] = [
  { stage: "wait for a commit", means: "request start → its group commit starts (auth, parsing, a commit in flight)", from: (h) => h.request.startMs, to: (h) => h.commit.startMs },
  { stage: "commit", means: "the group's one INSERT of events and jobs", from: (h) => h.commit.startMs, to: (h) => h.commit.endMs },
  { stage: "to publish", means: "commit done → hand-off to the queue starts", from: (h) => h.commit.endMs, to: (h) => h.publish?.startMs },
  { stage: "publish", means: "AMQP publish until confirmed (RabbitMQ; none on Postgres, whose NOTIFY is in the commit)", from: (h) => h.publish?.startMs, to: (h) => h.publish?.endMs },
  {
    stage: "queue wait",
    means: "published (or committed, where no publish span) → the worker starts on the message (broker, prefetch; Postgres: wake-up and take)",
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
  const byTrace = new Map<string, Partial<Record<Hop, OtlpSpan[]>>>();
  for (const span of spans) {
    const hop = HOP_SPANS[span.name];
    if (!hop) continue;
    for (const traceId of new Set([span.traceId, ...span.links.map((l) => l.traceId)])) {
      let hops = byTrace.get(traceId);
      if (!hops) byTrace.set(traceId, (hops = {}));
      (hops[hop] ??= []).push(span);
    }
  }
  const samples = STAGES.map(() => [] as number[]);
  let traces = 0;
  let skipped = 0;
  const skippedBy: Record<string, number> = {};
  for (const hops of byTrace.values()) {
    const request = hops.request?.[0];
    if (!request || request.startMs < fromMs || request.startMs >= toMs) continue;
    const wrong = (Object.values(HOP_SPANS) as Hop[]).filter((hop) => (!hops[hop] && hop !== "publish") || (hop === "send" && hops[hop]!.length > 1));
    if (wrong.length > 0) {
      skipped++;
      for (const hop of wrong) skippedBy[hop] = (skippedBy[hop] ?? 0) + 1;
      continue;
    }
    const one = Object.fromEntries(Object.entries(hops).map(([hop, list]) => [hop, list.reduce((a, b) => (b.startMs < a.startMs ? b : a))])) as Hops;
    traces++;
    STAGES.forEach((s, i) => {
      const from = s.from(one);
      const to = s.to(one);
      if (from !== undefined && to !== undefined) samples[i]!.push(to - from);
    });
  }
  return {
    traces,
    skipped,
    skippedBy,
    stages: STAGES.map((s, i) => {
      const sorted = samples[i]!.sort((a, b) => a - b);
      return { stage: s.stage, means: s.means, p50: quantile(sorted, 0.5), p90: quantile(sorted, 0.9), p99: quantile(sorted, 0.99) };
    }),
  };
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
      "Each stage's time in ms (p50 / p90 / p99) over the traces the phase sampled; stages overlap nothing and",
      "run in order, except the last two rows, which span several. Traces counted: " +
        phases.map((p) => `${p.spec.name} ${p.budget!.traces} (${p.budget!.skipped} left out${skippedText(p.budget!)})`).join(", ") + ".",
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

function skippedText(budget: LatencyBudget): string {
  const by = Object.entries(budget.skippedBy);
  return by.length ? `: ${by.map(([hop, n]) => (hop === "send" ? `${n} retried` : `${n} without a ${hop} span`)).join(", ")}` : "";
}
