import type { AmqpCeiling, Ceilings, PostgresCeiling, Probe } from "./ceilings.ts";
import type { CpuUse, PhaseResult } from "./phases.ts";
import { KEEP_UP } from "./phases.ts";

/** Everything one `bun run bench` produced; written as JSON and rendered as Markdown. */
export interface BenchReport {
  startedAt: string;
  finishedAt: string;
  quick: boolean;
  /** git describe of the tree measured, when available. */
  revision: string;
  stack: { roles: string[]; env: Record<string, string>; databaseSettings?: Record<string, string>; postgresSettings?: Record<string, string> };
  ceilings: Ceilings | null;
  phases: PhaseResult[];
  /** Role processes' (and the bench process's) peak RSS (VmHWM) and RSS at the end of the run. */
  memory: Record<string, { peakRssMiB: number; rssMiB: number }>;
  summary: Summary;
  /** Every phase delivered every accepted event and saw no invalid signature. */
  passed: boolean;
  failures: string[];
}

/** Issue 4's targets: the report says where each figure stands; the run never fails on a speed. */
export const TARGETS = { ingestSingle: 10_000, ingestBatch: 40_000, sustained: 5_000, latencyP50Ms: 10, latencyP99Ms: 50, rssMiB: 256 };

export interface Figure {
  value: number;
  /** The machine's ceiling for the same work, and value / ceiling. */
  ceiling?: number;
  ratio?: number;
  phase: string;
}

export interface Summary {
  /** POST /events, closed loop at saturation: accepted events/s vs Postgres one-row commits/s. */
  ingestSingle?: Figure;
  /** POST /events/batch, closed loop: accepted events/s vs raw 500-row inserts, rows/s. */
  ingestBatch?: Figure;
  /** The same two with the worker and dispatcher stopped while publishing: ingest on its own. */
  burstSingle?: Figure;
  burstBatch?: Figure;
  /** End-to-end latency (event timestamp → first receipt at the sink) at fixed rates. */
  latency: Array<{ phase: string; targetPerSecond: number; achievedPerSecond: number; p50: number; p95: number; p99: number; max: number }>;
  /** Highest ramp step that kept up, in accepted (= delivered) events/s. */
  sustained?: { phase: string; eventsPerSecond: number; deliveredWhilePublishing: number; firstFailing?: string };
  /** Deliveries/s while working off the backlog the ingest phases left (no new load): a drain, not a sustained rate. */
  backlogDrain: Array<{ phase: string; events: number; perSecond: number }>;
  /** Sustained deliveries/s as a share of the machine's raw rates. */
  sustainedRatios?: { rabbitSingle?: number; rabbitBatch64Jobs?: number; httpRequests?: number };
}

const ok = <T extends object>(p: Probe<T> | undefined): T | undefined => (p && !("error" in p) ? (p as T) : undefined);
const ratio = (v: number, c: number | undefined) => (c ? Math.round((v / c) * 1000) / 1000 : undefined);

