import { samplePayload } from "../ceilings.ts";
import { memoryOf } from "../observe.ts";
import { defaultPhases, type PhaseResult, type PhaseSpec } from "../phases.ts";
import type { ScalingCurve } from "../scaling.ts";
import { chosen, openBench, pointOf, type CurveContext } from "./harness.ts";

/**
 * A backlog of a million jobs: accepted through POST /events/batch while the worker (and the
 * dispatcher) are stopped, then drained with no new load. The drain rate is sampled over time, with
 * each role's RSS, to show whether working off a large backlog slows down or costs memory as it goes.
 */

const BATCH = 500;
// The sink's longest wait (loadtest/sink/server.ts): a drain that takes longer fails the curve.
const DRAIN_TIMEOUT_MS = 600_000;

type Timeline = NonNullable<ScalingCurve["timeline"]>;

/** Samples deliveries and RSS every `everyMs` until stopped. */
function sampleTimeline(bench: Awaited<ReturnType<typeof openBench>>, everyMs: number): { timeline: Timeline; stop: () => void } {
  const timeline: Timeline = [];
  const started = Date.now();
  let last = { at: started, delivered: 0 };
  const timer = setInterval(async () => {
    const at = Date.now();
    const delivered = (await bench.sink.stats().catch(() => ({ unique: last.delivered }))).unique;
    const rssMiB: Record<string, number> = {};
    for (const [role, pid] of Object.entries(bench.stack.pids)) {
      const m = memoryOf(pid);
      if (m) rssMiB[role] = m.rssMiB;
    }
    timeline.push({ seconds: Math.round((at - started) / 100) / 10, delivered, perSecond: Math.round(((delivered - last.delivered) * 1000) / (at - last.at)), rssMiB });
    last = { at, delivered };
  }, everyMs);
  return { timeline, stop: () => clearInterval(timer) };
}

export async function runBacklog(ctx: CurveContext): Promise<ScalingCurve> {
  const [jobs] = chosen(ctx, [ctx.quick ? 20_000 : 1_000_000]);
  if (jobs === undefined) throw new Error("no backlog size chosen");
  const bench = await openBench(ctx);
  try {
    const payload = JSON.parse(samplePayload(1)) as Record<string, unknown>;
    const idleCores = await bench.warmUp(payload);
    await bench.addEndpoints(["bench.backlog"], "backlog");
    const burst = defaultPhases(ctx.quick).find((p) => p.name === "burst-batch")!;
    const spec: PhaseSpec = {
      ...burst,
      name: `backlog-${jobs}`,
      description: `POST /events/batch, ${BATCH} events per request, ${burst.concurrency} publishers until ${jobs.toLocaleString("en-US")} events are accepted, delivery roles stopped; then drained`,
      batchSize: BATCH,
      requests: Math.ceil(jobs / BATCH),
      durationMs: 15 * 60_000,
    };
    await bench.sink.reset();
    const sampler = sampleTimeline(bench, ctx.quick ? 500 : 2000);
    let p: PhaseResult;
    try {
      p = await bench.measure(bench.target({ eventType: "bench.backlog", payload }), spec, DRAIN_TIMEOUT_MS);
    } finally {
      sampler.stop();
    }
    const publishS = p.publish.durationMs / 1000;
    // Whole sampling intervals inside the drain: after publishing ended, before the last delivery.
    const draining = sampler.timeline.filter((s, i, all) => s.seconds > publishS + 1 && i > 0 && all[i - 1]!.delivered > 0 && s.delivered < p.delivery.unique);
    const rates = draining.map((s) => s.perSecond);
    const peak = (role: string) => memoryOf(bench.stack.pids[role] ?? -1)?.peakRssMiB;
    const extra: Record<string, number> = {
      publishSeconds: Math.round(publishS),
      drainPerSecond: p.delivery.drainPerSecond ?? 0,
      drainSeconds: Math.round(p.delivery.drainMs / 1000),
      ...(rates.length ? { drainSlowestPerSecond: Math.min(...rates), drainFastestPerSecond: Math.max(...rates) } : {}),
    };
    for (const role of ["api", "worker", "dispatcher"]) {
      const v = peak(role);
      if (v !== undefined) extra[`peakRss_${role}`] = v;
    }
    return {
      name: "backlog",
      title: `Backlog of ${jobs.toLocaleString("en-US")} jobs`,
      x: { label: "jobs in the backlog", log: false },
      method:
        `${spec.description}. Deliveries and each role's RSS sampled every ${ctx.quick ? 0.5 : 2} s from the first request to the last delivery; ` +
        "CPU per delivery and latency cover publishing and draining (latency is dominated by the time events waited while delivery was stopped). " +
        "Peak RSS is each process's VmHWM at the end: the backlog is the largest thing the stack held.",
      roles: bench.roles,
      env: {},
      idleCores,
      points: [pointOf(p, jobs, jobs.toLocaleString("en-US"), idleCores, extra)],
      columns: [
        { key: "publishSeconds", label: "Publishing (s)" },
        { key: "drainPerSecond", label: "Drain (deliveries/s)" },
        { key: "drainSlowestPerSecond", label: `Slowest ${ctx.quick ? 0.5 : 2} s of the drain (/s)` },
        { key: "drainFastestPerSecond", label: "Fastest (/s)" },
        { key: "drainSeconds", label: "Drain (s)" },
        { key: "peakRss_api", label: "Peak RSS api (MiB)" },
        { key: "peakRss_worker", label: "Peak RSS worker (MiB)" },
        { key: "peakRss_dispatcher", label: "Peak RSS dispatcher (MiB)" },
      ],
      timeline: sampler.timeline,
      notes: [],
    };
  } finally {
    await bench.stop();
  }
}
