import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { configSchemas, variablesOf } from "../../services/core/config/index.ts";
import { startSink } from "../sink/server.ts";
import { measureCeilings, samplePayload } from "./ceilings.ts";
import { memoryOf } from "./observe.ts";
import { defaultPhases, rampSteps, runPhase, type PhaseResult, type PhaseSpec } from "./phases.ts";
import { renderMarkdown, summarise, type BenchReport, type Memory, type TransportRun } from "./report.ts";
import { startStack, type BenchTransport } from "./stack.ts";

/**
 * `npm run bench -- [--transport=rabbitmq|postgres|both] [--quick] [--no-ceilings] [--scale=2] [--roles=all] [--phases=warmup,burst-batch] [--out=dir] [--db-set=name=value] [--cpu-prof=dir]`
 *
 * Measures this machine's raw ceilings, then for each queue transport (both by default, RabbitMQ
 * first) starts Evently on a scratch database (and, for RabbitMQ, its own AMQP prefix) with an
 * in-process sink, runs the publish phases, and checks that every accepted event was delivered
 * exactly once with a valid signature. Writes loadtest/results/bench-<time>[-quick].json and .md
 * (a full run of both transports also latest.json and latest.md). Exits 1 when a check fails, never
 * because of a speed. Postgres and RabbitMQ come from DATABASE_URL and AMQP_URL (local defaults);
 * any other Evently setting in the environment (e.g. WORKER_MAX_IN_FLIGHT) reaches both stacks and
 * the report.
 */
const defaultOut = join(import.meta.dir, "../results");
const { values: args } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    /** Which queue transport(s) to measure, one after the other. */
    transport: { type: "string", default: "both" },
    quick: { type: "boolean", default: false },
    "no-ceilings": { type: "boolean", default: false },
    scale: { type: "string", default: "1" },
    /** Default: api,worker,dispatcher on RabbitMQ; api,worker on Postgres (the dispatcher would idle). */
    roles: { type: "string" },
    /** Postgres settings for the scratch database, e.g. --db-set=plan_cache_mode=force_custom_plan (experiments). */
    "db-set": { type: "string", multiple: true, default: [] },
    out: { type: "string", default: defaultOut },
    /** Directory for a CPU profile of each role (<transport>-<role>.cpuprofile; open in Chrome DevTools). */
    "cpu-prof": { type: "string" },
    /** Only these phases (and ramp steps), by name, in their usual order: for experiments on one figure. */
    phases: { type: "string" },
  },
});
const quick = args.quick!;
const scale = Number(args.scale);
if (!(scale > 0)) throw new Error("--scale must be a positive number");
type Role = "api" | "worker" | "dispatcher" | "all";
const roleChoice = args.roles?.split(",") as Role[] | undefined;
const transportChoices: Record<string, BenchTransport[]> = { rabbitmq: ["rabbitmq"], postgres: ["postgres"], both: ["rabbitmq", "postgres"] };
const transports = transportChoices[args.transport!];
if (!transports) throw new Error(`--transport must be rabbitmq, postgres or both, not ${args.transport}`);
const phaseChoice = args.phases?.split(",");
const chosen = (spec: PhaseSpec) => !phaseChoice || phaseChoice.includes(spec.name);
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
  const own = new Set(["DATABASE_URL", "AMQP_URL", "AMQP_PREFIX", "HOST", "PORT", "ADMIN_API_KEY", "ENCRYPTION_KEY", "QUEUE_TRANSPORT"]);
  const names = new Set(Object.values(configSchemas).flatMap(variablesOf).filter((k) => !own.has(k)));
  return Object.fromEntries(Object.entries(process.env).filter(([k, v]) => names.has(k) && v !== undefined) as [string, string][]);
}