export function summarise(phases: PhaseResult[], c: Ceilings | null, _memory: BenchReport["memory"]): Summary {
  const pg = ok(c?.postgres);
  const byName = (name: string) => phases.find((p) => p.spec.name === name);
  const fig = (p: PhaseResult | undefined, ceiling: number | undefined): Figure | undefined =>
    p && { value: p.publish.eventsPerSecond, ceiling, ratio: ratio(p.publish.eventsPerSecond, ceiling), phase: p.spec.name };
  const ramp = phases.filter((p) => p.spec.group === "ramp");
  const best = ramp.filter((p) => p.keptUp).sort((a, b) => b.publish.eventsPerSecond - a.publish.eventsPerSecond)[0];
  const failing = ramp.find((p) => !p.keptUp);
  const single = ok(c?.rabbitmq.single);
  const batch = ok(c?.rabbitmq.batch64);
  const http = ok(c?.http);
  return {
    ingestSingle: fig(byName("ingest-single"), pg?.singleRowsPerSec),
    ingestBatch: fig(byName("ingest-batch"), pg?.batchRowsPerSec),
    burstSingle: fig(byName("burst-single"), pg?.singleRowsPerSec),
    burstBatch: fig(byName("burst-batch"), pg?.batchRowsPerSec),
    latency: phases
      .filter((p) => p.spec.group === "latency")
      .map((p) => ({
        phase: p.spec.name,
        targetPerSecond: p.spec.eventsPerSecond ?? 0,
        achievedPerSecond: p.publish.eventsPerSecond,
        ...(({ p50, p95, p99, max }) => ({ p50, p95, p99, max }))(p.delivery.latencyMs),
      })),
    sustained: best && {
      phase: best.spec.name,
      eventsPerSecond: best.publish.eventsPerSecond,
      deliveredWhilePublishing: best.delivery.duringPublishPerSecond,
      firstFailing: failing?.spec.name,
    },
    backlogDrain: phases
      .filter((p) => p.spec.group === "ingest" && p.delivery.drainPerSecond)
      .map((p) => ({ phase: p.spec.name, events: p.delivery.backlogAtPublishEnd, perSecond: p.delivery.drainPerSecond! })),
    sustainedRatios: best && {
      rabbitSingle: ratio(best.publish.eventsPerSecond, single?.messagesPerSec),
      rabbitBatch64Jobs: ratio(best.publish.eventsPerSecond, batch ? batch.messagesPerSec * 64 : undefined),
      httpRequests: ratio(best.publish.eventsPerSecond, http?.requestsPerSec),
    },
  };
}

const n = (v: number) => Math.round(v).toLocaleString("en-US");
const ms = (v: number) => (v >= 100 ? n(v) : v.toFixed(1));

function probe<T>(p: Probe<T> | undefined, render: (v: T) => string): string {
  if (p === undefined) return "not measured";
  return "error" in (p as object) ? `failed: ${(p as { error: string }).error}` : render(p as T);
}

function ceilingLines(c: Ceilings): string[] {
  const amqp = (a: AmqpCeiling) => `${n(a.messagesPerSec)} msg/s (${n(a.messageBytes)} B, ${a.queueType}, ${a.window} unconfirmed)`;
  return [
    "| Probe | Result |",
    "| --- | --- |",
    `| Postgres, 500-row unnest inserts, 2 in flight | ${probe(c.postgres, (p: PostgresCeiling) => `${n(p.batchRowsPerSec)} rows/s (${p.payloadBytes} B jsonb)`)} |`,
    `| Postgres, one row per commit, 32 in flight | ${probe(c.postgres, (p: PostgresCeiling) => `${n(p.singleRowsPerSec)} rows/s`)} |`,
    `| RabbitMQ confirmed persistent publish, 1 job/message | ${probe(c.rabbitmq.single, amqp)} |`,
    `| RabbitMQ confirmed persistent publish, 64 jobs/message | ${probe(c.rabbitmq.batch64, (a) => `${amqp(a)} = ${n(a.messagesPerSec * 64)} jobs/s`)} |`,
    `| Bun.serve JSON POST → 202, fetch with 64 in flight | ${probe(c.http, (h) => `${n(h.requestsPerSec)} req/s (p50 ${ms(h.p50Ms)} ms, p99 ${ms(h.p99Ms)} ms)`)} |`,
  ];
}

const pct = (r: number | undefined) => (r === undefined ? "–" : `${(r * 100).toFixed(r < 0.1 ? 1 : 0)}%`);
const meets = (good: boolean) => (good ? "meets" : "misses");

