import { startSinkProcess, type SinkProcess } from "../../sink/process.ts";
import { runClosedLoop } from "../generator.ts";
import { cpuBetween, sampleCpu } from "../observe.ts";
import { defaultPhases, runPhase, type PhaseResult, type PhaseSpec, type PhaseTarget } from "../phases.ts";
import { cpuPerDelivery, stackGroups } from "../report.ts";
import type { ScalingPoint } from "../scaling.ts";
import { createVia, producerKey, startStack, type BenchTransport, type Stack } from "../stack.ts";

/**
 * What every scaling curve does the same way: a stack of its own with the sink in its own process, an
 * application and key as a producer has, endpoints on the sink made through the API, phases run
 * with the same checks as the main bench (every accepted event delivered once, signatures valid),
 * and a phase turned into a point of the curve.
 */
export type Role = "api" | "worker" | "dispatcher" | "all";

export interface CurveContext {
  transport: BenchTransport;
  quick: boolean;
  /** Settings every stack gets (the bench's, and Evently settings from the environment). */
  env: Record<string, string>;
  databaseSettings: Record<string, string>;
  log: (msg: string) => void;
  /** Where failed checks go (the report's failures). */
  failures: string[];
  /** Only the points with these x values: a smoke test runs one. */
  only?: number[];
}

export interface Bench {
  stack: Stack;
  sink: SinkProcess;
  roles: Role[];
  /** A target for runPhase: the stack, sink and key, publishing `eventType` to `fanout` endpoints. */
  target(fields: Partial<PhaseTarget> & Pick<PhaseTarget, "eventType" | "payload">): PhaseTarget;
  /** One endpoint on the sink per entry, each routed to that event type, its secret known to the sink; their ids in order. */
  addEndpoints(eventTypes: string[], scope: string): Promise<Array<{ id: string }>>;
  /** runPhase with the bench's checks; failures go to the context's list. */
  measure(target: PhaseTarget, spec: PhaseSpec, drainTimeoutMs?: number): Promise<PhaseResult>;
  /** The warm-up phase of the main bench on an endpoint of its own, then the idle draw per process group. */
  warmUp(payload: Record<string, unknown>): Promise<Record<string, number>>;
  stop(): Promise<void>;
}

export const defaultRoles = (transport: BenchTransport): Role[] => (transport === "rabbitmq" ? ["api", "worker", "dispatcher"] : ["api", "worker"]);

/** Starts a stack (its own scratch database and AMQP prefix) and the sink, and makes the producer's application and key. */
export async function openBench(ctx: CurveContext, options: { roles?: Role[]; env?: Record<string, string> } = {}): Promise<Bench> {
  const roles = options.roles ?? defaultRoles(ctx.transport);
  let sinkProcess: SinkProcess | undefined;
  let stack: Stack | undefined;
  try {
    const sink = (sinkProcess = await startSinkProcess());
    stack = await startStack({ transport: ctx.transport, roles, env: { ...ctx.env, ...options.env }, databaseSettings: ctx.databaseSettings, log: ctx.log, label: "scaling" });
    const s = stack;
    const database = new URL(s.env.DATABASE_URL!).pathname.slice(1);
    const apiKey = await producerKey(s, "scaling");
    // Several API processes: requests are spread over them as a load balancer would.
    const apiUrls = Object.entries(s.roleUrls).filter(([name]) => /^(api|all)(-\d+)?$/.test(name)).map(([, url]) => url);
    const target: Bench["target"] = (fields) => ({
      transport: ctx.transport,
      apiUrl: s.apiUrl,
      apiKey,
      sink,
      fanout: 1,
      roleUrls: s.roleUrls,
      pids: { ...s.pids, sink: sink.pid },
      database,
      dbStats: s.dbStats,
      backendPools: s.backendPools,
      ...(apiUrls.length > 1 ? { apiUrls } : {}),
      ...fields,
    });
    const addEndpoints: Bench["addEndpoints"] = async (eventTypes, scope) => {
      const ids: Array<{ id: string }> = [];
      const result = await runClosedLoop({
        concurrency: 8,
        count: eventTypes.length,
        send: async (i) => {
          const hook = `${scope}-${i}`;
          const endpoint = await createVia(s, "/endpoints", { url: `${sink.url}/hooks/${hook}`, description: `scaling ${hook}`, eventTypes: [eventTypes[i]] }, apiKey);
          await sink.addSecret(endpoint.secret, hook);
          ids[i] = { id: endpoint.id };
        },
      });
      if (result.errors > 0) throw new Error(`creating endpoints: ${JSON.stringify(result.errorKinds)}`);
      return ids;
    };
    const measure: Bench["measure"] = async (t, spec, drainTimeoutMs = ctx.quick ? 90_000 : 180_000) => {
      // What autovacuum would do, when the server runs without it (as in the main bench).
      await s.vacuumIfNoAutovacuum();
      const stopVacuums = s.vacuumPeriodically(() => ctx.log(`${spec.name}: ran VACUUM ANALYZE during the phase, as autovacuum would`));
      const result = await runPhase(t, spec, drainTimeoutMs, ctx.log).finally(stopVacuums);
      const d = result.delivery;
      const where = `${ctx.transport} ${spec.name}`;
      if (!d.complete) {
        ctx.failures.push(`${where}: ${d.unique} of ${d.expected} accepted events delivered before the drain timeout`);
        ctx.log(`job states: ${JSON.stringify(await s.jobStates())}`);
      }
      if (d.duplicates > 0) ctx.failures.push(`${where}: ${d.duplicates} events delivered more than once`);
      if (d.invalid > 0) ctx.failures.push(`${where}: ${d.invalid} deliveries failed signature checks`);
      if (result.publish.eventsAccepted === 0) ctx.failures.push(`${where}: no event was accepted (${JSON.stringify(result.publish.errorKinds)})`);
      return result;
    };
    const warmUp: Bench["warmUp"] = async (payload) => {
      await addEndpoints(["bench.warmup"], "warmup");
      await measure(target({ eventType: "bench.warmup", payload }), defaultPhases(ctx.quick).find((p) => p.group === "warmup")!);
      const before = sampleCpu(s.pids, database);
      await Bun.sleep(ctx.quick ? 1000 : 3000);
      return foldRoles(cpuBetween(before, sampleCpu(s.pids, database)).cores);
    };
    const stop = async () => {
      await sink.stop();
      await s.stop();
    };
    return { stack: s, sink, roles, target, addEndpoints, measure, warmUp, stop };
  } catch (err) {
    await sinkProcess?.stop();
    await stack?.stop();
    throw err;
  }
}

