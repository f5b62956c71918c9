/**
 * deploy/prometheus: the scrape config and alert rules pass promtool, the rules' unit tests pass,
 * every alert is unit-tested and documented, and every rule selects only series Evently exposes.
 */
import { describe, expect, test } from "bun:test";
import { METRIC } from "../../core/telemetry/names.ts";
import { httpSchema } from "../../core/config/schema.ts";
import { exposedSeries, osTool, promqlMetrics, readText, repo, run } from "./support.ts";

type Obj = Record<string, any>;
const DIR = repo("deploy/prometheus");
const config = Bun.YAML.parse(await readText("deploy/prometheus/prometheus.yml")) as Obj;
const alerts = Bun.YAML.parse(await readText("deploy/prometheus/alerts.yml")) as { groups: { name: string; rules: Obj[] }[] };
const unitTests = Bun.YAML.parse(await readText("deploy/prometheus/alerts.test.yml")) as Obj;
const compose = Bun.YAML.parse(await readText("docker-compose.yml")) as { services: Record<string, Obj> };
const rules = alerts.groups.flatMap((g) => g.rules);

describe("prometheus config", () => {
  test("discovers every api, worker and dispatcher container on the default port", () => {
    const job = (config.scrape_configs as Obj[]).find((j) => j.job_name === "evently")!;
    const sd = (job.dns_sd_configs as Obj[])[0]!;
    expect([...sd.names].sort()).toEqual(["api", "dispatcher", "worker"]);
    for (const name of sd.names as string[]) expect(compose.services[name], name).toBeDefined();
    expect(sd.port).toBe(httpSchema.shape.PORT.parse(undefined));
    expect(job.metrics_path).toBe("/metrics");
    expect((job.relabel_configs as Obj[]).some((r) => r.target_label === "role")).toBe(true);
  });

  test("loads alerts.yml", () => {
    expect(config.rule_files).toEqual(["alerts.yml"]);
  });
});

describe("alert rules", () => {
  test("every alert has a severity, a summary and a description", () => {
    expect(rules.length).toBeGreaterThanOrEqual(6);
    for (const r of rules) {
      expect(r.alert, JSON.stringify(r)).toMatch(/^Evently[A-Z]\w+$/);
      expect(["critical", "warning", "info"]).toContain(r.labels?.severity);
      expect(r.annotations?.summary, r.alert).toBeTruthy();
      expect(r.annotations?.description, r.alert).toBeTruthy();
    }
  });

  test("cover delivery failures, publish failures, outbox backlog and age, consumers, latency, dead jobs, circuits", () => {
    const byMetric = (m: string) => rules.filter((r) => promqlMetrics(r.expr).some((n) => n.startsWith(m)));
    for (const m of [METRIC.outboxOldestDue, METRIC.queueConsumers, METRIC.jobsEnded, METRIC.circuitLongestOpen, METRIC.eventLoopLag])
      expect(byMetric(m).length, m).toBeGreaterThanOrEqual(1);
    expect(rules.some((r) => r.expr.includes("histogram_quantile(0.99") && r.expr.includes(METRIC.deliveryLag))).toBe(true);
    expect(byMetric(METRIC.deliveryAttempts).length).toBeGreaterThanOrEqual(2);
    expect(byMetric(METRIC.publishFailures).length).toBeGreaterThanOrEqual(1);
    expect(byMetric(METRIC.jobsCreated).length).toBeGreaterThanOrEqual(1);
    expect(byMetric(METRIC.deliveryLag).length).toBeGreaterThanOrEqual(1);
  });

  test("select only series Evently exposes (or Prometheus' own `up`)", () => {
    const exposed = exposedSeries();
    const unknown = rules.flatMap((r) => promqlMetrics(r.expr).filter((n) => n !== "up" && !exposed.has(n)).map((n) => `${r.alert}: ${n}`));
    expect(unknown).toEqual([]);
  });

  test("every alert links its runbook entry in docs/observability.md, which documents every metric", async () => {
    const doc = await readText("docs/observability.md");
    const anchors = new Set([...doc.matchAll(/^### (\w+)$/gm)].map((m) => m[1]!.toLowerCase()));
    for (const r of rules) {
      expect(r.annotations?.runbook_url, r.alert).toBe(`docs/observability.md#${r.alert.toLowerCase()}`);
      expect(anchors.has(r.alert.toLowerCase()), `runbook entry for ${r.alert}`).toBe(true);
    }
    const undocumented = Object.values(METRIC).filter((name) => !doc.includes(`- \`${name}`));
    expect(undocumented).toEqual([]);
  });

  test("every alert has a unit test in alerts.test.yml", () => {
    const cases = (unitTests.tests as Obj[]).flatMap((t) => (t.alert_rule_test ?? []) as Obj[]);
    const tested = new Set(cases.filter((a) => a.exp_alerts?.length).map((a) => a.alertname));
    expect(rules.map((r) => r.alert).filter((a) => !tested.has(a))).toEqual([]);
  });
});

describe("promtool", () => {
  const promtool = osTool("promtool");

  promtool.test("check config accepts prometheus.yml (and the rule file it loads)", () => {
    const r = run([promtool.path!, "check", "config", "prometheus.yml"], { cwd: DIR });
    expect(r.stdout + r.stderr).toContain("SUCCESS");
    expect(r.code).toBe(0);
  });

  promtool.test("check rules accepts alerts.yml", () => {
    const r = run([promtool.path!, "check", "rules", "alerts.yml"], { cwd: DIR });
    expect(r.code).toBe(0);
  });

  promtool.test("the alert unit tests pass", () => {
    const r = run([promtool.path!, "test", "rules", "alerts.test.yml"], { cwd: DIR });
    expect(r.stdout + r.stderr).toContain("SUCCESS");
    expect(r.code).toBe(0);
  });
});
