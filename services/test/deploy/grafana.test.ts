/**
 * The Grafana dashboards (deploy/grafana/dashboards/*.json: overview, endpoint health, pipeline
 * internals) and their provisioning: each JSON type-checks against @grafana/schema, the layout is
 * sound, and every query selects only series Evently really exposes, named in
 * services/core/telemetry/names.ts. That the queries return data is prometheus-live.test.ts's job.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import path from "node:path";
import ts from "typescript";
import { METRIC } from "../../core/telemetry/names.ts";
import { exposedSeries, promqlMetrics, readText, repo } from "./support.ts";

type Obj = Record<string, any>;
const FILES = readdirSync(repo("deploy/grafana/dashboards")).filter((f) => f.endsWith(".json")).sort();
const dashboards = await Promise.all(
  FILES.map(async (file) => {
    const text = await readText("deploy/grafana/dashboards", file);
    const dashboard = JSON.parse(text) as Obj;
    const panels = dashboard.panels as Obj[];
    const queryPanels = panels.filter((p) => p.type !== "row");
    const exprs = queryPanels.flatMap((p) => (p.targets as Obj[]).map((t) => ({ panel: `${file}: ${p.title}`, expr: t.expr as string })));
    return { file, text, dashboard, panels, queryPanels, exprs };
  }),
);
const allExprs = dashboards.flatMap((d) => d.exprs);
const compose = Bun.YAML.parse(await readText("docker-compose.yml")) as { services: Record<string, Obj> };
const datasources = Bun.YAML.parse(await readText("deploy/grafana/provisioning/datasources/prometheus.yml")) as Obj;
const providers = Bun.YAML.parse(await readText("deploy/grafana/provisioning/dashboards/evently.yml")) as Obj;

const PANEL_OPTIONS: Record<string, string> = {
  timeseries: "@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen",
  stat: "@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen",
};

/**
 * Type-checks the dashboard against @grafana/schema: a virtual module assigns the JSON (and each
 * panel's options and field config) to the schema types, so unknown keys and wrong enum values are
 * compile errors. String enums in the schema are compared by value, as JSON holds them.
 */
function schemaDiagnostics({ text: dashboardText, queryPanels }: (typeof dashboards)[number]): string[] {
  const schemaPkg = path.dirname(require.resolve("@grafana/schema/package.json"));
  const file = path.join(schemaPkg, "..", "..", "..", "__evently_dashboard_check__.ts");
  let src = `import type { Dashboard, FieldConfigSource } from "@grafana/schema";
import type { Options as TimeseriesOptions, FieldConfig as TimeseriesFieldConfig } from "${PANEL_OPTIONS.timeseries}";
import type { Options as StatOptions } from "${PANEL_OPTIONS.stat}";
type Json<T> = T extends string ? (string extends T ? string : \`\${T}\`)
  : T extends readonly (infer U)[] ? Json<U>[] : T extends object ? { [K in keyof T]: Json<T[K]> } : T;
export const dashboard: Json<Dashboard> = ${dashboardText};
`;
  for (const p of queryPanels) {
    if (p.type === "timeseries")
      src += `export const options${p.id}: Json<TimeseriesOptions> = ${JSON.stringify(p.options)};
export const fields${p.id}: Json<FieldConfigSource<TimeseriesFieldConfig>> = ${JSON.stringify(p.fieldConfig)};\n`;
    else if (p.type === "stat") src += `export const options${p.id}: Json<StatOptions> = ${JSON.stringify(p.options)};\n`;
  }
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (name, lang, ...rest) =>
    name === file ? ts.createSourceFile(name, src, lang) : getSourceFile.call(host, name, lang, ...rest);
  host.fileExists = (name) => name === file || fileExists.call(host, name);
  host.readFile = (name) => (name === file ? src : readFile.call(host, name));
  const program = ts.createProgram([file], options, host);
  return ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n").slice(0, 500));
}

