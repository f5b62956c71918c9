import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { configSchemas } from "../../services/core/config/schema.ts";
import { startSink } from "../sink/server.ts";
import { measureCeilings, samplePayload } from "./ceilings.ts";
import { memoryOf } from "./observe.ts";
import { defaultPhases, rampSteps, runPhase, type PhaseResult, type PhaseSpec } from "./phases.ts";
import { renderMarkdown, summarise, type BenchReport } from "./report.ts";
import { startStack } from "./stack.ts";

/**
 * `bun run bench [--quick] [--no-ceilings] [--scale=2] [--roles=all] [--out=dir] [--db-set=name=value] [--cpu-prof=dir]`
 *
 * Measures this machine's raw ceilings, starts Evently (scratch database, own AMQP prefix) and an
 * in-process sink, runs the publish phases, checks that every accepted event was delivered with a
 * valid signature, and writes loadtest/results/bench-<time>[-quick].json and .md (a full run also
 * latest.json and latest.md). Exits 1 when the check fails, never because of a speed. Postgres and RabbitMQ come from DATABASE_URL and AMQP_URL (local defaults); any Evently
 * setting in the environment (e.g. WORKER_MAX_IN_FLIGHT) reaches the stack and the report.
 */
const defaultOut = join(import.meta.dir, "../results");
const { values: args } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    quick: { type: "boolean", default: false },
    "no-ceilings": { type: "boolean", default: false },
    scale: { type: "string", default: "1" },
    roles: { type: "string", default: "api,worker,dispatcher" },
    /** Postgres settings for the scratch database, e.g. --db-set=plan_cache_mode=force_custom_plan (experiments). */
    "db-set": { type: "string", multiple: true, default: [] },
    out: { type: "string", default: defaultOut },
    /** Directory for a CPU profile of each role (<role>.cpuprofile; open in Chrome DevTools). */
    "cpu-prof": { type: "string" },
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

// One endpoint on the sink: Bun's fetch keeps at most 64 keep-alive connections per origin, so the
// worker may use them all (the default per-endpoint limit is 32). The environment can override it.
const stackEnv = { WORKER_MAX_IN_FLIGHT_PER_ENDPOINT: "64", ...eventlyEnv() };
const databaseSettings = Object.fromEntries((args["db-set"] ?? []).map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]));
const stack = await startStack({ roles, env: stackEnv, databaseSettings, cpuProfileDir: args["cpu-prof"], log });
const sink = startSink({ port: 0 });
const phases: PhaseResult[] = [];
const failures: string[] = [];
let dbSettings: Record<string, string> = {};
const memory: Record<string, { peakRssMiB: number; rssMiB: number }> = {};
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

  const target = {
    apiUrl: stack.apiUrl,
    apiKey: process.env.API_KEY,
    sink,
    eventType: "bench.order.paid",
    fanout: 1,
    payload: JSON.parse(samplePayload(1)),
    roleUrls: stack.roleUrls,
    pids: stack.pids,
    database: new URL(stack.env.DATABASE_URL!).pathname.slice(1),
    dbStats: stack.dbStats,
  };
  const run = async (spec: PhaseSpec) => {
    if (await stack.vacuumIfNoAutovacuum()) log("autovacuum is off on this server: ran VACUUM ANALYZE before the phase, as autovacuum would");
    const result = await runPhase(target, spec, quick ? 60_000 : 180_000, log);
    phases.push(result);
    const d = result.delivery;
    if (!d.complete) {
      failures.push(`${spec.name}: ${d.unique} of ${d.expected} accepted events delivered before the drain timeout`);
      log(`job states: ${JSON.stringify(await stack.jobStates())}`);
    }
    if (d.invalid > 0) failures.push(`${spec.name}: ${d.invalid} deliveries failed signature checks`);
    if (result.publish.eventsAccepted === 0) failures.push(`${spec.name}: no event was accepted (${JSON.stringify(result.publish.errorKinds)})`);
    return result;
  };
  // Latency at fixed rates, then the ramp, then the saturating ingest phases (whose backlog would
  // otherwise spill into the measurements after them).
  const all = defaultPhases(quick, scale);
  for (const spec of all.filter((p) => p.group !== "ingest")) await run(spec);
  for (const spec of rampSteps(quick, scale)) {
    const result = await run(spec);
    if (!result.keptUp) {
      log(`ramp: stopped after ${spec.name}, which did not keep up`);
      break;
    }
  }
  for (const spec of all.filter((p) => p.group === "ingest")) await run(spec);
  dbSettings = (await stack.dbStats().catch(() => undefined))?.settings ?? {};
  for (const [role, pid] of Object.entries(stack.pids)) {
    const m = memoryOf(pid);
    if (m) memory[role] = m;
  }
  const own = memoryOf(process.pid);
  if (own) memory["bench (sink + generator)"] = own;
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
  stack: { roles, env: stackEnv, databaseSettings, postgresSettings: dbSettings },
  ceilings,
  phases,
  memory,
  summary: summarise(phases, ceilings, memory),
  passed: failures.length === 0,
  failures,
};
mkdirSync(args.out!, { recursive: true });
const base = join(args.out!, `bench-${startedAt.replace(/[:.]/g, "-")}${quick ? "-quick" : ""}`);
writeFileSync(`${base}.json`, JSON.stringify(report, null, 2) + "\n");
writeFileSync(`${base}.md`, renderMarkdown(report));
log(`wrote ${base}.json and .md`);
// latest.* is the reference full run: default settings only, no experiments.
if (!quick && args.out === defaultOut && Object.keys(databaseSettings).length === 0) {
  writeFileSync(join(args.out!, "latest.json"), JSON.stringify(report, null, 2) + "\n");
  writeFileSync(join(args.out!, "latest.md"), renderMarkdown(report));
  log(`wrote ${join(args.out!, "latest.json")} and .md`);
}
log(report.passed ? "PASSED: every accepted event was delivered" : `FAILED:\n  ${failures.join("\n  ")}`);
process.exit(report.passed ? 0 : 1);
