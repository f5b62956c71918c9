import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { renderChart, type ChartSpec, type Panel, type Point, type Series } from "./charts/svg.ts";
import { PEER_LABEL } from "./peers-report.ts";
import type { BenchReport } from "./report.ts";
import type { ScalingCurve } from "./scaling.ts";

/**
 * The benchmark's charts, made from its JSON report alone (so a past run's charts can be made again
 * with `--charts-from`): the ramp of each transport and peer, and each scaling curve's cost. The functions
 * that build them are pure; writeCharts puts them next to the report.
 */

export interface Chart {
  /** File name suffix: `<run>-<name>.svg`. */
  name: string;
  spec: ChartSpec;
}

const TRANSPORT_NAME: Record<string, string> = { rabbitmq: "RabbitMQ", postgres: "Postgres" };
/** Process groups drawn as lines, in legend order; Postgres's background processes count with its backends. */
const CPU_GROUPS: Array<[string, string[]]> = [
  ["api", ["api", "all"]],
  ["worker", ["worker"]],
  ["dispatcher", ["dispatcher"]],
  ["postgres", ["postgres", "postgres bg"]],
  ["rabbitmq", ["rabbitmq"]],
];

const runLabel = (r: BenchReport) => `${r.startedAt.slice(0, 16).replace("T", " ")} UTC, revision ${r.revision}`;
/** The y axis goes logarithmic when the values span more than this factor. */
const LOG_SPAN = 30;
const spansDecades = (ys: number[]) => {
  const pos = ys.filter((y) => y > 0 && Number.isFinite(y));
  return pos.length > 1 && Math.max(...pos) / Math.min(...pos) > LOG_SPAN;
};

/**
 * Target against delivered-while-publishing per ramp step, and the step's p99, for every transport
 * and every peer of the run.
 */
export function rampChart(r: BenchReport): Chart | undefined {
  const systems = [
    // A run in one process (--roles=all) says so: its figures are not those of separate roles.
    ...r.runs.map((t) => ({
      name: `${TRANSPORT_NAME[t.transport] ?? t.transport}${t.stack.roles.join(",") === "all" ? " (one process)" : ""}`,
      key: t.transport,
      phases: t.phases,
    })),
    ...(r.peers ?? []).map((p) => ({ name: PEER_LABEL[p.peer], key: p.peer, phases: p.phases })),
  ];
  const runs = systems.map((x) => ({ ...x, steps: x.phases.filter((p) => p.spec.group === "ramp") })).filter((x) => x.steps.length > 0);
  if (!runs.length) return undefined;
  const targets = [...new Set(runs.flatMap((x) => x.steps.map((p) => p.spec.eventsPerSecond ?? 0)))].sort((a, b) => a - b);
  const delivered: Series[] = [
    { name: "target", reference: true, points: targets.map((x) => ({ x, y: x })) },
    ...runs.map(({ name, key, steps }) => ({
      name: `${name} delivered`,
      key,
      points: steps.map((p) => ({ x: p.spec.eventsPerSecond ?? 0, y: p.delivery.duringPublishPerSecond, open: !p.keptUp })),
    })),
  ];
  const p99: Series[] = runs.map(({ name, key, steps }) => ({
    name: `${name} p99`,
    key,
    points: steps.map((p) => ({ x: p.spec.eventsPerSecond ?? 0, y: p.delivery.latencyMs.p99, open: !p.keptUp })),
  }));
  return {
    name: "ramp",
    spec: {
      title: "Ramp: deliveries kept up with, step by step",
      subtitle: `${runLabel(r)}. Open markers: the step did not keep up.`,
      xLabel: "target rate (events/s)",
      panels: [
        { title: "Delivered while publishing", yLabel: "deliveries/s", series: delivered },
        { title: "Delivery latency, p99", yLabel: "ms", yLog: spansDecades(p99.flatMap((s) => s.points.map((p) => p.y))), series: p99 },
      ],
    },
  };
}

function cpuPanel(curve: ScalingCurve, title: string): Panel {
  const series: Series[] = [];
  for (const [name, groups] of CPU_GROUPS) {
    const points = curve.points.flatMap((p) => {
      const values = groups.map((g) => p.cpu?.perGroup[g]).filter((v): v is number => v !== undefined);
      return values.length ? [{ x: p.x, y: values.reduce((a, b) => a + b, 0) }] : [];
    });
    if (points.length) series.push({ name, points });
  }
  series.push({ name: "stack total", total: true, points: curve.points.flatMap((p) => (p.cpu ? [{ x: p.x, y: p.cpu.stack }] : [])) });
  return { title, yLabel: "core·ms per delivery", series };
}

