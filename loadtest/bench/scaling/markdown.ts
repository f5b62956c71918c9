import type { BenchReport } from "../report.ts";
import type { ScalingCurve, ScalingPoint } from "../scaling.ts";

/**
 * The report's "How cost grows" section (the scaling curves, each a table and its chart) and the
 * links to the run's other charts.
 */

/** Table columns: the stack's process groups, Postgres's background processes counted with its backends (the JSON keeps them apart). */
const GROUPS: Array<[string, string[]]> = [
  ["api", ["api", "all"]],
  ["worker", ["worker"]],
  ["dispatcher", ["dispatcher"]],
  ["postgres", ["postgres", "postgres bg"]],
  ["rabbitmq", ["rabbitmq"]],
];
const n = (v: number) => Math.round(v).toLocaleString("en-US");
const ms = (v: number) => (v >= 100 ? n(v) : v.toFixed(1));
const cpu = (v: number | undefined) => (v === undefined ? "–" : v.toFixed(3));

function chartFor(r: BenchReport, name: string): string | undefined {
  return r.charts?.find((c) => c.endsWith(`-${name}.svg`));
}

function curveTable(c: ScalingCurve): string[] {
  const groupOf = (p: ScalingPoint, members: string[]) => {
    const values = members.map((g) => p.cpu?.perGroup[g]).filter((v): v is number => v !== undefined);
    return values.length ? values.reduce((a, b) => a + b, 0) : undefined;
  };
  const groups = GROUPS.filter(([, members]) => c.points.some((p) => groupOf(p, members) !== undefined));
  // Phases that stop delivery while publishing deliver nothing during it: the column would only say 0.
  const during = c.points.some((p) => p.deliveriesPerSecond > 0);
  // Per event differs from per delivery only where an event has several deliveries.
  const perEvent = c.points.some((p) => p.cpu && p.cpuPerEvent !== undefined && Math.abs(p.cpuPerEvent - p.cpu.stack) > 0.01 * p.cpu.stack);
  const columns = c.columns.filter((col) => c.points.some((p) => p.extra[col.key] !== undefined));
  const header = [
    c.x.label.charAt(0).toUpperCase() + c.x.label.slice(1),
    "Events/s",
    ...(during ? ["Delivered/s while publishing"] : []),
    "Latency p50 / p99 (ms)",
    "CPU per delivery, stack (core·ms)",
    ...groups.map(([name]) => name),
    ...(perEvent ? ["CPU per event, stack (core·ms)"] : []),
    "of which idle draw",
    "Other load on the machine (cores)",
    ...columns.map((col) => col.label),
  ];
  const row = (p: ScalingPoint) => [
    p.label,
    n(p.eventsPerSecond),
    ...(during ? [n(p.deliveriesPerSecond)] : []),
    `${ms(p.latencyMs.p50)} / ${ms(p.latencyMs.p99)}`,
    p.cpu ? `**${cpu(p.cpu.stack)}**` : "–",
    ...groups.map(([, members]) => cpu(groupOf(p, members))),
    ...(perEvent ? [cpu(p.cpuPerEvent)] : []),
    cpu(p.idlePerDelivery),
    p.otherCores === undefined ? "–" : p.otherCores.toFixed(2),
    ...columns.map((col) => (p.extra[col.key] === undefined ? "–" : n(p.extra[col.key]!))),
  ];
  return [`| ${header.join(" | ")} |`, `| ${header.map(() => "---").join(" | ")} |`, ...c.points.map((p) => `| ${row(p).join(" | ")} |`)];
}

function idleLine(c: ScalingCurve): string {
  if (!c.idleCores) return "";
  const parts = Object.entries(c.idleCores)
    .filter(([g, v]) => GROUPS.some(([, members]) => members.includes(g)) && v >= 0.005)
    .map(([g, v]) => `${g} ${v.toFixed(2)}`);
  const other = c.idleCores.other ?? 0;
  return (
    `Idle draw of the stack before the first point (cores): ${parts.join(", ") || "below 0.01 everywhere"}.` +
    (other >= 0.2 ? ` Other processes on the machine used ${other.toFixed(2)} cores at that moment.` : "")
  );
}

export function scalingLines(r: BenchReport): string[] {
  const lines: string[] = [];
  const s = r.scaling;
  if (s) {
    lines.push(
      "## How cost grows",
      "",
      `Each curve on the ${s.transport === "rabbitmq" ? "RabbitMQ" : "Postgres"} transport, on stacks of its own (roles as separate processes, scratch database). ` +
        "CPU per delivery is core·ms from a phase's first request to its last delivery over the events delivered, by process; the stack total counts " +
        "the roles, Postgres (backends and background processes) and (RabbitMQ transport) RabbitMQ, not the load generator and sink (in the JSON as `bench`). The idle column is the part of the stack total " +
        "that the stack's draw with no load at all (measured once per curve) accounts for over the same window: at low rates it is a visible share.",
      "",
      ...(s.failures.length ? ["**Failures:**", ...s.failures.map((f) => `- ${f}`), ""] : []),
    );
    for (const c of s.curves) {
      const chart = chartFor(r, c.name);
      lines.push(`### ${c.title}`, "", c.method, "", ...(chart ? [`![${c.title}](${chart})`, ""] : []), ...curveTable(c), "");
      const idle = idleLine(c);
      if (idle) lines.push(idle, "");
      const env = Object.entries(c.env).map(([k, v]) => `\`${k}=${v}\``);
      if (env.length) lines.push(`Settings of this curve's stacks: ${env.join(", ")}.`, "");
      const refused = c.points.filter((p) => p.errors).map((p) => `${p.label}: ${Object.entries(p.errors!).map(([kind, count]) => `${n(count)} × ${kind}`).join("; ")}`);
      const notes = [...c.notes, ...(refused.length ? [`Requests that failed or were dropped (that point measured less load than planned): ${refused.join(". ")}.`] : [])];
      for (const note of notes) lines.push(`- ${note}`);
      if (notes.length) lines.push("");
    }
  }
  const ramp = chartFor(r, "ramp");
  if (ramp) lines.push("## Ramp chart", "", `![Ramp: delivered rate and p99 per step](${ramp})`, "");
  return lines;
}
