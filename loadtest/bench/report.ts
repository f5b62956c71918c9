import { budgetLines } from "./budget.ts";
import { waitEventLines } from "./wait-events.ts";
import type { AmqpCeiling, Ceilings, CpuCeiling, PostgresCeiling, Probe } from "./ceilings.ts";
import type { KernelSpeed } from "./kernel-speed.ts";
import type { CpuUse, PhaseResult } from "./phases.ts";
import { KEEP_UP } from "./phases.ts";
import type { ScalingReport } from "./scaling.ts";
import { scalingLines } from "./scaling/markdown.ts";
import type { BenchTransport } from "./stack.ts";
import { isPeerName, PEER_STACK_GROUPS } from "../peers/peer.ts";
import type { PeerRun } from "./peers.ts";
import { kernelEventLines, threadLines } from "./kernel-report.ts";
import { peersLines } from "./peers-report.ts";

export type Memory = Record<string, { peakRssMiB: number; rssMiB: number }>;

/** One stack, on one queue transport, through every phase. */
export interface TransportRun {
  transport: BenchTransport;
  stack: { roles: string[]; env: Record<string, string>; databaseSettings?: Record<string, string>; postgresSettings?: Record<string, string> };
  /** What a reader of this run's figures should know (a role that idles, say). */
  notes: string[];
  phases: PhaseResult[];
  /** Role processes' peak RSS (VmHWM) and RSS at the end of the run. */
  memory: Memory;
  summary: Summary;
  /** Every phase delivered every accepted event and saw no invalid signature. */
  passed: boolean;
  failures: string[];
}

/** Everything one `npm run bench` produced; written as JSON and rendered as Markdown. */
export interface BenchReport {
  startedAt: string;
  finishedAt: string;
  quick: boolean;
  /** git describe of the tree measured, when available. */
  revision: string;
  /** The native allocator's settings (MIMALLOC_*) of the bench, which every process it starts inherits. */
  allocator?: Record<string, string>;
  ceilings: Ceilings | null;
  /** One run per transport measured, one after the other on the same machine. */
  runs: TransportRun[];
  /** The bench process (the generator; the sink runs apart) over all runs. */
  benchMemory?: { peakRssMiB: number; rssMiB: number };
  /** Every run passed. */
  passed: boolean;
  /** Every run's failures, each prefixed with its transport. */
  failures: string[];
  /** With `--scaling`: how cost grows with fan-out, endpoints, payload, history, backlog and processes. */
  scaling?: ScalingReport;
  /** The charts made from this report, relative to it (charts/<run>-<name>.svg). */
  charts?: string[];
  /** With `--peers`: webhook senders on graphile-worker and BullMQ, measured after the transports with the same phases and sink. */
  peers?: PeerRun[];
}

/** Round two's targets (performance issue, 2 cores): the report says where each figure stands; the run never fails on a speed. */
export const TARGETS = { ingestSingle: 10_000, ingestBatch: 40_000, sustained: 5_000, latencyP50Ms: 5, latencyP99Ms: 25, rssMiB: 256 };

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
  /** Sustained deliveries/s as a share of the machine's raw rates (RabbitMQ's only for the RabbitMQ transport). */
  sustainedRatios?: { rabbitSingle?: number; rabbitBatch64Jobs?: number; httpRequests?: number };
  /** CPU per delivered event in every phase that delivered any, by process group. */
  cpuPerDelivery: CpuPerDelivery[];
}

/**
 * CPU milliseconds (1 ms of one core) per delivered event, from the first request of a phase to its
 * last delivery: ingest and delivery together. `stack` sums the groups that serve the stack: its
 * roles, Postgres (the stack's backends and the background processes) and, on the RabbitMQ
 * transport, RabbitMQ. The generator and sink (`bench`) and everything else are left out of it.
 */
export interface CpuPerDelivery {
  phase: string;
  delivered: number;
  /** Each process group's share, the generator (`bench`) and the sink (`sink`) among them. */
  perGroup: Record<string, number>;
  stack: number;
}

/** The processes of the bench itself, whose CPU every table shows apart from the stack's: the generator and the sink. */
export const OUTSIDE_STACK = ["bench", "sink"];