describe("grafana dashboards", () => {
  test("overview, endpoint health and pipeline internals, with distinct uids", () => {
    expect(dashboards.map((d) => d.dashboard.uid).sort()).toEqual(["evently-endpoints", "evently-overview", "evently-pipeline"]);
  });

  test("charts ingest, publishing, delivery outcome, latency, lag, in-flight, duplicates and failures", () => {
    const charted = new Set(allExprs.flatMap((e) => promqlMetrics(e.expr)).map((n) => n.replace(/_(bucket|sum|count)$/, "")));
    const required = [
      METRIC.eventsAccepted,
      METRIC.ingestCommitDuration,
      METRIC.jobsPublished,
      METRIC.publishFailures,
      METRIC.deliveryAttempts,
      METRIC.deliveryDuration,
      METRIC.deliveryLag,
      METRIC.deliveriesInFlight,
      METRIC.deliveriesWaiting,
      METRIC.duplicateJobs,
      METRIC.jobsEnded,
      METRIC.jobsDeferred,
      METRIC.circuitsOpen,
      METRIC.circuitTransitions,
      METRIC.outboxBacklog,
      METRIC.outboxOldestDue,
      METRIC.queueMessages,
      METRIC.queueConsumers,
      METRIC.endpointFailures,
      METRIC.circuitLongestOpen,
      METRIC.processResidentMemory,
      METRIC.processHeap,
      METRIC.eventLoopLag,
    ];
    expect(required.filter((m) => !charted.has(m))).toEqual([]);
    for (const q of [0.5, 0.95, 0.99]) {
      const prefix = `histogram_quantile(${q}, sum by (le) (rate(${METRIC.deliveryDuration}_bucket`;
      expect(allExprs.some((e) => e.expr.startsWith(prefix)), prefix).toBe(true);
    }
  });
});

describe.each(dashboards)("grafana dashboard $file", (board) => {
  const { dashboard, panels, queryPanels, exprs } = board;
  test("type-checks against @grafana/schema (dashboard, panel options, field config)", () => {
    expect(queryPanels.every((p) => p.type in PANEL_OPTIONS)).toBe(true);
    expect(schemaDiagnostics(board)).toEqual([]);
  });

  test("has a stable uid, unique panel ids and a 24-column grid without overlaps", () => {
    expect(dashboard.uid).toMatch(/^[a-z0-9-]{1,40}$/);
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const cells = new Set<string>();
    for (const p of panels) {
      const { x, y, w, h } = p.gridPos as { x: number; y: number; w: number; h: number };
      expect(x + w, p.title).toBeLessThanOrEqual(24);
      for (let i = x; i < x + w; i++)
        for (let j = y; j < y + h; j++) {
          expect(cells.has(`${i},${j}`), `${p.title} overlaps at ${i},${j}`).toBe(false);
          cells.add(`${i},${j}`);
        }
    }
  });

  test("every query uses the datasource variable and has a unique refId", () => {
    expect((dashboard.templating.list as Obj[]).find((v) => v.name === "datasource")?.query).toBe("prometheus");
    for (const p of queryPanels) {
      expect(p.datasource).toEqual({ type: "prometheus", uid: "${datasource}" });
      const refIds = (p.targets as Obj[]).map((t) => t.refId);
      expect(new Set(refIds).size, p.title).toBe(refIds.length);
      for (const t of p.targets as Obj[]) expect(t.datasource).toEqual(p.datasource);
    }
  });

  test("queries select only series Evently exposes, named in names.ts", () => {
    const known = new Set<string>(Object.values(METRIC));
    const exposed = exposedSeries();
    const unknown: string[] = [];
    for (const { panel, expr } of exprs) {
      const names = promqlMetrics(expr);
      if (names.length === 0) unknown.push(`${panel}: no metric in ${expr}`);
      for (const name of names) {
        const base = name.replace(/_(bucket|sum|count)$/, "");
        if (!exposed.has(name) || !(known.has(name) || known.has(base))) unknown.push(`${panel}: ${name}`);
      }
    }
    expect(unknown).toEqual([]);
  });

  test("quantiles are computed from _bucket rates aggregated by le", () => {
    for (const { panel, expr } of exprs.filter((e) => e.expr.includes("histogram_quantile"))) {
      expect(expr, panel).toMatch(/histogram_quantile\(0?\.\d+, sum by \(le(, \w+)*\) \(rate\(\w+_bucket\[/);
    }
  });
});

describe("grafana provisioning", () => {
  test("the datasource uid is every dashboard variable's default", () => {
    const prometheus = (datasources.datasources as Obj[]).find((d) => d.type === "prometheus")!;
    for (const { dashboard } of dashboards) {
      const variable = (dashboard.templating.list as Obj[]).find((v) => v.name === "datasource")!;
      expect(variable.current.value).toBe(prometheus.uid);
    }
    expect(prometheus.url).toBe("http://prometheus:9090");
    expect(compose.services.prometheus).toBeDefined();
  });

  test("the dashboard provider reads the folder compose mounts the dashboards into", () => {
    const folder = (providers.providers as Obj[])[0]!.options.path as string;
    const mounts = (compose.services.grafana!.volumes as string[]).map((m) => m.split(":"));
    expect(mounts.some(([src, dst]) => src === "./deploy/grafana/dashboards" && dst === folder)).toBe(true);
    expect(mounts.some(([src, dst]) => src === "./deploy/grafana/provisioning" && dst === "/etc/grafana/provisioning")).toBe(true);
  });
});