const startedAt = new Date().toISOString();
if (process.env.QUEUE_TRANSPORT) log(`QUEUE_TRANSPORT=${process.env.QUEUE_TRANSPORT} in the environment is ignored: --transport chooses (now ${args.transport})`);
const ceilings = args["no-ceilings"] ? null : await measureCeilings({ quick, log, rabbitmq: transports.includes("rabbitmq") });

// One endpoint on the sink: Bun's fetch keeps at most 64 keep-alive connections per origin, so the
// worker may use them all (the default per-endpoint limit is 32). The environment can override it.
const stackEnv = { WORKER_MAX_IN_FLIGHT_PER_ENDPOINT: "64", ...eventlyEnv() };
const databaseSettings = Object.fromEntries((args["db-set"] ?? []).map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]));

/** One stack on one transport through every phase; never throws (a failure is recorded in the run). */
async function runTransport(transport: BenchTransport): Promise<TransportRun> {
  const roles: Role[] = roleChoice ?? (transport === "rabbitmq" ? ["api", "worker", "dispatcher"] : ["api", "worker"]);
  const notes: string[] = [];
  if (transport === "postgres" && roles.includes("dispatcher"))
    notes.push("The dispatcher process was started but idles: on the Postgres transport workers take due jobs from the outbox themselves.");
  if (transport === "postgres" && !roles.includes("dispatcher") && !roles.includes("all"))
    notes.push("No dispatcher process: on the Postgres transport it has nothing to do (workers take due jobs from the outbox themselves).");
  const phases: PhaseResult[] = [];
  const failures: string[] = [];
  const memory: Memory = {};
  let postgresSettings: Record<string, string> = {};
  log(`=== ${transport} transport: ${roles.join(", ")}`);
  let stack: Awaited<ReturnType<typeof startStack>> | undefined;
  const sink = startSink({ port: 0 });
  try {
    stack = await startStack({ transport, roles, env: stackEnv, databaseSettings, cpuProfileDir: args["cpu-prof"], log });
    const s = stack;
    const api = async (path: string, body: unknown, key: string) => {
      const headers: Record<string, string> = { "content-type": "application/json", authorization: `Bearer ${key}` };
      const res = await fetch(`${s.apiUrl}${path}`, { method: "POST", headers, body: JSON.stringify(body) });
      if (res.status !== 201) throw new Error(`POST ${path}: ${res.status} ${await res.text()}`);
      return (await res.json()) as { id: string; secret: string; key: string };
    };
    // As a producer runs: with an application's own key (made with the admin key), which is what
    // every request of the phases authenticates with.
    const application = await api("/applications", { name: "bench" }, s.env.ADMIN_API_KEY!);
    const { key: apiKey } = await api(`/applications/${application.id}/api-keys`, { name: "bench" }, s.env.ADMIN_API_KEY!);
    const endpoint = await api("/endpoints", { url: `${sink.url}/hooks/bench`, description: "benchmark sink" }, apiKey);
    await api("/routes", { endpointId: endpoint.id, eventType: "bench.*" }, apiKey);
    sink.addSecret(endpoint.secret, "bench");

    const target = {
      transport,
      apiUrl: s.apiUrl,
      apiKey,
      sink,
      eventType: "bench.order.paid",
      fanout: 1,
      payload: JSON.parse(samplePayload(1)),
      roleUrls: s.roleUrls,
      pids: s.pids,
      database: new URL(s.env.DATABASE_URL!).pathname.slice(1),
      dbStats: s.dbStats,
    };
    const run = async (spec: PhaseSpec) => {
      if (await s.vacuumIfNoAutovacuum()) log("autovacuum is off on this server: ran VACUUM ANALYZE before the phase, as autovacuum would");
      let vacuums = 0;
      const stopVacuums = s.vacuumPeriodically(() => {
        vacuums++;
        log(`${spec.name}: ran VACUUM ANALYZE during the phase, as autovacuum would every autovacuum_naptime`);
      });
      // The quick drain timeout still covers one autovacuum_naptime (see vacuumPeriodically) and a drain.
      const result = await runPhase(target, spec, quick ? 90_000 : 180_000, log).finally(stopVacuums);
      if (vacuums > 0) notes.push(`\`${spec.name}\` lasted long enough for ${vacuums} VACUUM ANALYZE during the phase (autovacuum's stand-in, every autovacuum_naptime).`);
      phases.push(result);
      const d = result.delivery;
      if (!d.complete) {
        failures.push(`${spec.name}: ${d.unique} of ${d.expected} accepted events delivered before the drain timeout`);
        log(`job states: ${JSON.stringify(await s.jobStates())}`);
      }
      // No fault is injected and no process dies: a second delivery of an event is a bug here.
      if (d.duplicates > 0) failures.push(`${spec.name}: ${d.duplicates} events delivered more than once`);
      if (d.invalid > 0) failures.push(`${spec.name}: ${d.invalid} deliveries failed signature checks`);
      if (result.publish.eventsAccepted === 0) failures.push(`${spec.name}: no event was accepted (${JSON.stringify(result.publish.errorKinds)})`);
      return result;
    };
    // Latency at fixed rates, then the ramp, then the saturating ingest phases (whose backlog would
    // otherwise spill into the measurements after them).
    const all = defaultPhases(quick, scale).filter(chosen);
    for (const spec of all.filter((p) => p.group !== "ingest")) await run(spec);
    for (const spec of rampSteps(quick, scale).filter(chosen)) {
      const result = await run(spec);
      if (!result.keptUp) {
        log(`ramp: stopped after ${spec.name}, which did not keep up`);
        break;
      }
    }
    for (const spec of all.filter((p) => p.group === "ingest")) await run(spec);
    postgresSettings = (await s.dbStats().catch(() => undefined))?.settings ?? {};
    for (const [role, pid] of Object.entries(s.pids)) {
      const m = memoryOf(pid);
      if (m) memory[role] = m;
    }
  } catch (err) {
    failures.push(`run aborted: ${(err as Error).message}`);
  } finally {
    await sink.stop();
    await stack?.stop();
  }
  const passed = failures.length === 0;
  log(`=== ${transport} transport: ${passed ? "every accepted event was delivered once" : `FAILED:\n  ${failures.join("\n  ")}`}`);
  return {
    transport,
    stack: { roles, env: stackEnv, databaseSettings, postgresSettings },
    notes,
    phases,
    memory,
    summary: summarise(transport, phases, ceilings),
    passed,
    failures,
  };
}