/** The process groups whose CPU serves a stack on this transport, or a peer (its processes and queue server). */
export function stackGroups(transport: PhaseResult["transport"]): string[] {
  if (isPeerName(transport)) return PEER_STACK_GROUPS[transport];
  return ["api", "worker", "dispatcher", "all", "postgres", "postgres bg", ...(transport === "rabbitmq" ? ["rabbitmq"] : [])];
}

export function cpuPerDelivery(p: PhaseResult): CpuPerDelivery | undefined {
  const delivered = p.delivery.unique;
  if (delivered <= 0) return undefined;
  const u = p.cpu.total;
  const perEvent = (cpuSeconds: number) => Math.round(((cpuSeconds * 1000) / delivered) * 1000) / 1000;
  const groups = [...stackGroups(p.transport), ...OUTSIDE_STACK];
  const perGroup = Object.fromEntries(groups.filter((g) => u.cpuSeconds[g] !== undefined).map((g) => [g, perEvent(u.cpuSeconds[g]!)]));
  const stack = stackGroups(p.transport).reduce((sum, g) => sum + (perGroup[g] ?? 0), 0);
  return { phase: p.spec.name, delivered, perGroup, stack: Math.round(stack * 1000) / 1000 };
}

const ok = <T extends object>(p: Probe<T> | undefined): T | undefined => (p && !("error" in p) ? (p as T) : undefined);
const ratio = (v: number, c: number | undefined) => (c ? Math.round((v / c) * 1000) / 1000 : undefined);

export function summarise(transport: PhaseResult["transport"], phases: PhaseResult[], c: Ceilings | null): Summary {
  const pg = ok(c?.postgres);
  const byName = (name: string) => phases.find((p) => p.spec.name === name);
  const fig = (p: PhaseResult | undefined, ceiling: number | undefined): Figure | undefined =>
    p && { value: p.publish.eventsPerSecond, ceiling, ratio: ratio(p.publish.eventsPerSecond, ceiling), phase: p.spec.name };
  const ramp = phases.filter((p) => p.spec.group === "ramp");
  const best = ramp.filter((p) => p.keptUp).sort((a, b) => b.publish.eventsPerSecond - a.publish.eventsPerSecond)[0];
  const failing = ramp.find((p) => !p.keptUp);
  const single = transport === "rabbitmq" ? ok(c?.rabbitmq.single) : undefined;
  const batch = transport === "rabbitmq" ? ok(c?.rabbitmq.batch64) : undefined;
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
    cpuPerDelivery: phases.flatMap((p) => cpuPerDelivery(p) ?? []),
  };
}

const n = (v: number) => Math.round(v).toLocaleString("en-US");
const ms = (v: number) => (v >= 100 ? n(v) : v.toFixed(1));

function probe<T>(p: Probe<T> | undefined, render: (v: T) => string): string {
  if (p === undefined) return "not measured";
  return "error" in (p as object) ? `failed: ${(p as { error: string }).error}` : render(p as T);
}

