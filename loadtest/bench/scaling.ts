import type { CpuPerDelivery } from "./report.ts";
import { runBacklog } from "./scaling/backlog.ts";
import { runEndpoints, runFanout, runPayload, runProcesses } from "./scaling/curves.ts";
import type { CurveContext } from "./scaling/harness.ts";
import { runHistory } from "./scaling/history.ts";
import type { BenchTransport } from "./stack.ts";

/**
 * How cost grows as work grows: `npm run bench -- --scaling[=fanout,endpoints,…]` measures a curve
 * of 2–5 points for each quantity an installation scales in (endpoints per event, active endpoints,
 * payload size, stored history, a backlog, processes per role), each point with the phases of
 * `phases.ts` on a stack of `stack.ts`. A point's cost is CPU core·ms per delivery by process,
 * latency p50/p99 and the delivery rate, at a fixed open-loop rate well below saturation, so a
 * rising curve means each delivery got dearer, not that the machine ran out; throughput points
 * (history, backlog, processes) use closed loops, bursts and the ramp instead. The curves
 * themselves live in scaling/.
 */
export const CURVES = ["fanout", "endpoints", "payload", "history", "backlog", "processes"] as const;
export type CurveName = (typeof CURVES)[number];

export interface ScalingPoint {
  /** The scaled quantity (endpoints, bytes, rows, processes per role…). */
  x: number;
  label: string;
  /** The phases behind the point, by name. */
  phases: string[];
  /** Accepted events per second of publishing. */
  eventsPerSecond: number;
  /** Deliveries that arrived while publishing, per second of publishing. */
  deliveriesPerSecond: number;
  delivered: number;
  /** Delivery latency (event creation → receipt at the sink), ms. */
  latencyMs: { p50: number; p99: number };
  /** CPU per delivery from first request to last delivery, core·ms; a repeated role's processes are summed under the role. */
  cpu?: CpuPerDelivery;
  /** The stack's CPU per accepted event, core·ms (fan-out: a delivery's cost times the endpoints). */
  cpuPerEvent?: number;
  /** How much of the stack's CPU per delivery its idle draw accounts for, core·ms (timers, polls, Postgres background). */
  idlePerDelivery?: number;
  /** Cores other processes on the machine used meanwhile (not the stack, not the bench): load that was not ours. */
  otherCores: number;
  /** Requests the API refused or the generator dropped, by kind: the point measured less load than it meant to. */
  errors?: Record<string, number>;
  /** What else this curve measures per point (fill time, drain rate, peak RSS…), named in `ScalingCurve.columns`. */
  extra: Record<string, number>;
}

export interface ScalingCurve {
  name: CurveName;
  title: string;
  /** The scaled quantity: label with unit, and whether its axis is logarithmic. */
  x: { label: string; log: boolean };
  /** How the points were measured: load shape, rates, what each point starts from. */
  method: string;
  roles: string[];
  /** Settings this curve's stacks got beyond the run's. */
  env: Record<string, string>;
  /** The stack's draw with no load, cores per process group, measured before the first point. */
  idleCores?: Record<string, number>;
  points: ScalingPoint[];
  /** The extra figures of each point, in table order. */
  columns: Array<{ key: string; label: string }>;
  /** The backlog curve: deliveries and RSS over time, sampled while publishing and draining. */
  timeline?: Array<{ seconds: number; delivered: number; perSecond: number; rssMiB: Record<string, number> }>;
  notes: string[];
}

export interface ScalingReport {
  transport: BenchTransport;
  quick: boolean;
  curves: ScalingCurve[];
  /** Undelivered, duplicated or badly signed deliveries, and curves that aborted. */
  failures: string[];
}

/** `--scaling` (all curves) or `--scaling=fanout,payload`. */
export function parseScalingChoice(value: string): CurveName[] {
  if (value === "" || value === "all") return [...CURVES];
  const names = value.split(",");
  const unknown = names.filter((n) => !(CURVES as readonly string[]).includes(n));
  if (unknown.length) throw new Error(`--scaling: unknown curve ${unknown.join(", ")}; choose from ${CURVES.join(", ")}`);
  return CURVES.filter((c) => names.includes(c));
}

const RUNNERS: Record<CurveName, (ctx: CurveContext) => Promise<ScalingCurve>> = {
  fanout: runFanout,
  endpoints: runEndpoints,
  payload: runPayload,
  history: runHistory,
  backlog: runBacklog,
  processes: runProcesses,
};

/** One curve; its failures (undelivered events…) are pushed to `failures`. */
export function runCurve(name: CurveName, ctx: CurveContext): Promise<ScalingCurve> {
  return RUNNERS[name](ctx);
}

/** The chosen curves one after another, each on stacks of its own; never throws. */
export async function runScaling(curves: CurveName[], ctx: Omit<CurveContext, "failures">): Promise<ScalingReport> {
  const failures: string[] = [];
  const done: ScalingCurve[] = [];
  for (const name of curves) {
    ctx.log(`=== scaling: ${name} (${ctx.transport} transport)`);
    const started = Date.now();
    try {
      done.push(await runCurve(name, { ...ctx, failures }));
    } catch (err) {
      failures.push(`${name}: aborted: ${(err as Error).message}`);
      ctx.log(`scaling ${name} aborted: ${(err as Error).stack ?? err}`);
    }
    ctx.log(`=== scaling: ${name} took ${Math.round((Date.now() - started) / 1000)} s`);
  }
  return { transport: ctx.transport, quick: ctx.quick, curves: done, failures };
}