function latencyPanel(curve: ScalingCurve, title = "Delivery latency"): Panel {
  const p50 = curve.points.map((p) => ({ x: p.x, y: p.latencyMs.p50 }));
  const p99 = curve.points.map((p) => ({ x: p.x, y: p.latencyMs.p99 }));
  return {
    title,
    yLabel: "ms",
    yLog: spansDecades([...p50, ...p99].map((p) => p.y)),
    series: [
      { name: "p50", points: p50 },
      { name: "p99", points: p99 },
    ],
  };
}

const extraSeries = (curve: ScalingCurve, key: string, name: string): Series => ({
  name,
  points: curve.points.flatMap((p): Point[] => (p.extra[key] !== undefined ? [{ x: p.x, y: p.extra[key]! }] : [])),
});

function backlogChart(r: BenchReport, curve: ScalingCurve): ChartSpec {
  const timeline = curve.timeline ?? [];
  const roles = [...new Set(timeline.flatMap((s) => Object.keys(s.rssMiB)))];
  return {
    title: curve.title,
    subtitle: `${TRANSPORT_NAME[r.scaling!.transport]} transport, ${runLabel(r)}. Delivery stopped while publishing, then drained.`,
    xLabel: "seconds since the first request",
    panels: [
      { title: "Deliveries per second", yLabel: "deliveries/s", series: [{ name: "delivered", points: timeline.map((s) => ({ x: s.seconds, y: s.perSecond })) }] },
      {
        title: "Resident memory by process",
        yLabel: "RSS (MiB)",
        series: roles.map((role) => ({ name: role, points: timeline.flatMap((s) => (s.rssMiB[role] !== undefined ? [{ x: s.seconds, y: s.rssMiB[role]! }] : [])) })),
      },
    ],
  };
}

/** One chart per curve: x the scaled quantity, CPU per delivery by process, and latency or throughput. */
export function scalingChart(r: BenchReport, curve: ScalingCurve): Chart {
  if (curve.name === "backlog") return { name: curve.name, spec: backlogChart(r, curve) };
  const panels: Panel[] =
    curve.name === "history"
      ? [
          cpuPanel(curve, "CPU per delivery (burst, then drain)"),
          {
            title: "Throughput",
            yLabel: "events/s",
            series: [extraSeries(curve, "ingestPerSecond", "ingest, single events"), extraSeries(curve, "drainPerSecond", "drain (claim + deliver)")],
          },
        ]
      : curve.name === "processes"
        ? [cpuPanel(curve, "CPU per delivery at 1,000 events/s"), { title: "Highest ramp step kept up", yLabel: "events/s", series: [extraSeries(curve, "sustainedPerSecond", "sustained")] }]
        : [cpuPanel(curve, "CPU per delivery"), latencyPanel(curve)];
  return {
    name: curve.name,
    spec: {
      title: `How cost grows: ${curve.title.charAt(0).toLowerCase()}${curve.title.slice(1)}`,
      subtitle: `${TRANSPORT_NAME[r.scaling!.transport]} transport, ${runLabel(r)}.`,
      xLabel: curve.x.label,
      xLog: curve.x.log,
      xTicks: curve.points.map((p) => ({ x: p.x, label: p.label })),
      panels,
    },
  };
}

/** Every chart the report has data for. */
export function chartsOf(r: BenchReport): Chart[] {
  const ramp = rampChart(r);
  return [...(ramp ? [ramp] : []), ...(r.scaling?.curves ?? []).filter((c) => c.points.length > 0).map((c) => scalingChart(r, c))];
}

/**
 * Writes the report's charts to `charts/<run>-<name>.svg` beside `<base>.json` and returns their
 * paths relative to the report (what its Markdown links).
 */
export function writeCharts(r: BenchReport, base: string): string[] {
  const dir = join(dirname(base), "charts");
  mkdirSync(dir, { recursive: true });
  return chartsOf(r).map((chart) => {
    const file = `charts/${basename(base)}-${chart.name}.svg`;
    writeFileSync(join(dirname(base), file), renderChart(chart.spec));
    return file;
  });
}

/** `--charts-from=<run>.json`: the charts of a run already made, written again. */
export function writeChartsFrom(jsonFile: string): string[] {
  const report = JSON.parse(readFileSync(jsonFile, "utf8")) as BenchReport;
  return writeCharts(report, jsonFile.replace(/\.json$/, "")).map((f) => join(dirname(jsonFile), f));
}