function ceilingLines(c: Ceilings): string[] {
  const notMeasured = "not measured (no run on the RabbitMQ transport)";
  const amqp = (a: AmqpCeiling) => `${n(a.messagesPerSec)} msg/s (${n(a.messageBytes)} B, ${a.queueType}, ${a.window} unconfirmed)`;
  return [
    "| Probe | Result |",
    "| --- | --- |",
    `| Postgres, 500-row unnest inserts, 2 in flight | ${probe(c.postgres, (p: PostgresCeiling) => `${n(p.batchRowsPerSec)} rows/s (${p.payloadBytes} B jsonb)`)} |`,
    `| Postgres, one row per commit, 32 in flight | ${probe(c.postgres, (p: PostgresCeiling) => `${n(p.singleRowsPerSec)} rows/s`)} |`,
    `| RabbitMQ confirmed persistent publish, 1 job/message | ${c.rabbitmq.single ? probe(c.rabbitmq.single, amqp) : notMeasured} |`,
    `| RabbitMQ confirmed persistent publish, 64 jobs/message | ${c.rabbitmq.batch64 ? probe(c.rabbitmq.batch64, (a) => `${amqp(a)} = ${n(a.messagesPerSec * 64)} jobs/s`) : notMeasured} |`,
    `| Bun.serve JSON POST → 202, fetch with 64 in flight | ${probe(c.http, (h) => `${n(h.requestsPerSec)} req/s (p50 ${ms(h.p50Ms)} ms, p99 ${ms(h.p99Ms)} ms)`)} |`,
    `| One core: signatures (HMAC-SHA256, base64) · JSON parse + stringify of the payload, one JS thread | ${probe(c.cpu, (p: CpuCeiling) => `${n(p.signaturesPerSec)}/s · ${n(p.jsonRoundTripsPerSec)}/s`)} |`,
    `| One core: copying 64 MiB between buffers | ${probe(c.cpu, (p: CpuCeiling) => `${p.memoryCopyGiBPerSec} GiB/s`)} |`,
    `| One core: a Postgres backend hashing generate_series rows (JIT off) | ${probe(c.cpu, (p: CpuCeiling) => `${n(p.postgresRowsPerSec)} rows/s`)} |`,
    `| Kernel: 8 KiB written and fdatasync'd, one thread (the WAL flush of a commit) | ${probe(c.kernel, (k: KernelSpeed) => `${n(k.flushesPerSec)}/s`)} |`,
    `| Kernel: one-byte TCP round trips between two processes over loopback, back to back · CPU of both per round trip 1 ms apart · that CPU per wake-up of either (three per trip) | ${probe(c.kernel, (k: KernelSpeed) => `${n(k.loopbackRoundTripsPerSec)}/s · ${n(k.idleRoundTripCpuMicros)} µs · ${k.wakeUpCpuMicros ?? "–"} µs`)} |`,
    `| Kernel: CPU per page fault (first write to fresh memory) · per system call (getppid) | ${probe(c.kernel, (k: KernelSpeed) => `${k.pageFaultCpuMicros ?? "–"} µs · ${k.syscallCpuMicros ?? "–"} µs`)} |`,
  ];
}

const pct = (r: number | undefined) => (r === undefined ? "–" : `${(r * 100).toFixed(r < 0.1 ? 1 : 0)}%`);
const meets = (good: boolean) => (good ? "meets" : "misses");