const runs: TransportRun[] = [];
for (const transport of transports) runs.push(await runTransport(transport));
const failures = runs.flatMap((r) => r.failures.map((f) => `${r.transport}: ${f}`));
const report: BenchReport = {
  startedAt,
  finishedAt: new Date().toISOString(),
  quick,
  revision: revision(),
  ceilings,
  runs,
  benchMemory: memoryOf(process.pid),
  passed: failures.length === 0,
  failures,
};
mkdirSync(args.out!, { recursive: true });
const base = join(args.out!, `bench-${startedAt.replace(/[:.]/g, "-")}${quick ? "-quick" : ""}`);
writeFileSync(`${base}.json`, JSON.stringify(report, null, 2) + "\n");
writeFileSync(`${base}.md`, renderMarkdown(report));
log(`wrote ${base}.json and .md`);
// latest.* is the reference full run: both transports, default settings only, no experiments.
if (!quick && args.out === defaultOut && transports.length === 2 && !roleChoice && Object.keys(databaseSettings).length === 0) {
  writeFileSync(join(args.out!, "latest.json"), JSON.stringify(report, null, 2) + "\n");
  writeFileSync(join(args.out!, "latest.md"), renderMarkdown(report));
  log(`wrote ${join(args.out!, "latest.json")} and .md`);
}
log(report.passed ? "PASSED: every accepted event was delivered once, on every transport" : `FAILED:\n  ${failures.join("\n  ")}`);
process.exit(report.passed ? 0 : 1);
