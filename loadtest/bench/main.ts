// First: every system measured runs on the same runtime settings (allocator-first.ts).
import "./allocator-first.ts";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { configSchemas, variablesOf } from "../../services/core/config/index.ts";
import { releaseChildren } from "./reaper.ts";
import { startSinkProcess, type SinkProcess } from "../sink/process.ts";
import { measureCeilings, samplePayload } from "./ceilings.ts";
import { memoryOf } from "./observe.ts";
import { startOtlpReceiver } from "../../services/test/support/otlp.ts";
import { latencyBudget } from "./budget.ts";
import { sampleWaitEvents } from "./wait-events.ts";
import { defaultPhases, latencyPhase, rampSteps, runPhase, type PhaseResult, type PhaseSpec } from "./phases.ts";
import { renderMarkdown, summarise, type BenchReport, type Memory, type TransportRun } from "./report.ts";
import { createVia, producerKey, startStack, type BenchTransport } from "./stack.ts";
import { writeCharts, writeChartsFrom } from "./charts.ts";
import { parseScalingChoice, runScaling } from "./scaling.ts";
import { parsePeersChoice, runPeers } from "./peers.ts";

/**
 * `npm run bench -- [--transport=rabbitmq|postgres|both] [--quick] [--no-ceilings] [--scale=2] [--roles=all] [--phases=warmup,burst-batch] [--budget] [--wait-events] [--peers=graphile,bullmq|none] [--handover=off] [--scaling[=fanout,payload,…]] [--charts-from=run.json] [--out=dir] [--db-set=name=value] [--cpu-prof=dir]`
 *
 * Measures this machine's raw ceilings, then for each queue transport (both by default, RabbitMQ
 * first) starts Evently on a scratch database (and, for RabbitMQ, its own AMQP prefix) with a
 * sink in a process of its own, runs the publish phases, and checks that every accepted event was
 * delivered exactly once with a valid signature. Then the peers (bench/peers.ts: webhook senders on
 * graphile-worker and BullMQ; not with --quick unless --peers names them) go through the same
 * warm-up, latency phase and ramp. Writes loadtest/results/bench-<time>[-quick].json and .md
 * (a full run of both transports also latest.json and latest.md). Exits 1 when a check fails, never
 * because of a speed. Postgres and RabbitMQ come from DATABASE_URL and AMQP_URL (local defaults);
 * any other Evently setting in the environment (e.g. WORKER_MAX_IN_FLIGHT) reaches both stacks and
 * the report.
 */
const defaultOut = join(import.meta.dir, "../results");
const { values: args } = parseArgs({
  // A bare --scaling means every curve.
  args: Bun.argv.slice(2).map((a) => (a === "--scaling" ? "--scaling=all" : a)),
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
    /**
     * The latency budget instead of the phases: latency at 100 and 1,000 events/s, then the ramp's
     * steps at 3,000, 5,000, 6,000 and 8,000 events/s (batches of 50: where its tail grows), with
     * tracing on at TRACE_SAMPLE_RATIO (default 0.1), each stage's time read from the sampled traces
     * (budget.ts). `--phases` picks among them (the warm-up always runs).
     */
    budget: { type: "boolean", default: false },
    /** What the stack's Postgres backends were doing in each phase: on CPU or waiting, on what (wait-events.ts). */
    "wait-events": { type: "boolean", default: false },
    /** The scaling curves (scaling.ts) instead of the phases: all, or some (--scaling=fanout,payload), on the first transport chosen. */
    scaling: { type: "string" },
    /** Only write the charts of a report already made (charts/<run>-*.svg beside it), then exit. */
    "charts-from": { type: "string" },
    /** Peers run after the transports with the same phases (bench/peers.ts): graphile, bullmq, or none. Default both; none with --quick. */
    peers: { type: "string" },
    /** Separate roles: workers connect to the API for the hand-over (QUEUE_HANDOVER_URL, as deployed), or `off`. */
    handover: { type: "string", default: "on" },
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
if (args["charts-from"]) {
  for (const file of writeChartsFrom(args["charts-from"])) log(`wrote ${file}`);
  process.exit(0);
}
const scalingChoice = args.scaling === undefined ? undefined : parseScalingChoice(args.scaling);
const peerChoice = scalingChoice || args.budget ? [] : parsePeersChoice(args.peers, quick);

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
const stackEnv: Record<string, string> = { WORKER_MAX_IN_FLIGHT_PER_ENDPOINT: "64", ...eventlyEnv() };
// The budget's spans go to a receiver in this process, exported every 200 ms rather than 5 s so a
// phase's last traces are in when it ends.
const otlp = args.budget ? startOtlpReceiver() : undefined;
if (otlp)
  Object.assign(stackEnv, { OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, OTEL_BSP_SCHEDULE_DELAY: "200", TRACE_SAMPLE_RATIO: stackEnv.TRACE_SAMPLE_RATIO ?? "0.1" });
const databaseSettings = Object.fromEntries((args["db-set"] ?? []).map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]));