function headline(r: TransportRun, c: Ceilings | null): string[] {
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
  const single = c && r.transport === "rabbitmq" ? ok(c.rabbitmq.single) : undefined;
  const batch = c && r.transport === "rabbitmq" ? ok(c.rabbitmq.batch64) : undefined;
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

const GROUPS = ["api", "worker", "dispatcher", "all", ...OUTSIDE_STACK, "postgres", "postgres bg", "rabbitmq", "other"];

/** The CPU columns of a run: its own role processes, and the rest of the machine. */
function groupsOf(r: TransportRun): string[] {
  return GROUPS.filter((g) => !["api", "worker", "dispatcher", "all"].includes(g) || r.stack.roles.includes(g));
}

function cpuRow(name: string, window: string, u: CpuUse, groups: string[], speed = ""): string {
  return `| ${name} | ${window} (${u.seconds} s) | ${groups.map((g) => (u.cores[g] ?? 0).toFixed(2)).join(" | ")} | ${u.machineBusyPct}% | ${speed} |`;
}

/** A phase's core-speed probes, in signatures per millisecond (thousands per second). */
const coreSpeed = (p: PhaseResult) => {
  const perMs = (v: number | null | undefined) => (v == null ? "–" : (v / 1000).toFixed(0));
  return p.coreSpeed ? `${perMs(p.coreSpeed.before)} → ${perMs(p.coreSpeed.after)}` : "–";
};

// The stages worth a column; everything else is in the JSON.
const STAGES = [
  "evently_ingest_batch_events",
  "evently_ingest_commit_duration_seconds",
  "evently_publish_duration_seconds",
  "evently_messages_consumed_total",
  "evently_outbox_swept_jobs_total",
  "evently_delivery_duration_seconds",
  "evently_delivery_lag_seconds",
  "evently_record_duration_seconds",
  "evently_jobs_deferred_total",
  "evently_duplicate_jobs_total",
  "evently_jobs_ended_total",
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

const TRANSPORT_NAME: Record<BenchTransport, string> = { rabbitmq: "RabbitMQ", postgres: "Postgres" };

/** The phases whose CPU per delivery the side-by-side table shows: latency, ramp-1000, and the highest ramp step every run kept up. */
function comparedCpuPhases(runs: TransportRun[]): string[] {
  const first = runs[0]?.phases ?? [];
  const keptUpByAll = first
    .filter((p) => p.spec.group === "ramp" && runs.every((r) => r.phases.some((q) => q.spec.name === p.spec.name && q.keptUp)))
    .map((p) => p.spec.name);
  const names = [...first.filter((p) => p.spec.group === "latency").map((p) => p.spec.name), keptUpByAll[0], keptUpByAll.at(-1)];
  return names.filter((x, i): x is string => x !== undefined && names.indexOf(x) === i);
}

/** A stack's CPU per delivery, bold, with the processes that make it up. */
export function cpuBreakdown(c: CpuPerDelivery | undefined): string {
  if (!c) return "–";
  const parts = Object.entries(c.perGroup)
    .filter(([g, v]) => !OUTSIDE_STACK.includes(g) && v >= 0.005)
    .map(([g, v]) => `${g} ${v.toFixed(2)}`);
  return `**${c.stack.toFixed(2)} ms** (${parts.join(", ")})`;
}

/** Both transports' figures in one table: what BENCHMARKS.md compares. */
function sideBySide(r: BenchReport): string[] {
  const runs = r.runs;
  const lines = [
    `| Figure | ${runs.map((t) => `${TRANSPORT_NAME[t.transport]} transport`).join(" | ")} |`,
    `| --- | ${runs.map(() => "---").join(" | ")} |`,
  ];
  const row = (label: string, cell: (t: TransportRun) => string) => lines.push(`| ${label} | ${runs.map(cell).join(" | ")} |`);
  const phase = (t: TransportRun, name: string) => t.phases.find((p) => p.spec.name === name);
  const first = runs[0]?.phases ?? [];
  row("Role processes", (t) => t.stack.roles.join(", "));
  row("Every accepted event delivered once (all phases)", (t) => {
    const accepted = t.phases.reduce((s, p) => s + p.delivery.expected, 0);
    const delivered = t.phases.reduce((s, p) => s + Math.min(p.delivery.unique, p.delivery.expected), 0);
    const duplicates = t.phases.reduce((s, p) => s + p.delivery.duplicates, 0);
    return `${t.passed ? "yes" : "**NO**"}: ${n(delivered)} of ${n(accepted)}, ${n(duplicates)} duplicates`;
  });
  row("Sustained end-to-end deliveries (ramp: highest step kept up)", (t) => {
    const s = t.summary.sustained;
    if (!s) return "no step kept up";
    const failing = s.firstFailing ? phase(t, s.firstFailing) : undefined;
    return (
      `**${n(s.eventsPerSecond)} events/s** (\`${s.phase}\`)` +
      (failing ? `; \`${failing.spec.name}\` delivered ${n(failing.delivery.duringPublishPerSecond)}/s of ${n(failing.publish.eventsPerSecond)}/s` : "; the ramp's last step")
    );
  });
  for (const p of first.filter((q) => q.spec.group === "latency"))
    row(`End-to-end latency at ${n(p.spec.eventsPerSecond ?? 0)}/s, p50 / p95 / p99 (\`${p.spec.name}\`)`, (t) => {
      const q = phase(t, p.spec.name);
      if (!q) return "–";
      const l = q.delivery.latencyMs;
      return `**${ms(l.p50)} / ${ms(l.p95)} / ${ms(l.p99)} ms** (${n(q.publish.eventsPerSecond)}/s achieved${q.publish.dropped ? `, ${n(q.publish.dropped)} dropped` : ""})`;
    });
  for (const name of comparedCpuPhases(runs))
    row(`CPU per delivered event, \`${name}\` (core·ms; stack total, then by process)`, (t) =>
      cpuBreakdown(t.summary.cpuPerDelivery.find((c) => c.phase === name)),
    );
  const ingest: Array<[keyof Summary, string]> = [
    ["ingestSingle", "Ingest, single events, delivery running"],
    ["ingestBatch", "Ingest, batches of 500, delivery running"],
    ["burstSingle", "Ingest, single events, delivery stopped"],
    ["burstBatch", "Ingest, batches of 500, delivery stopped"],
  ];
  for (const [key, label] of ingest)
    if (runs.some((t) => t.summary[key]))
      row(label, (t) => {
        const f = t.summary[key] as Figure | undefined;
        return f ? `${n(f.value)} events/s` : "–";
      });
  for (const p of first.filter((q) => q.spec.group === "ingest"))
    if (runs.some((t) => t.summary.backlogDrain.some((d) => d.phase === p.spec.name)))
      row(`Backlog drain after \`${p.spec.name}\` (no new load)`, (t) => {
        const d = t.summary.backlogDrain.find((x) => x.phase === p.spec.name);
        return d ? `${n(d.perSecond)} deliveries/s over ${n(d.events)} events` : "–";
      });
  const roles = [...new Set(runs.flatMap((t) => Object.keys(t.memory)))];
  for (const role of roles) row(`Peak RSS, ${role}`, (t) => (t.memory[role] ? `${t.memory[role]!.peakRssMiB} MiB` : "not run"));
  return lines;
}

function cpuPerDeliveryLines(runs: TransportRun[]): string[] {
  const groups = GROUPS.filter((g) => g !== "other" && runs.some((t) => t.summary.cpuPerDelivery.some((c) => c.perGroup[g] !== undefined)));
  const lines = [
    `| Transport | Phase | Delivered | ${groups.join(" | ")} | Stack total |`,
    `| --- | --- | --- | ${groups.map(() => "---").join(" | ")} | --- |`,
  ];
  for (const t of runs)
    for (const c of t.summary.cpuPerDelivery) {
      const cells = groups.map((g) => (g === "rabbitmq" && t.transport !== "rabbitmq" ? "not used" : c.perGroup[g] === undefined ? "–" : c.perGroup[g]!.toFixed(3)));
      lines.push(`| ${t.transport} | ${c.phase} | ${n(c.delivered)} | ${cells.join(" | ")} | **${c.stack.toFixed(3)}** |`);
    }
  return lines;
}

/**
 * Postgres's CPU per delivered event split by the pool its backends serve (application_name, which
 * core/db/client.ts sets per pool): which statements the `postgres` column of the table above pays for.
 */
function postgresPoolLines(runs: TransportRun[]): string[] {
  const phases = runs.flatMap((t) => t.phases.filter((p) => p.cpu.total.postgresPools && p.delivery.unique > 0));
  if (!phases.length) return [];
  const pools = [...new Set(phases.flatMap((p) => Object.keys(p.cpu.total.postgresPools!)))].sort();
  const label = (pool: string) => pool.replace(/^evently-/, "");
  return [
    "## Postgres CPU per delivered event (core·ms), by connection pool",
    "",
    "The `postgres` column above, split by the pool each backend serves (its `application_name`): `ingest` the group",
    "commits, `take` the Postgres transport's takes, `outbox-clear` the RabbitMQ fast path's clears, `delivery` the",
    "worker's claims and attempt writes, a role's name its own pool, `… listen` its LISTEN connection (woken by every",
    "notification on the database, whatever the channel), `bench` this process's readings.",
    "",
    `| Transport | Phase | ${pools.map(label).join(" | ")} |`,
    `| --- | --- | ${pools.map(() => "---").join(" | ")} |`,
    ...phases.map((p) => {
      const cells = pools.map((pool) => {
        const seconds = p.cpu.total.postgresPools![pool];
        return seconds === undefined ? "–" : ((seconds * 1000) / p.delivery.unique).toFixed(3);
      });
      return `| ${p.transport} | ${p.spec.name} | ${cells.join(" | ")} |`;
    }),
    "",
  ];
}

/** Per delivered event: transactions on the stack's database, and the messages (non-empty takes on Postgres) the worker handled. */
function postgresWorkLines(t: TransportRun): string[] {
  const phases = t.phases.filter((p) => p.db && p.delivery.unique > 0);
  if (!phases.length) return [];
  const per = (v: number | undefined, p: PhaseResult) => (v === undefined ? "–" : (v / p.delivery.unique).toFixed(2));
  const consumed = (p: PhaseResult) => p.stages.find((s) => s.role !== "api" && s.metric === "evently_messages_consumed_total")?.count;
  return [
    "| Phase | Transactions | Messages consumed (worker) | Jobs per message |",
    "| --- | --- | --- | --- |",
    ...phases.map((p) => {
      const m = consumed(p);
      return `| ${p.spec.name} | ${per(p.db!.transactions, p)} | ${per(m, p)} | ${m ? (p.delivery.unique / m).toFixed(1) : "–"} |`;
    }),
  ];
}

function runLines(t: TransportRun, ceilings: Ceilings | null): string[] {
  const name = TRANSPORT_NAME[t.transport];
  const lines: string[] = [
    `## ${name} transport`,
    "",
    `\`QUEUE_TRANSPORT=${t.transport}\`; processes: ${t.stack.roles.join(", ")}. **${t.passed ? "Every accepted event was delivered." : "FAILED."}**`,
    ...t.failures.map((f) => `- ${f}`),
    ...t.notes.map((x) => `- ${x}`),
    "",
    `### Figures (${t.transport})`,
    "",
    ...headline(t, ceilings),
    "",
    `### Phases (${t.transport})`,
    "",
    "| Phase | Load | Events accepted | Accepted/s | Publish p50 / p99 (ms) | Errors | Delivered | Delivered/s while publishing | Duplicates | Latency p50 / p95 / p99 / max (ms) | Backlog at end → drain | Kept up |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const p of t.phases) {
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
  const groups = groupsOf(t);
  lines.push(
    "",
    `### CPU by process (${t.transport}; cores, 1.00 = one core busy for the whole window)`,
    "",
    ...(t.transport !== "rabbitmq" ? ["RabbitMQ runs on this machine but this stack does not use it: its column is its idle draw.", ""] : []),
    ...(t.phases.some((p) => (p.cpu.publish.cores.other ?? 0) >= 0.2)
      ? ["**Other load was running on the machine during some phases (`other` ≥ 0.20 cores): their figures are lower than an idle machine would give.**", ""]
      : []),
    "One core, before → after: Standard Webhooks signatures per millisecond that one JS thread, in a process of its own, made",
    "in 200 ms just before the phase and just after its drain: CPU figures compare best between phases whose cores read alike.",
    "",
    `| Phase | Window | ${groups.join(" | ")} | Machine busy | One core, before → after |`,
    `| --- | --- | ${groups.map(() => "---").join(" | ")} | --- | --- |`,
  );
  for (const p of t.phases) {
    lines.push(cpuRow(p.spec.name, "publishing", p.cpu.publish, groups, coreSpeed(p)));
    if (p.cpu.drain) lines.push(cpuRow(p.spec.name, "draining", p.cpu.drain, groups));
  }
  lines.push(
    "",
    `### Per-stage timings from each role's /metrics (${t.transport})`,
    "",
    "Histogram means (Δsum / Δcount over the phase, publishing plus drain) and counter increments.",
    "",
    ...stageLines(t.phases),
  );
  const work = postgresWorkLines(t);
  if (work.length)
    lines.push(
      "",
      `### Postgres work per delivered event (${t.transport})`,
      "",
      "Committed transactions on the stack's database per delivered event (Postgres publishes a backend's",
      "counts up to about a second late, so this is approximate per phase), and the messages the worker",
      "consumed: AMQP messages on RabbitMQ, non-empty takes from the outbox on Postgres.",
      "",
      ...work,
    );
  const tables = t.phases.filter((p) => p.tables?.length);
  if (tables.length) {
    const names = tables[0]!.tables!.map((x) => x.table);
    lines.push(
      "",
      `### Database after each phase (${t.transport})`,
      "",
      `Live / dead rows and total size with indexes. Server settings: ${Object.entries(t.stack.postgresSettings ?? {}).map(([k, v]) => `\`${k}=${v}\``).join(", ") || "not read"}.`,
      "",
      `| Phase | ${names.join(" | ")} |`,
      `| --- | ${names.map(() => "---").join(" | ")} |`,
      ...tables.map((p) => `| ${p.spec.name} | ${names.map((name) => {
        const x = p.tables!.find((y) => y.table === name);
        return x ? `${n(x.live)} / ${n(x.dead)}, ${x.totalMiB} MiB, seq ${n(x.seqScans)} (${n(x.seqRowsRead)} rows), idx ${n(x.idxScans)}` : "–";
      }).join(" | ")} |`),
    );
  }
  lines.push("", `Settings that differ from the defaults (${t.transport}):`, "");
  const env = Object.entries(t.stack.env).filter(([k]) => !["DATABASE_URL", "AMQP_URL", "AMQP_PREFIX", "HOST", "PORT", "LOG_LEVEL", "QUEUE_TRANSPORT"].includes(k));
  const dbSet = Object.entries(t.stack.databaseSettings ?? {}).map(([k, v]) => `- Postgres (scratch database): \`${k}=${v}\``);
  lines.push(...(env.length || dbSet.length ? [...env.map(([k, v]) => `- \`${k}=${v}\``), ...dbSet] : ["- none"]), "");
  return lines;
}

export function renderMarkdown(r: BenchReport): string {
  const lines: string[] = [
    `# Evently benchmark${r.quick ? " (quick)" : ""}`,
    "",
    `Run ${r.startedAt} → ${r.finishedAt}, revision \`${r.revision}\`.`,
    r.ceilings ? `Machine: ${r.ceilings.host.cpus} CPUs, ${r.ceilings.host.memoryGiB} GiB, ${r.ceilings.host.platform}, Bun ${r.ceilings.host.bun}.` : "",
    r.allocator && Object.keys(r.allocator).length
      ? `Allocator, in every process (the bench, Evently's roles, the peers): ${Object.entries(r.allocator).map(([k, v]) => `\`${k}=${v}\``).join(", ")}.`
      : "",
    `Queue transports measured, one after the other, each with its own stack and scratch database: ${r.runs.map((t) => `${TRANSPORT_NAME[t.transport]} (${t.stack.roles.join(", ")})`).join("; ") || "none"}.`,
    "Every role runs as its own process; Postgres, RabbitMQ, the sink and the load generator share the same machine, all over loopback.",
    "",
    `**Verdict: ${r.passed ? "every accepted event was delivered, on every transport" : "FAILED"}**`,
    ...r.failures.map((f) => `- ${f}`),
    "",
  ];
  if (r.runs.length) {
    lines.push(
      "## Transports side by side",
      "",
      "CPU per delivered event: CPU time from a phase's first request to its last delivery (ingest and",
      "delivery together) over the events delivered, in milliseconds of one core. The stack total counts its",
      "roles, Postgres (the stack's backends and background processes) and, on the RabbitMQ transport,",
      "RabbitMQ; not the load generator (`bench`) and the sink (`sink`), nor other load.",
      "",
      ...sideBySide(r),
      "",
      "## Reading the tables",
      "",
      "Publish rates count events the API answered 202 for (committed). Delivery latency runs from the",
      "event's creation timestamp to its first receipt at the sink, which verifies every signature.",
      `A ramp step keeps up when deliveries during the step reach ${KEEP_UP.deliveredShare * 100}% of the accepted rate, the backlog`,
      `left drains within ${KEEP_UP.drainMs / 1000} s, and the generator achieves ≥ ${KEEP_UP.achievedShare * 100}% of the target with no drops or errors.`,
      "Burst phases stop the delivery roles (worker, and dispatcher where it runs) while publishing.",
      "`bench` in the CPU tables is this process, the load generator; `sink` the sink's own process. `postgres` is the backends serving the",
      "stack's database, `postgres bg` Postgres's background processes (WAL writer, checkpointer, …); `other` is everything",
      "else on the machine seen in both samples (a lower bound), including Postgres backends of other databases.",
      "",
      "## CPU per delivered event (core·ms), every phase",
      "",
      ...cpuPerDeliveryLines(r.runs),
      "",
      ...postgresPoolLines(r.runs),
      ...threadLines(r),
      ...kernelEventLines(r),
    );
    lines.push(...budgetLines(r.runs));
    lines.push(...waitEventLines(r.runs));
    lines.push(...peersLines(r));
    for (const t of r.runs) lines.push(...runLines(t, r.ceilings));
  }
  if (r.benchMemory) lines.push("", `Peak RSS of the bench process (the generator) over all runs: ${r.benchMemory.peakRssMiB} MiB (${r.benchMemory.rssMiB} MiB at the end).`);
  lines.push("", ...scalingLines(r));
  if (r.ceilings) lines.push("", "## This machine's raw ceilings", "", ...ceilingLines(r.ceilings));
  lines.push("");
  return lines.filter((l, i, a) => !(l === "" && a[i - 1] === "")).join("\n");
}
