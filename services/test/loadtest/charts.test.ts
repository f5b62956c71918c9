import { describe, expect, test } from "bun:test";
import { chartsOf } from "../../../loadtest/bench/charts.ts";
import { formatNumber, renderChart, type ChartSpec } from "../../../loadtest/bench/charts/svg.ts";
import type { PhaseResult } from "../../../loadtest/bench/phases.ts";
import type { PeerRun } from "../../../loadtest/bench/peers.ts";
import type { BenchReport, CpuPerDelivery, TransportRun } from "../../../loadtest/bench/report.ts";
import { runCurve, type ScalingCurve, type ScalingPoint } from "../../../loadtest/bench/scaling.ts";

/**
 * The bench's charts (loadtest/bench/charts.ts) from a small synthetic report: each is well-formed
 * XML, names its axes, draws one path per series and never writes NaN; and one scaling point runs
 * end to end on a real stack.
 */

/** Null when `xml` is well-formed (one root, tags nested and closed, attributes quoted once, entities escaped); else what is wrong. */
function xmlProblem(xml: string): string | null {
  const token = /<!--[\s\S]*?-->|<(\/?)([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+="[^"<]*")*)\s*(\/?)>/g;
  const badEntity = /&(?!amp;|lt;|gt;|quot;|apos;|#\d+;|#x[0-9a-f]+;)/i;
  const open: string[] = [];
  let roots = 0;
  let last = 0;
  for (let m = token.exec(xml); m; m = token.exec(xml)) {
    const text = xml.slice(last, m.index);
    if (text.includes("<")) return `unparsable markup at ${last}: ${text.slice(text.indexOf("<"), text.indexOf("<") + 40)}`;
    if (badEntity.test(text)) return `unescaped & in text at ${last}`;
    if (open.length === 0 && text.trim()) return `text outside the root at ${last}`;
    last = token.lastIndex;
    if (m[0].startsWith("<!--")) continue;
    const [, closing, name, attributes, selfClosing] = m as unknown as [string, string, string, string, string];
    const names = [...attributes.matchAll(/([\w:.-]+)="([^"]*)"/g)].map((a) => (badEntity.test(a[2]!) ? "&" : a[1]!));
    if (names.includes("&")) return `unescaped & in an attribute of <${name}>`;
    if (new Set(names).size !== names.length) return `an attribute given twice in <${name}>`;
    if (closing) {
      if (open.pop() !== name) return `</${name}> closes nothing open`;
    } else {
      if (open.length === 0 && ++roots > 1) return "more than one root element";
      if (!selfClosing) open.push(name);
    }
  }
  if (xml.slice(last).trim()) return "text after the root element";
  return open.length ? `<${open.at(-1)}> never closed` : roots === 1 ? null : "no root element";
}

const cpu = (stack: number, groups: Record<string, number>): CpuPerDelivery => ({ phase: "p", delivered: 1000, perGroup: groups, stack });

function point(x: number, label: string, over: Partial<ScalingPoint> = {}): ScalingPoint {
  return {
    x,
    label,
    phases: [`p-${x}`],
    eventsPerSecond: 1000,
    deliveriesPerSecond: 990,
    delivered: 10_000,
    latencyMs: { p50: 20 + x / 10, p99: 60 + x },
    otherCores: 0,
    cpu: cpu(1.5 + x / 100, { api: 0.3, worker: 0.3 + x / 200, dispatcher: 0.04, postgres: 0.7, "postgres bg": 0.01, rabbitmq: 0.2 }),
    extra: {},
    ...over,
  };
}

function curve(name: ScalingCurve["name"], points: ScalingPoint[], over: Partial<ScalingCurve> = {}): ScalingCurve {
  return { name, title: name, x: { label: `${name} (unit)`, log: true }, method: "synthetic", roles: ["api", "worker"], env: {}, points, columns: [], notes: [], ...over };
}

function rampStep(transport: "rabbitmq" | "postgres", rate: number, delivered: number, p99: number, keptUp: boolean): PhaseResult {
  return {
    transport,
    spec: { name: `ramp-${rate}`, description: "", group: "ramp", mode: "open", batchSize: 50, eventsPerSecond: rate, concurrency: 64, durationMs: 10_000 },
    delivery: { duringPublishPerSecond: delivered, latencyMs: { p99 } },
    keptUp,
  } as unknown as PhaseResult;
}

const report: BenchReport = {
  startedAt: "2026-12-03T08:00:00.000Z",
  finishedAt: "2026-12-03T08:30:00.000Z",
  quick: false,
  revision: "abc1234",
  ceilings: null,
  runs: (["rabbitmq", "postgres"] as const).map(
    (transport) =>
      ({
        transport,
        // The Postgres transport as one process (--roles=all), which the chart names.
        stack: { roles: transport === "rabbitmq" ? ["api", "worker", "dispatcher"] : ["all"] },
        phases: [rampStep(transport, 1000, 999, 20, true), rampStep(transport, 3000, 2990, 35, true), rampStep(transport, 6000, transport === "rabbitmq" ? 5800 : 4700, 2100, false)],
      }) as unknown as TransportRun,
  ),
  peers: [{ peer: "bullmq", phases: [rampStep("rabbitmq", 1000, 1000, 12, true), rampStep("rabbitmq", 6000, 5990, 300, true)] } as unknown as PeerRun],
  passed: true,
  failures: [],
  scaling: {
    transport: "rabbitmq",
    quick: false,
    failures: [],
    curves: [
      curve("fanout", [point(1, "1"), point(10, "10"), point(50, "50"), point(100, "100")]),
      // A point whose phase delivered nothing has no CPU figure: the chart must skip it, not draw NaN.
      curve("payload", [point(1024, "1 KB"), point(65_536, "64 KB"), point(1_048_576, "1 MB", { cpu: undefined, latencyMs: { p50: Number.NaN, p99: 900 } })]),
      curve("history", [0, 1e6, 3e6].map((x) => point(x, `${x / 1e6}M`, { extra: { ingestPerSecond: 4000, drainPerSecond: 7000 - x / 1e4 } })), { x: { label: "rows", log: false } }),
      curve("processes", [1, 2].map((x) => point(x, `${x} + ${x}`, { extra: { sustainedPerSecond: 6000 - x * 500 } })), { x: { label: "processes", log: false } }),
      curve("backlog", [point(1e6, "1,000,000")], {
        timeline: Array.from({ length: 30 }, (_, i) => ({ seconds: i * 2, delivered: i * 14_000, perSecond: i < 10 ? 0 : 7000, rssMiB: { api: 120 + i, worker: 150 + i * 2, dispatcher: 90 } })),
      }),
    ],
  },
};

describe("bench charts", () => {
  const charts = chartsOf(report);

  test("a ramp chart and one chart per scaling curve", () => {
    expect(charts.map((c) => c.name)).toEqual(["ramp", "fanout", "payload", "history", "processes", "backlog"]);
  });

  for (const chart of chartsOf(report)) {
    test(`${chart.name}: well-formed SVG with its labels, one path per series, no NaN`, () => {
      const svg = renderChart(chart.spec);
      expect(xmlProblem(svg)).toBeNull();
      expect(svg.startsWith("<svg ")).toBe(true);
      expect(svg).not.toMatch(/NaN|Infinity|undefined/);
      expect(svg).toContain(`>${chart.spec.xLabel}<`);
      for (const panel of chart.spec.panels) expect(svg).toContain(`>${panel.yLabel}<`);
      const drawn = chart.spec.panels.flatMap((p) => p.series.filter((s) => s.points.some((q) => Number.isFinite(q.x) && Number.isFinite(q.y))));
      expect(svg.match(/<path class="series"/g)?.length).toBe(drawn.length);
      for (const s of drawn) expect(svg).toContain(`data-series="${s.name}"`);
    });
  }

  test("the ramp chart draws every transport and every peer against the target", () => {
    const ramp = charts.find((c) => c.name === "ramp")!.spec;
    expect(ramp.panels[0]!.series.map((s) => s.name)).toEqual(["target", "RabbitMQ delivered", "Postgres (one process) delivered", "BullMQ peer delivered"]);
    expect(ramp.panels[1]!.series.at(-1)!.points.map((p) => p.y)).toEqual([12, 300]);
  });

  test("the CPU panel has a line per process group and the stack total; the payload chart skips the point without CPU", () => {
    const fanout = charts.find((c) => c.name === "fanout")!.spec;
    expect(fanout.panels[0]!.series.map((s) => s.name)).toEqual(["api", "worker", "dispatcher", "postgres", "rabbitmq", "stack total"]);
    // Postgres's backends and background processes are one line.
    expect(fanout.panels[0]!.series[3]!.points[0]!.y).toBeCloseTo(0.71);
    const payload = charts.find((c) => c.name === "payload")!.spec;
    expect(payload.panels[0]!.series.at(-1)!.points).toHaveLength(2);
  });

  test("tick labels never overlap: of crowded ticks some are left out", () => {
    const spec: ChartSpec = {
      title: "crowded",
      xLabel: "x",
      xTicks: Array.from({ length: 40 }, (_, i) => ({ x: i, label: `label ${i}` })),
      panels: [{ title: "p", yLabel: "y", series: [{ name: "s", points: [{ x: 0, y: 1 }, { x: 39, y: 2 }] }] }],
    };
    const svg = renderChart(spec);
    const labels = [...svg.matchAll(/<text x="([\d.]+)" y="[\d.]+" font-size="11" fill="#444" text-anchor="middle">label/g)].map((m) => Number(m[1]));
    expect(labels.length).toBeGreaterThan(3);
    expect(labels.length).toBeLessThan(40);
    for (let i = 1; i < labels.length; i++) expect(labels[i]! - labels[i - 1]!).toBeGreaterThan(8 * 11 * 0.56);
  });

  test("the XML check finds what a browser would refuse", () => {
    expect(xmlProblem('<svg><g></svg>')).not.toBeNull();
    expect(xmlProblem('<svg a="1" a="2"/>')).not.toBeNull();
    expect(xmlProblem("<svg><text>a & b</text></svg>")).not.toBeNull();
    expect(xmlProblem("<svg/><svg/>")).not.toBeNull();
    expect(xmlProblem('<svg><text x="1">a &amp; b</text></svg>')).toBeNull();
  });

  test("numbers on axes stay short", () => {
    expect([0, 0.05, 1.25, 1.5, 64, 1500, 10_000, 2_000_000, 10_000_000].map(formatNumber)).toEqual(["0", "0.05", "1.25", "1.5", "64", "1.5k", "10k", "2M", "10M"]);
  });
});

describe("scaling smoke", () => {
  test(
    "one point of the payload curve on the Postgres transport: delivered, with CPU and latency",
    async () => {
      const failures: string[] = [];
      const result = await runCurve("payload", { transport: "postgres", quick: true, env: {}, databaseSettings: {}, log: () => {}, failures, only: [1024] });
      expect(failures).toEqual([]);
      expect(result.points).toHaveLength(1);
      const [p] = result.points;
      expect(p!.delivered).toBeGreaterThan(0);
      expect(p!.cpu!.stack).toBeGreaterThan(0);
      expect(p!.latencyMs.p99).toBeGreaterThan(0);
    },
    30_000,
  );
});