/** One stack on one transport through every phase; never throws (a failure is recorded in the run). */
async function runTransport(transport: BenchTransport): Promise<TransportRun> {
  const roles: Role[] = roleChoice ?? (transport === "rabbitmq" ? ["api", "worker", "dispatcher"] : ["api", "worker"]);
  const notes: string[] = [];
  if (transport === "postgres" && roles.includes("dispatcher"))
    notes.push("The dispatcher process was started but idles: on the Postgres transport workers take due jobs from the outbox themselves.");
  if (transport === "postgres" && !roles.includes("dispatcher") && !roles.includes("all"))
    notes.push("No dispatcher process: on the Postgres transport it has nothing to do (workers take due jobs from the outbox themselves).");
  if (roles.includes("worker") && roles.includes("api")) {
    const usual = transport === "postgres" ? "the commit's NOTIFY and a worker's take" : "the broker, with the worker's claim";
    notes.push(
      args.handover === "off"
        ? `Hand-over off (\`--handover=off\`): every job went through ${usual}.`
        : `Each worker connected to an API process for the hand-over (QUEUE_HANDOVER_URL, as the deployments set it): new jobs that fit its room went claimed from the commit over that connection, the rest through ${usual}.`,
    );
  }
  const phases: PhaseResult[] = [];
  const failures: string[] = [];
  const memory: Memory = {};
  let postgresSettings: Record<string, string> = {};
  log(`=== ${transport} transport: ${roles.join(", ")}`);
  let stack: Awaited<ReturnType<typeof startStack>> | undefined;
  let sinkProcess: SinkProcess | undefined;
  try {
    const sink = (sinkProcess = await startSinkProcess());
    stack = await startStack({ transport, roles, env: stackEnv, databaseSettings, cpuProfileDir: args["cpu-prof"], log, handover: args.handover !== "off" });
    const s = stack;
    // As a producer runs: with an application's own key (made with the admin key), which is what
    // every request of the phases authenticates with.
    const apiKey = await producerKey(s, "bench");
    const endpoint = await createVia(s, "/endpoints", { url: `${sink.url}/hooks/bench`, description: "benchmark sink" }, apiKey);
    await createVia(s, "/routes", { endpointId: endpoint.id, eventType: "bench.*" }, apiKey);
    await sink.addSecret(endpoint.secret, "bench");

    const target = {
      transport,
      apiUrl: s.apiUrl,
      apiKey,
      sink,
      eventType: "bench.order.paid",
      fanout: 1,
      payload: JSON.parse(samplePayload(1)),
      roleUrls: s.roleUrls,
      pids: { ...s.pids, sink: sink.pid },
      database: new URL(s.env.DATABASE_URL!).pathname.slice(1),
      dbStats: s.dbStats,
      backendPools: s.backendPools,
      sampleWaits: args["wait-events"] ? () => sampleWaitEvents(s.env.DATABASE_URL!) : undefined,
    };
    const run = async (spec: PhaseSpec) => {
      if (await s.vacuumIfNoAutovacuum()) log("autovacuum is off on this server: ran VACUUM ANALYZE before the phase, as autovacuum would");
      let vacuums = 0;
      const stopVacuums = s.vacuumPeriodically(() => {
        vacuums++;
        log(`${spec.name}: ran VACUUM ANALYZE during the phase, as autovacuum would every autovacuum_naptime`);
      });
      // The quick drain timeout still covers one autovacuum_naptime (see vacuumPeriodically) and a drain.
      const startedAt = Date.now();
      const result = await runPhase(target, spec, quick ? 90_000 : 180_000, log).finally(stopVacuums);
      if (otlp) {
        await Bun.sleep(1000);
        result.budget = latencyBudget(otlp.spans(), startedAt, Date.now());
        log(`${spec.name}: latency budget from ${result.budget.jobs} jobs of ${result.budget.traces} sampled traces (${result.budget.skipped} left out)`);
      }
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
    if (args.budget) {
      const steps = rampSteps(quick, scale).filter((step) => [3000, 5000, 6000, 8000].includes((step.eventsPerSecond ?? 0) / scale));
      await run(defaultPhases(quick, scale)[0]!);
      for (const spec of [latencyPhase(100, 20_000), latencyPhase(1000, 20_000), ...steps].filter(chosen)) await run(spec);
    }
    const all = args.budget ? [] : defaultPhases(quick, scale).filter(chosen);
    for (const spec of all.filter((p) => p.group !== "ingest")) await run(spec);
    for (const spec of args.budget ? [] : rampSteps(quick, scale).filter(chosen)) {
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
    await sinkProcess?.stop();
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
if (!scalingChoice) for (const transport of transports) runs.push(await runTransport(transport));
const scaling = scalingChoice && (await runScaling(scalingChoice, { transport: transports[0]!, quick, env: stackEnv, databaseSettings, log }));
const peers = await runPeers(peerChoice, { quick, scale, chosen, drainTimeoutMs: quick ? 90_000 : 180_000, log });
const failures = [
  ...runs.flatMap((r) => r.failures.map((f) => `${r.transport}: ${f}`)),
  ...(scaling?.failures.map((f) => `scaling: ${f}`) ?? []),
  ...peers.flatMap((p) => p.failures.map((f) => `peer ${p.peer}: ${f}`)),
];
const report: BenchReport = {
  startedAt,
  finishedAt: new Date().toISOString(),
  quick,
  revision: revision(),
  allocator: Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith("MIMALLOC_")) as [string, string][]),
  ceilings,
  runs,
  benchMemory: memoryOf(process.pid),
  passed: failures.length === 0,
  failures,
  scaling,
  peers,
};
mkdirSync(args.out!, { recursive: true });
const base = join(args.out!, `bench-${startedAt.replace(/[:.]/g, "-")}${scalingChoice ? "-scaling" : ""}${quick ? "-quick" : ""}`);
report.charts = writeCharts(report, base);
log(`wrote ${report.charts.join(", ") || "no charts"}`);
writeFileSync(`${base}.json`, JSON.stringify(report, null, 2) + "\n");
writeFileSync(`${base}.md`, renderMarkdown(report));
log(`wrote ${base}.json and .md`);
// latest.* is the reference full run: both transports, default settings only, no experiments.
if (!quick && !args.budget && !args["wait-events"] && !scalingChoice && !phaseChoice && args.out === defaultOut && transports.length === 2 && !roleChoice && Object.keys(databaseSettings).length === 0) {
  writeFileSync(join(args.out!, "latest.json"), JSON.stringify(report, null, 2) + "\n");
  writeFileSync(join(args.out!, "latest.md"), renderMarkdown(report));
  log(`wrote ${join(args.out!, "latest.json")} and .md`);
}
await otlp?.stop();
log(report.passed ? "PASSED: every accepted event was delivered once, on every transport" : `FAILED:\n  ${failures.join("\n  ")}`);
// Every stack, sink and peer has been stopped: the reaper need not kill them.
releaseChildren();
process.exit(report.passed ? 0 : 1);
