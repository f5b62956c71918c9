import type { PhaseResult } from "./phases.ts";
import type { PeerRun } from "./peers.ts";
import { cpuBreakdown, type BenchReport, type Summary } from "./report.ts";

/**
 * The report's "Peers" section: Evently on each transport next to the webhook senders a team could
 * build on graphile-worker or BullMQ instead, measured in the same run with the same phases and
 * sink, and Evently's figures as ratios to the best peer's.
 */

const n = (v: number) => Math.round(v).toLocaleString("en-US");
const ms = (v: number) => (v >= 100 ? n(v) : v.toFixed(1));
export const PEER_LABEL: Record<PeerRun["peer"], string> = { graphile: "graphile-worker peer", bullmq: "BullMQ peer" };
export const TRANSPORT_LABEL: Record<string, string> = { rabbitmq: "Evently, RabbitMQ transport", postgres: "Evently, Postgres transport" };

/** Evently's transports and the peers alike: what the section's tables read. */
interface System {
  label: string;
  processes: string;
  summary: Summary;
  phases: PhaseResult[];
  passed: boolean;
  peer?: PeerRun;
}

const latencyOf = (s: System, phase: string) => s.summary.latency.find((l) => l.phase === phase);
const cpuOf = (s: System, phase: string) => s.summary.cpuPerDelivery.find((c) => c.phase === phase);

function sustainedCell(s: System): string {
  const best = s.summary.sustained;
  const failing = s.phases.find((p) => p.spec.group === "ramp" && !p.keptUp);
  const miss = failing && `\`${failing.spec.name}\` delivered ${n(failing.delivery.duringPublishPerSecond)}/s of ${n(failing.publish.eventsPerSecond)}/s`;
  if (!best) return failing ? `no step kept up; ${miss}` : "no ramp step run";
  return `**${n(best.eventsPerSecond)} events/s** (\`${best.phase}\`)${miss ? `; ${miss}` : "; the ramp's last step run"}`;
}

/** One figure of the ratio table: how to read it from a system, which way is better, how to print it. */
interface RatioFigure {
  label: string;
  value: (s: System) => number | undefined;
  better: "higher" | "lower";
  format: (v: number) => string;
}

/** A / B as "1.23×", or – when either is missing. */
const ratio = (a: number | undefined, b: number | undefined) => (a !== undefined && b ? `${(a / b).toFixed(2)}×` : "–");