/** Per-group figures with a repeated role's processes (`api-2`) added to the role's. */
export function foldRoles(byGroup: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [group, v] of Object.entries(byGroup)) {
    const role = group.replace(/-\d+$/, "");
    out[role] = Math.round(((out[role] ?? 0) + v) * 1000) / 1000;
  }
  return out;
}

/** An open-loop phase of single events (or batches) at a fixed rate: a point's load. */
export function openLoop(name: string, eventsPerSecond: number, durationMs: number, what: string, batchSize = 1): PhaseSpec {
  return {
    name,
    description: `${batchSize === 1 ? "POST /events" : `POST /events/batch, ${batchSize} events per request`}, fixed ${eventsPerSecond} events/s, ${what}`,
    group: "latency",
    mode: "open",
    batchSize,
    eventsPerSecond,
    concurrency: 256,
    durationMs,
  };
}

/** A phase as a point of a curve: rates, latency, and CPU per delivery with the idle draw's share of it. */
export function pointOf(p: PhaseResult, x: number, label: string, idleCores?: Record<string, number>, extra: Record<string, number> = {}): ScalingPoint {
  const total = p.cpu.total;
  const folded = { ...p, cpu: { ...p.cpu, total: { ...total, cpuSeconds: foldRoles(total.cpuSeconds), cores: foldRoles(total.cores) } } };
  const cpu = cpuPerDelivery(folded);
  const delivered = p.delivery.unique;
  const round = (v: number) => Math.round(v * 1000) / 1000;
  const idle = idleCores ? stackGroups(p.transport).reduce((sum, g) => sum + (idleCores[g] ?? 0), 0) : undefined;
  return {
    x,
    label,
    phases: [p.spec.name],
    eventsPerSecond: p.publish.eventsPerSecond,
    deliveriesPerSecond: p.delivery.duringPublishPerSecond,
    delivered,
    latencyMs: { p50: p.delivery.latencyMs.p50, p99: p.delivery.latencyMs.p99 },
    otherCores: total.cores.other ?? 0,
    ...(cpu ? { cpu, cpuPerEvent: round((cpu.stack * delivered) / Math.max(1, p.publish.eventsAccepted)) } : {}),
    ...(idle !== undefined && delivered > 0 ? { idlePerDelivery: round((idle * total.seconds * 1000) / delivered) } : {}),
    ...(p.publish.errors || p.publish.dropped
      ? { errors: { ...p.publish.errorKinds, ...(p.publish.dropped ? { "dropped at the in-flight limit": p.publish.dropped } : {}) } }
      : {}),
    extra,
  };
}

/** The x values to measure: all of them, or those the caller chose (`only`). */
export function chosen(ctx: CurveContext, xs: number[]): number[] {
  return ctx.only ? xs.filter((x) => ctx.only!.includes(x)) : xs;
}
