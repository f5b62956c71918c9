/**
 * Every dashboard query and every alert expression returns data from a real Prometheus scraping a
 * real installation, not only parses. Debian's `prometheus` server (installed by
 * .ci/deploy-tools.sh) is started on a loopback port with its own storage, scraping every second:
 * - a RabbitMQ installation run as separate processes: api, dispatcher, worker;
 * - a Postgres-transport installation run as one `all` process;
 * each role a `services/main.ts` child process, so each has its own /metrics, as deployed. Events
 * go to endpoints that answer 200, 500 (retries, then an open circuit), 410 (a dead job), one with a
 * delivery rate limit and one paused, so failure, retry, dead, circuit and hold series exist.
 *
 * Then each expression is evaluated through /api/v1/query and must return at least one sample.
 * Grafana variables are substituted ($__rate_interval -> 1m). An alert expression is empty while
 * the installation is healthy, which is the point of a threshold, so it is split at its top-level
 * comparisons and set operators (`>`, `==`, `and`, `unless`, …) and every operand that is not a
 * number is evaluated on its own: each must select series that exist.
 */
import { afterAll, beforeAll, describe, expect } from "bun:test";
import { readdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { Subprocess } from "bun";
import type { RunningRoles } from "../../runtime.ts";
import { pollUntil } from "../support/poll.ts";
import { startReceiver, type Receiver } from "../support/receiver.ts";
import { createTestStack, type TestStack } from "../support/stack.ts";
import { osTool, readText, repo, ROOT, tempDir } from "./support.ts";

type Obj = Record<string, any>;
const prometheus = osTool("prometheus");
const RATE_INTERVAL = "1m";

/** Every PromQL expression Evently ships: dashboard targets and alert rules, named for messages. */
async function shippedExpressions(): Promise<{ where: string; expr: string; alert: boolean }[]> {
  const out: { where: string; expr: string; alert: boolean }[] = [];
  const dir = repo("deploy/grafana/dashboards");
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".json")).sort()) {
    const dashboard = JSON.parse(await readText("deploy/grafana/dashboards", file)) as Obj;
    for (const panel of (dashboard.panels as Obj[]).filter((p) => p.type !== "row"))
      for (const target of panel.targets as Obj[]) out.push({ where: `${file}: ${panel.title} ${target.refId}`, expr: target.expr, alert: false });
  }
  const rules = Bun.YAML.parse(await readText("deploy/prometheus/alerts.yml")) as { groups: { rules: Obj[] }[] };
  for (const rule of rules.groups.flatMap((g) => g.rules)) out.push({ where: `alerts.yml: ${rule.alert}`, expr: rule.expr, alert: true });
  return out;
}

/** Grafana's variables, as Grafana would fill them for a short range scraped every second. */
function substituteVariables(expr: string): string {
  return expr.replaceAll("$__rate_interval", RATE_INTERVAL).replaceAll("$__interval", "15s").replaceAll("$__range", "5m");
}

const COMPARISON = /^(?:==|!=|>=|<=|>|<)/;
const WORD_OPERATOR = /^(?:and|or|unless)\b/;
/** What may follow a binary operator before its right operand: `bool`, `on (…)`/`ignoring (…)`, `group_left (…)`. */
const BINARY_MODIFIERS = /^\s*(?:bool\b)?\s*(?:(?:on|ignoring)\s*\([^)]*\))?\s*(?:(?:group_left|group_right)\b\s*(?:\([^)]*\))?)?/;

/**
 * The operands of an expression's top-level comparisons and set operators (outside any
 * parentheses, braces, brackets or strings), with the operators' modifiers dropped
 * (BINARY_MODIFIERS). `a > 0.1 and on () b` gives ["a", "0.1", "b"]; an expression without one
 * gives itself.
 */
function operands(expr: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let quote: string | null = null;
  let start = 0;
  for (let i = 0; i < expr.length; i++) {
    const c = expr[i]!;
    if (quote) {
      if (c === "\\") i++;
      else if (c === quote) quote = null;
      continue;
    }
    if (c === '"' || c === "'" || c === "`") quote = c;
    else if ("([{".includes(c)) depth++;
    else if (")]}".includes(c)) depth--;
    else if (depth === 0) {
      // `=~` and `!~` only occur inside braces; a word operator must not be the tail of a name.
      const rest = expr.slice(i);
      const word = i === 0 || /[\s)]/.test(expr[i - 1]!) ? WORD_OPERATOR.exec(rest) : null;
      const m = COMPARISON.exec(rest) ?? word;
      if (m) {
        parts.push(expr.slice(start, i));
        i += m[0].length - 1;
        start = i + 1;
      }
    }
  }
  parts.push(expr.slice(start));
  return parts.map((p) => p.replace(BINARY_MODIFIERS, "").trim()).filter((p) => p !== "");
}

const isNumber = (expr: string) => /^[\d.]+(e[+-]?\d+)?$/i.test(expr.replace(/[()\s]/g, ""));