export function peersLines(r: BenchReport): string[] {
  const peers = r.peers ?? [];
  if (!peers.length) return [];
  const evently: System[] = r.runs.map((t) => ({ label: TRANSPORT_LABEL[t.transport] ?? t.transport, processes: t.stack.roles.join(", "), summary: t.summary, phases: t.phases, passed: t.passed }));
  const others: System[] = peers.map((p) => ({ label: PEER_LABEL[p.peer], processes: `${p.processes.join(", ")}; queue on ${p.queueServer}`, summary: p.summary, phases: p.phases, passed: p.passed, peer: p }));
  const systems = [...evently, ...others];
  const latencySpec = peers[0]!.phases.find((p) => p.spec.group === "latency")?.spec;
  const latencyPhase = latencySpec?.name;
  // CPU is compared where every system did the same work: at the latency phase and at the highest ramp step all kept up.
  const keptByAll = peers[0]!.phases
    .filter((p) => p.spec.group === "ramp" && systems.every((s) => s.phases.some((q) => q.spec.name === p.spec.name && q.keptUp)))
    .map((p) => p.spec.name);
  const cpuPhases = [latencyPhase, keptByAll.at(-1)].filter((x): x is string => x !== undefined);

  const lines = [
    "## Peers: what a team would build instead",
    "",
    "Webhook senders a team could write in an afternoon instead of adopting Evently (`loadtest/peers/`): a producer",
    "process (`POST /events`, `/events/batch`, 202 once the jobs are enqueued) and a worker process that signs each",
    "delivery with the `standardwebhooks` package and POSTs it, retried by the queue's own backoff. They ran after",
    "Evently's transports, through the same warm-up, latency phase and ramp, with the same generator and a sink that",
    "verifies the same signatures and measures latency from the envelope's timestamp the same way. Their settings were",
    "chosen by trying several (see each peer's file header and loadtest/README.md). CPU counts each system's own",
    "processes and its queue server: Postgres (the scratch database's backends and background processes) for",
    "graphile-worker and for Evently, RabbitMQ too for Evently's RabbitMQ transport, Redis for BullMQ.",
    "",
    `| Figure | ${systems.map((s) => s.label).join(" | ")} |`,
    `| --- | ${systems.map(() => "---").join(" | ")} |`,
  ];
  const row = (label: string, cell: (s: System) => string) => lines.push(`| ${label} | ${systems.map(cell).join(" | ")} |`);
  row("Processes", (s) => s.processes);
  row("Settings", (s) => (s.peer ? Object.entries(s.peer.settings).map(([k, v]) => `\`${k}=${v}\``).join(", ") : "the bench's (see its section)"));
  row("Every accepted event delivered once", (s) => {
    const accepted = s.phases.reduce((sum, p) => sum + p.delivery.expected, 0);
    const duplicates = s.phases.reduce((sum, p) => sum + p.delivery.duplicates, 0);
    return `${s.passed ? "yes" : "**NO**"} (${n(accepted)} events, ${n(duplicates)} duplicates)`;
  });
  if (latencyPhase)
    row(`End-to-end latency at ${n(latencySpec?.eventsPerSecond ?? 0)}/s, p50 / p95 / p99 (\`${latencyPhase}\`)`, (s) => {
      const l = latencyOf(s, latencyPhase);
      return l ? `**${ms(l.p50)} / ${ms(l.p95)} / ${ms(l.p99)} ms** (${n(l.achievedPerSecond)}/s achieved)` : "–";
    });
  row("Sustained deliveries (ramp: highest step kept up)", sustainedCell);
  for (const phase of cpuPhases) row(`CPU per delivered event, \`${phase}\` (core·ms; total, then by process)`, (s) => cpuBreakdown(cpuOf(s, phase)));
  row("What it does not give", (s) => (s.peer ? s.peer.doesNotGive.join("; ") : "–"));

  // Evently ÷ the best peer, figure by figure: the best peer may differ from one figure to the next.
  const best = (value: (s: System) => number | undefined, better: "higher" | "lower") => {
    const candidates = others.map((s) => ({ s, v: value(s) })).filter((c): c is { s: System; v: number } => c.v !== undefined);
    return candidates.sort((a, b) => (better === "higher" ? b.v - a.v : a.v - b.v))[0];
  };
  const figures: RatioFigure[] = [{ label: "Sustained deliveries/s", value: (s) => s.summary.sustained?.eventsPerSecond, better: "higher", format: (v) => `${n(v)}/s` }];
  if (latencyPhase)
    for (const q of ["p50", "p99"] as const)
      figures.push({ label: `Latency ${q} at \`${latencyPhase}\``, value: (s) => latencyOf(s, latencyPhase)?.[q], better: "lower", format: (v) => `${ms(v)} ms` });
  for (const phase of cpuPhases)
    figures.push({ label: `CPU per delivery at \`${phase}\``, value: (s) => cpuOf(s, phase)?.stack, better: "lower", format: (v) => `${v.toFixed(2)} core·ms` });
  lines.push(
    "",
    "Evently's figures as ratios to the best peer's (Evently ÷ best peer; the best peer is chosen per figure). For",
    "sustained deliveries above 1× is better for Evently; for latency and CPU, below 1× is.",
    "",
    `| Figure (better is) | Best peer | ${evently.map((s) => s.label).join(" | ")} |`,
    `| --- | --- | ${evently.map(() => "---").join(" | ")} |`,
  );
  for (const f of figures) {
    const top = best(f.value, f.better);
    const cells = evently.map((s) => {
      const v = f.value(s);
      return v === undefined ? "–" : `**${ratio(v, top?.v)}** (${f.format(v)})`;
    });
    lines.push(`| ${f.label} (${f.better}) | ${top ? `${top.s.label}: ${f.format(top.v)}` : "–"} | ${cells.join(" | ")} |`);
  }
  const notes = peers.flatMap((p) => [...p.failures.map((f) => `${PEER_LABEL[p.peer]}: **${f}**`), ...p.notes.map((x) => `${PEER_LABEL[p.peer]}: ${x}`)]);
  if (notes.length) lines.push("", ...notes.map((x) => `- ${x}`));
  lines.push("", "Per phase, every peer:", "", "| Peer | Phase | Events accepted | Accepted/s | Delivered/s while publishing | Latency p50 / p95 / p99 / max (ms) | Backlog at end → drain | Kept up |", "| --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const p of peers)
    for (const q of p.phases) {
      const l = q.delivery.latencyMs;
      const d = q.delivery;
      lines.push(
        `| ${PEER_LABEL[p.peer]} | ${q.spec.name} | ${n(q.publish.eventsAccepted)} | ${n(q.publish.eventsPerSecond)}${q.publish.dropped ? ` (${n(q.publish.dropped)} dropped)` : ""} | ` +
          `${n(d.duringPublishPerSecond)} | ${ms(l.p50)} / ${ms(l.p95)} / ${ms(l.p99)} / ${ms(l.max)} | ${n(d.backlogAtPublishEnd)} → ${(d.drainMs / 1000).toFixed(1)} s | ` +
          `${q.keptUp === undefined ? "–" : q.keptUp ? "yes" : "**no**"} |`,
      );
    }
  lines.push("");
  return lines;
}
