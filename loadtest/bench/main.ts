import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { configSchemas } from "../../services/core/config/schema.ts";
import { startSink } from "../sink/server.ts";
import { measureCeilings, samplePayload } from "./ceilings.ts";
import { defaultPhases, runPhase, type PhaseResult } from "./phases.ts";
import { renderMarkdown, type BenchReport } from "./report.ts";
import { startStack } from "./stack.ts";

/**
 * `bun run bench [--quick] [--no-ceilings] [--scale=2] [--roles=all] [--out=dir]`
 *
 * Measures this machine's raw ceilings, starts Evently (scratch database, own AMQP prefix) and an
 * in-process sink, runs the publish phases, checks that every accepted event was delivered with a
 * valid signature, and writes loadtest/results/bench-<time>.json and .md. Exits 1 when the check
 * fails. Postgres and RabbitMQ come from DATABASE_URL and AMQP_URL (local defaults); any Evently
 * setting in the environment (e.g. WORKER_MAX_IN_FLIGHT) reaches the stack and the report.
 */
const { values: args } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    quick: { type: "boolean", default: false },
    "no-ceilings": { type: "boolean", default: false },
    scale: { type: "string", default: "1" },
    roles: { type: "string", default: "api,worker,dispatcher" },
    out: { type: "string", default: join(import.meta.dir, "../results") },
  },
});
const quick = args.quick!;
const scale = Number(args.scale);
if (!(scale > 0)) throw new Error("--scale must be a positive number");
const roles = args.roles!.split(",") as Array<"api" | "worker" | "dispatcher" | "all">;
const log = (msg: string) => console.log(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}`);

function revision(): string {
  const r = Bun.spawnSync(["git", "describe", "--always", "--dirty"], { cwd: import.meta.dir, stderr: "ignore" });
  return r.exitCode === 0 ? r.stdout.toString().trim() : "unknown";
}

/**
 * Evently settings given in our environment: they reach the stack, so the report names them. Where
 * the stack runs (database, broker, prefix, address) is the stack's own business and left out.
 */
function eventlyEnv(): Record<string, string> {
  const own = new Set(["DATABASE_URL", "AMQP_URL", "AMQP_PREFIX", "HOST", "PORT", "API_KEY"]);
  const names = new Set(Object.values(configSchemas).flatMap((s) => Object.keys(s.shape)).filter((k) => !own.has(k)));
  return Object.fromEntries(Object.entries(process.env).filter(([k, v]) => names.has(k) && v !== undefined) as [string, string][]);
}

const startedAt = new Date().toISOString();
const ceilings = args["no-ceilings"] ? null : await measureCeilings({ quick, log });

const stackEnv = eventlyEnv();
const stack = await startStack({ roles, env: stackEnv, log });
const sink = startSink({ port: 0 });
const phases: PhaseResult[] = [];
const failures: string[] = [];
try {
  const api = async (path: string, body: unknown) => {
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (process.env.API_KEY) headers.authorization = `Bearer ${process.env.API_KEY}`;
    const res = await fetch(`${stack.apiUrl}${path}`, { method: "POST", headers, body: JSON.stringify(body) });
    if (res.status !== 201) throw new Error(`POST ${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as { id: string; secret: string };
  };
  const endpoint = await api("/endpoints", { url: `${sink.url}/hooks/bench`, description: "benchmark sink" });
  await api("/routes", { endpointId: endpoint.id, eventType: "bench.*" });
  sink.addSecret(endpoint.secret, "bench");

  const target = { apiUrl: stack.apiUrl, apiKey: process.env.API_KEY, sink, eventType: "bench.order.paid", fanout: 1, payload: JSON.parse(samplePayload(1)) };
  for (const spec of defaultPhases(quick, scale)) {
    const result = await runPhase(target, spec, quick ? 60_000 : 180_000, log);
    phases.push(result);
    const d = result.delivery;
    if (!d.complete) {
      failures.push(`${spec.name}: ${d.unique} of ${d.expected} accepted events delivered before the drain timeout`);
      log(`job states: ${JSON.stringify(await stack.jobStates())}`);
    }
    if (d.invalid > 0) failures.push(`${spec.name}: ${d.invalid} deliveries failed signature checks`);
    if (result.publish.eventsAccepted === 0) failures.push(`${spec.name}: no event was accepted (${JSON.stringify(result.publish.errorKinds)})`);
  }
} catch (err) {
  failures.push(`run aborted: ${(err as Error).message}`);
} finally {
  await sink.stop();
  await stack.stop();
}

const report: BenchReport = {
  startedAt,
  finishedAt: new Date().toISOString(),
  quick,
  revision: revision(),
  stack: { roles, env: stackEnv },
  ceilings,
  phases,
  passed: failures.length === 0,
  failures,
};
mkdirSync(args.out!, { recursive: true });
const base = join(args.out!, `bench-${startedAt.replace(/[:.]/g, "-")}${quick ? "-quick" : ""}`);
writeFileSync(`${base}.json`, JSON.stringify(report, null, 2) + "\n");
writeFileSync(`${base}.md`, renderMarkdown(report));
log(`wrote ${base}.json and .md`);
log(report.passed ? "PASSED: every accepted event was delivered" : `FAILED:\n  ${failures.join("\n  ")}`);
process.exit(report.passed ? 0 : 1);