function headline(r: BenchReport): string[] {
  const s = r.summary;
  const t = TARGETS;
  const lines = ["| Figure | Result | Target | Machine ceiling (same run) | Share of ceiling |", "| --- | --- | --- | --- | --- |"];
  const ingest: Array<[Figure | undefined, string, number, string]> = [
    [s.ingestSingle, "Ingest, single events, delivery running", t.ingestSingle, "Postgres one-row commits/s"],
    [s.burstSingle, "Ingest, single events, delivery stopped", t.ingestSingle, "Postgres one-row commits/s"],
    [s.ingestBatch, "Ingest, batches of 500, delivery running", t.ingestBatch, "rows/s raw 500-row inserts"],
    [s.burstBatch, "Ingest, batches of 500, delivery stopped", t.ingestBatch, "rows/s raw 500-row inserts"],
  ];
  for (const [f, label, target, ceiling] of ingest)
    if (f)
      lines.push(
        `| ${label} (\`${f.phase}\`) | ${n(f.value)} events/s | ≥ ${n(target)}/s (${meets(f.value >= target)}) | ` +
          `${f.ceiling ? `${n(f.ceiling)} ${ceiling}` : "–"} | ${pct(f.ratio)} |`,
      );
  for (const l of s.latency)
    lines.push(
      `| End-to-end latency at ${n(l.targetPerSecond)}/s (\`${l.phase}\`, achieved ${n(l.achievedPerSecond)}/s) | p50 ${ms(l.p50)} / p95 ${ms(l.p95)} / p99 ${ms(l.p99)} / max ${ms(l.max)} ms | ` +
        `${l.targetPerSecond === 1000 ? `p50 ≤ ${t.latencyP50Ms}, p99 ≤ ${t.latencyP99Ms} ms (${meets(l.p50 <= t.latencyP50Ms && l.p99 <= t.latencyP99Ms)})` : "–"} | – | – |`,
    );
  const c = r.ceilings;
  const single = c && ok(c.rabbitmq.single);
  const batch = c && ok(c.rabbitmq.batch64);
  const http = c && ok(c.http);
  if (s.sustained) {
    const ceilings = [
      single && `${n(single.messagesPerSec)} RabbitMQ msg/s (1 job/msg): ${pct(s.sustainedRatios?.rabbitSingle)}`,
      batch && `${n(batch.messagesPerSec * 64)} RabbitMQ jobs/s (64/msg): ${pct(s.sustainedRatios?.rabbitBatch64Jobs)}`,
      http && `${n(http.requestsPerSec)} Bun.serve req/s: ${pct(s.sustainedRatios?.httpRequests)}`,
    ].filter(Boolean);
    lines.push(
      `| Sustained end-to-end deliveries (ramp, highest step kept up: \`${s.sustained.phase}\`${s.sustained.firstFailing ? `; \`${s.sustained.firstFailing}\` did not` : ""}) | ` +
        `${n(s.sustained.eventsPerSecond)} events/s (${n(s.sustained.deliveredWhilePublishing)}/s delivered during the step) | ≥ ${n(t.sustained)}/s (${meets(s.sustained.eventsPerSecond >= t.sustained)}) | ` +
        `${ceilings.map((x) => (x as string).split(": ")[0]).join("; ") || "–"} | ${ceilings.map((x) => (x as string).split(": ")[1]).join("; ") || "–"} |`,
    );
  } else {
    lines.push(`| Sustained end-to-end deliveries (ramp) | no step kept up | ≥ ${n(t.sustained)}/s (misses) | – | – |`);
  }
  for (const d of s.backlogDrain)
    lines.push(`| Backlog drain after \`${d.phase}\` (no new load; not a sustained rate) | ${n(d.perSecond)} deliveries/s over ${n(d.events)} events | – | – | – |`);
  for (const [role, m] of Object.entries(r.memory))
    lines.push(`| Peak RSS, ${role} | ${m.peakRssMiB} MiB (${m.rssMiB} MiB at the end) | ${role === "api" || role === "worker" ? `≤ ${t.rssMiB} MiB (${meets(m.peakRssMiB <= t.rssMiB)})` : "–"} | – | – |`);
  return lines;
}

const GROUPS = ["api", "worker", "dispatcher", "all", "bench", "postgres", "postgres bg", "rabbitmq", "other"];

function cpuRow(name: string, window: string, u: CpuUse): string {
  return `| ${name} | ${window} (${u.seconds} s) | ${GROUPS.filter((g) => g !== "all" || u.cores.all !== undefined).map((g) => (u.cores[g] ?? 0).toFixed(2)).join(" | ")} | ${u.machineBusyPct}% |`;
}