async function freePort(): Promise<number> {
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const { port } = server;
  server.stop(true);
  return port;
}

interface Target {
  role: string;
  transport: string;
  port: number;
  proc: Subprocess;
}

describe("prometheus, live", () => {
  const stacks: TestStack[] = [];
  const targets: Target[] = [];
  let server: Subprocess | undefined;
  let promUrl = "";
  let receiver: Receiver;
  let configDir: string | undefined;

  /** Starts `role` of `stack` as its own process, as deployed, and waits until it answers /metrics. */
  async function startRole(stack: TestStack, role: string, env: Record<string, string> = {}): Promise<Target> {
    const port = await freePort();
    const proc = Bun.spawn([process.execPath, "services/main.ts", role], {
      cwd: ROOT,
      env: { ...process.env, ...stack.env, ...env, PORT: String(port) },
      stdout: "ignore",
      stderr: "inherit",
    });
    const target = { role, transport: stack.transport, port, proc };
    targets.push(target);
    await pollUntil(async () => (await fetch(`http://127.0.0.1:${port}/metrics`)).ok, { what: `${role} /metrics`, timeoutMs: 20_000, intervalMs: 100 });
    return target;
  }

  async function query(expr: string): Promise<Obj[]> {
    const response = await fetch(`${promUrl}/api/v1/query?${new URLSearchParams({ query: expr })}`);
    const body = (await response.json()) as Obj;
    if (body.status !== "success") throw new Error(`${expr}: ${body.errorType} ${body.error}`);
    return body.data.result as Obj[];
  }

  beforeAll(async () => {
    if (!prometheus.path) return;
    receiver = startReceiver();
    receiver.respond("/fail", () => new Response("no", { status: 500 }));
    receiver.respond("/gone", () => new Response("gone", { status: 410 }));
    // Fast retries and a circuit that opens after three failures and stays open for the test.
    const env = {
      RETRY_SCHEDULE: "200ms,200ms,200ms,200ms,200ms,200ms",
      RETRY_JITTER: "0",
      CIRCUIT_FAILURE_THRESHOLD: "3",
      CIRCUIT_OPEN_MS: "600000",
      LOG_LEVEL: "error",
    };
    const rabbit = await createTestStack(env, "rabbitmq");
    const postgres = await createTestStack(env, "postgres");
    stacks.push(rabbit, postgres);
    const [api] = await Promise.all([startRole(rabbit, "api"), startRole(rabbit, "dispatcher"), startRole(rabbit, "worker")]);
    const all = await startRole(postgres, "all");

    const config = (configDir = tempDir("prometheus"));
    const scrapes = targets.map((t) => ({
      targets: [`127.0.0.1:${t.port}`],
      labels: { role: t.role, transport: t.transport },
    }));
    // The compose file's job name and `role` label, so the rules' selectors match as deployed.
    const scrapeConfig = {
      global: { scrape_interval: "1s", scrape_timeout: "900ms", evaluation_interval: "1s" },
      scrape_configs: [{ job_name: "evently", metrics_path: "/metrics", static_configs: scrapes }],
    };
    writeFileSync(path.join(config, "prometheus.yml"), JSON.stringify(scrapeConfig));
    const port = await freePort();
    promUrl = `http://127.0.0.1:${port}`;
    server = Bun.spawn(
      [
        prometheus.path,
        `--config.file=${path.join(config, "prometheus.yml")}`,
        `--storage.tsdb.path=${path.join(config, "data")}`,
        `--web.listen-address=127.0.0.1:${port}`,
        "--log.level=warn",
      ],
      { stdout: "ignore", stderr: "ignore" },
    );
    await pollUntil(async () => (await fetch(`${promUrl}/-/ready`)).ok, { what: "prometheus ready", timeoutMs: 15_000, intervalMs: 100 });

    // The RabbitMQ installation: every kind of outcome and hold.
    const apiRoles = { url: `http://127.0.0.1:${api.port}` } as RunningRoles;
    await rabbit.subscribe(apiRoles, `${receiver.url}/ok`, "ok.*");
    await rabbit.subscribe(apiRoles, `${receiver.url}/fail`, "fail.*");
    await rabbit.subscribe(apiRoles, `${receiver.url}/gone`, "gone.*");
    await rabbit.subscribe(apiRoles, `${receiver.url}/slow`, "slow.*", { rateLimitPerSecond: 1 });
    const paused = await rabbit.subscribe(apiRoles, `${receiver.url}/paused`, "paused.*");
    expect((await rabbit.api(apiRoles, "POST", `/endpoints/${paused.id}/pause`, {})).status).toBe(200);
    const send = (stack: TestStack, roles: RunningRoles, type: string, n: number) =>
      Promise.all(Array.from({ length: n }, (_, i) => stack.api(roles, "POST", "/events", { type, data: { i } })));
    await Promise.all([send(rabbit, apiRoles, "ok.a", 5), send(rabbit, apiRoles, "fail.a", 6), send(rabbit, apiRoles, "gone.a", 1)]);
    await Promise.all([send(rabbit, apiRoles, "slow.a", 5), send(rabbit, apiRoles, "paused.a", 2)]);

    // The Postgres installation: deliveries and failures through the outbox queue.
    const allRoles = { url: `http://127.0.0.1:${all.port}` } as RunningRoles;
    await postgres.subscribe(allRoles, `${receiver.url}/ok`, "ok.*");
    await postgres.subscribe(allRoles, `${receiver.url}/fail`, "fail.*");
    await Promise.all([send(postgres, allRoles, "ok.b", 5), send(postgres, allRoles, "fail.b", 4)]);

    // What the queries need to have happened, read from the source of truth.
    await pollUntil(
      async () => {
        const [row] = await rabbit.sql<{ open: number; dead: number }[]>`
          select (select count(*)::int from endpoint_health where circuit = 'open') as open,
                 (select count(*)::int from jobs where status = 'dead') as dead`;
        return row!.open > 0 && row!.dead > 0;
      },
      { what: "an open circuit and a dead job", timeoutMs: 20_000, intervalMs: 100 },
    );
  }, 90_000);

  afterAll(async () => {
    server?.kill("SIGTERM");
    for (const t of targets) t.proc.kill("SIGTERM");
    const settle = async (proc: Subprocess) => {
      if ((await Promise.race([proc.exited, Bun.sleep(8000).then(() => "timeout")])) === "timeout") proc.kill("SIGKILL");
      await proc.exited;
    };
    await Promise.all([...(server ? [server] : []), ...targets.map((t) => t.proc)].map(settle));
    for (const stack of stacks) await stack.stop();
    await receiver?.stop();
    // Its TSDB is a few MB: gone now, not at process exit.
    if (configDir) rmSync(configDir, { recursive: true, force: true });
  }, 60_000);

  prometheus.test("every dashboard query and every alert operand returns data", async () => {
    const checks = (await shippedExpressions()).flatMap(({ where, expr, alert }) => {
      const substituted = substituteVariables(expr);
      const parts = alert ? operands(substituted).filter((p) => !isNumber(p)) : [substituted];
      return parts.map((part) => ({ where, expr: part }));
    });
    expect(checks.length).toBeGreaterThan(80);
    // Rates need two scrapes after a series first appears: poll until all answer, then report the rest.
    // A query Prometheus refuses is reported as refused, never mistaken for one still without data.
    const emptyOrRefused = async (c: { where: string; expr: string }) => {
      try {
        return (await query(c.expr)).length > 0 ? null : `${c.where}: ${c.expr}`;
      } catch (err) {
        return `${c.where}: refused: ${String(err)}`;
      }
    };
    let empty: string[] = [];
    await pollUntil(
      async () => {
        const results = await Promise.all(checks.map(emptyOrRefused));
        empty = results.filter((r): r is string => r !== null);
        return empty.length === 0;
      },
      { what: "every query to return data", timeoutMs: 30_000, intervalMs: 1000 },
    ).catch(() => {});
    expect(empty).toEqual([]);
  }, 60_000);

  prometheus.test("the gauges read at collect time report what Postgres and RabbitMQ hold", async () => {
    // The dispatcher reports RabbitMQ's work queues, each with the worker as consumer; the `all`
    // process reports the Postgres transport's outbox queue, consumed by itself.
    const consumers = await query(`max by (queue, transport) (evently_queue_consumers)`);
    const byQueue = Object.fromEntries(consumers.map((r) => [r.metric.queue as string, Number(r.value[1])]));
    expect(byQueue.outbox).toBe(1);
    const rabbitQueues = consumers.filter((r) => r.metric.transport === "rabbitmq");
    expect(rabbitQueues.length).toBeGreaterThan(0);
    for (const r of rabbitQueues) expect(Number(r.value[1]), r.metric.queue).toBeGreaterThanOrEqual(1);
    // The failing endpoint leads the top failing endpoints, with its circuit open.
    const worst = await query(`topk(1, max by (endpoint, circuit) (evently_endpoint_consecutive_failures{transport="rabbitmq"}))`);
    const [failing] = await stacks[0]!.sql<{ id: string }[]>`select id from endpoints where url like '%/fail'`;
    expect(worst[0]?.metric).toEqual({ endpoint: failing!.id, circuit: "open" });
    // Attempts carry the receiver's status class: 200, 410 and 500 answers.
    const classes = await query(`sum by (status_class) (evently_delivery_attempts_total{transport="rabbitmq"})`);
    expect(classes.map((r) => r.metric.status_class).sort()).toEqual(["2xx", "4xx", "5xx"]);
    // Every role reports its memory and event-loop lag.
    const roles = (await query(`max by (role) (evently_process_resident_memory_bytes)`)).map((r) => r.metric.role).sort();
    expect(roles).toEqual(["all", "api", "dispatcher", "worker"]);
    const lag = await query(`max by (role) (evently_event_loop_lag_seconds)`);
    expect(lag.length).toBe(4);
  }, 30_000);
});