// The stages worth a column; everything else is in the JSON.
const STAGES = [
  "evently_ingest_batch_events",
  "evently_ingest_commit_duration_seconds",
  "evently_publish_duration_seconds",
  "evently_delivery_duration_seconds",
  "evently_delivery_lag_seconds",
  "evently_record_duration_seconds",
  "evently_jobs_deferred_total",
  "evently_duplicate_jobs_total",
  "evently_jobs_failed_total",
  "evently_publish_failures_total",
];

function stageLines(phases: PhaseResult[]): string[] {
  const rows = new Map<string, string>();
  for (const p of phases)
    for (const st of p.stages) {
      const base = st.metric.replace(/\{.*$/, "");
      if (!STAGES.includes(base)) continue;
      const key = `${st.role} · \`${st.metric.replace(/^evently_/, "")}\``;
      rows.set(key, st.mean === undefined ? "count" : st.unit === "ms" ? "mean ms" : "mean");
    }
  const sorted = [...rows.keys()].sort((a, b) => {
    const ia = STAGES.findIndex((x) => a.includes(x.replace(/^evently_/, "")));
    const ib = STAGES.findIndex((x) => b.includes(x.replace(/^evently_/, "")));
    return ia - ib || a.localeCompare(b);
  });
  const lines = [
    `| Stage | Unit | ${phases.map((p) => p.spec.name).join(" | ")} |`,
    `| --- | --- | ${phases.map(() => "---").join(" | ")} |`,
  ];
  for (const key of sorted) {
    const cells = phases.map((p) => {
      const st = p.stages.find((x) => `${x.role} · \`${x.metric.replace(/^evently_/, "")}\`` === key);
      if (!st) return "–";
      return st.mean === undefined ? n(st.count) : `${st.mean}`;
    });
    lines.push(`| ${key} | ${rows.get(key)} | ${cells.join(" | ")} |`);
  }
  return lines;
}

export function renderMarkdown(r: BenchReport): string {
  const lines: string[] = [
    `# Evently benchmark${r.quick ? " (quick)" : ""}`,
    "",
    `Run ${r.startedAt} → ${r.finishedAt}, revision \`${r.revision}\`.`,
    r.ceilings ? `Machine: ${r.ceilings.host.cpus} CPUs, ${r.ceilings.host.memoryGiB} GiB, ${r.ceilings.host.platform}, Bun ${r.ceilings.host.bun}.` : "",
    `Stack: ${r.stack.roles.join(", ")} as separate processes; Postgres, RabbitMQ, the sink and the load generator on the same machine, all over loopback.`,
    "",
    `**Verdict: ${r.passed ? "every accepted event was delivered" : "FAILED"}**`,
    ...r.failures.map((f) => `- ${f}`),
    "",
    "## Figures",
    "",
    ...headline(r),
    "",
    "## Phases",
    "",
    "Publish rates count events the API answered 202 for (committed). Delivery latency runs from the",
    "event's creation timestamp to its first receipt at the sink, which verifies every signature.",
    `A ramp step keeps up when deliveries during the step reach ${KEEP_UP.deliveredShare * 100}% of the accepted rate, the backlog`,
    `left drains within ${KEEP_UP.drainMs / 1000} s, and the generator achieves ≥ ${KEEP_UP.achievedShare * 100}% of the target with no drops or errors.`,
    "",
    "| Phase | Load | Events accepted | Accepted/s | Publish p50 / p99 (ms) | Errors | Delivered | Delivered/s while publishing | Duplicates | Latency p50 / p95 / p99 / max (ms) | Backlog at end → drain | Kept up |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const p of r.phases) {
    const s = p.spec;
    const load =
      s.mode === "open"
        ? `open loop, ${n(s.eventsPerSecond ?? 0)} events/s, batch ${s.batchSize}`
        : `closed loop, ${s.concurrency} publishers, batch ${s.batchSize}`;
    const l = p.delivery.latencyMs;
    const d = p.delivery;
    lines.push(
      `| ${s.name} | ${load}, ${s.durationMs / 1000}s | ${n(p.publish.eventsAccepted)} | ${n(p.publish.eventsPerSecond)} | ` +
        `${ms(p.publish.latencyMs.p50)} / ${ms(p.publish.latencyMs.p99)} | ${n(p.publish.errors)}${p.publish.dropped ? ` (+${n(p.publish.dropped)} dropped)` : ""} | ` +
        `${n(d.unique)} / ${n(d.expected)} | ${n(d.duringPublishPerSecond)} | ${n(d.duplicates)} | ` +
        `${ms(l.p50)} / ${ms(l.p95)} / ${ms(l.p99)} / ${ms(l.max)} | ${n(d.backlogAtPublishEnd)} → ${(d.drainMs / 1000).toFixed(1)} s${d.drainPerSecond ? ` (${n(d.drainPerSecond)}/s)` : ""} | ` +
        `${p.keptUp === undefined ? "–" : p.keptUp ? "yes" : "**no**"} |`,
    );
  }
  const groups = GROUPS.filter((g) => g !== "all" || r.phases.some((p) => p.cpu.publish.cores.all !== undefined));
  lines.push(
    "",
    "## CPU by process (cores; 1.00 = one core busy for the whole window)",
    "",
    "`bench` is this process: the load generator and the sink. `postgres` is the backends serving the",
    "stack's database, `postgres bg` Postgres's background processes (WAL writer, checkpointer, …); `other` is everything else on the machine",
    "seen in both samples (a lower bound), including Postgres backends of other databases.",
    "",
    ...(r.phases.some((p) => (p.cpu.publish.cores.other ?? 0) >= 0.2)
      ? ["**Other load was running on the machine during some phases (`other` ≥ 0.20 cores): their figures are lower than an idle machine would give.**", ""]
      : []),
    `| Phase | Window | ${groups.join(" | ")} | Machine busy |`,
    `| --- | --- | ${groups.map(() => "---").join(" | ")} | --- |`,
  );
  for (const p of r.phases) {
    lines.push(cpuRow(p.spec.name, "publishing", p.cpu.publish));
    if (p.cpu.drain) lines.push(cpuRow(p.spec.name, "draining", p.cpu.drain));
  }
  lines.push(
    "",
    "## Per-stage timings from each role's /metrics",
    "",
    "Histogram means (Δsum / Δcount over the phase, publishing plus drain) and counter increments.",
    "",
    ...stageLines(r.phases),
  );
  const tables = r.phases.filter((p) => p.tables?.length);
  if (tables.length) {
    const names = tables[0]!.tables!.map((t) => t.table);
    lines.push(
      "",
      "## Database after each phase",
      "",
      `Live / dead rows and total size with indexes. Server settings: ${Object.entries(r.stack.postgresSettings ?? {}).map(([k, v]) => `\`${k}=${v}\``).join(", ") || "not read"}.`,
      "",
      `| Phase | ${names.join(" | ")} |`,
      `| --- | ${names.map(() => "---").join(" | ")} |`,
      ...tables.map((p) => `| ${p.spec.name} | ${names.map((name) => {
        const t = p.tables!.find((x) => x.table === name);
        return t ? `${n(t.live)} / ${n(t.dead)}, ${t.totalMiB} MiB, seq ${n(t.seqScans)} (${n(t.seqRowsRead)} rows), idx ${n(t.idxScans)}` : "–";
      }).join(" | ")} |`),
    );
  }
  if (r.ceilings) lines.push("", "## This machine's raw ceilings", "", ...ceilingLines(r.ceilings));
  lines.push("", "Settings that differ from the defaults:", "");
  const env = Object.entries(r.stack.env).filter(([k]) => !["DATABASE_URL", "AMQP_URL", "AMQP_PREFIX", "HOST", "PORT", "LOG_LEVEL"].includes(k));
  const dbSet = Object.entries(r.stack.databaseSettings ?? {}).map(([k, v]) => `- Postgres (scratch database): \`${k}=${v}\``);
  lines.push(...(env.length || dbSet.length ? [...env.map(([k, v]) => `- \`${k}=${v}\``), ...dbSet] : ["- none"]), "");
  return lines.filter((l, i, a) => !(l === "" && a[i - 1] === "")).join("\n");
}
