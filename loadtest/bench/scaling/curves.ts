import { samplePayload } from "../ceilings.ts";
import { rampSteps, type PhaseResult } from "../phases.ts";
import type { ScalingCurve, ScalingPoint } from "../scaling.ts";
import { chosen, openBench, openLoop, pointOf, type CurveContext, type Role } from "./harness.ts";

/**
 * The curves measured at a fixed, unsaturated rate (fan-out, active endpoints, payload size) and
 * the one measured by the ramp (processes per role). Each curve has a stack of its own; a point
 * gets endpoints of its own on it, so one point's routes and caches do not serve the next.
 */

const samplePayloadData = () => JSON.parse(samplePayload(1)) as Record<string, unknown>;

/**
 * A `data` object of about `bytes` bytes of JSON made of order-like items, as a large real event
 * carries: parsing and copying costs grow with structure, which one long string would hide.
 */
export function payloadOfSize(bytes: number): Record<string, unknown> {
  const items: unknown[] = [];
  for (let size = 12, i = 0; size < bytes; i++) {
    const item = samplePayload(i);
    items.push(JSON.parse(item));
    size += item.length + 1;
  }
  return { items };
}

/** Endpoints per event: routes of one event type to 1…100 endpoints, at a fixed rate of deliveries. */
export async function runFanout(ctx: CurveContext): Promise<ScalingCurve> {
  const fanouts = chosen(ctx, ctx.quick ? [1, 10] : [1, 10, 50, 100]);
  const deliveriesPerSecond = ctx.quick ? 500 : 1000;
  const durationMs = ctx.quick ? 3000 : 10_000;
  const bench = await openBench(ctx);
  try {
    const payload = samplePayloadData();
    const idleCores = await bench.warmUp(payload);
    const points: ScalingPoint[] = [];
    for (const n of fanouts) {
      const eventType = `bench.fanout${n}`;
      await bench.addEndpoints(Array<string>(n).fill(eventType), `fanout${n}`);
      const spec = openLoop(`fanout-${n}`, deliveriesPerSecond / n, durationMs, `each event routed to ${n} endpoints`);
      const p = await bench.measure(bench.target({ eventType, payload, fanout: n }), spec);
      points.push(pointOf(p, n, String(n), idleCores));
    }
    return {
      name: "fanout",
      title: "Fan-out: endpoints per event",
      x: { label: "endpoints per event", log: true },
      method:
        `POST /events (one event per request, ~${JSON.stringify(payload).length} B data), open loop for ${durationMs / 1000} s at ${deliveriesPerSecond} deliveries/s: ` +
        `${deliveriesPerSecond} / fan-out events/s, so every point delivers at the same rate and the per-delivery figures compare. ` +
        "Each point's event type is routed to endpoints of its own on the sink.",
      roles: bench.roles,
      env: {},
      idleCores,
      points,
      columns: [],
      notes: [],
    };
  } finally {
    await bench.stop();
  }
}

/** Active endpoints: events spread round-robin over 1…1,000 endpoints, one event type each. */
export async function runEndpoints(ctx: CurveContext): Promise<ScalingCurve> {
  const counts = chosen(ctx, ctx.quick ? [1, 10] : [1, 10, 100, 1000]);
  // 1,000 events/s saturated this 2-core machine at 1,000 endpoints (about 670/s accepted, the rest
  // dropped at the in-flight limit): half of it keeps every point below saturation.
  const eventsPerSecond = 500;
  const durationMs = ctx.quick ? 3000 : 10_000;
  const bench = await openBench(ctx);
  try {
    const payload = samplePayloadData();
    const idleCores = await bench.warmUp(payload);
    const points: ScalingPoint[] = [];
    for (const n of counts) {
      const types = Array.from({ length: n }, (_, i) => `bench.n${n}.e${i}`);
      await bench.addEndpoints(types, `n${n}`);
      const target = bench.target({ eventType: types[0]!, eventTypeFor: (i) => types[i % n]!, payload });
      // Every endpoint delivered to twice before measuring: caches and limiters hold all of them, so
      // the point is the steady state with n active endpoints, not the first touch of each.
      const warmMs = Math.max(2000, (2 * n * 1000) / eventsPerSecond);
      await bench.measure(target, openLoop(`endpoints-${n}-warm`, eventsPerSecond, warmMs, `warming ${n} endpoints (not a measurement)`));
      const p = await bench.measure(target, openLoop(`endpoints-${n}`, eventsPerSecond, durationMs, `events spread round-robin over ${n} endpoints`));
      points.push(pointOf(p, n, n.toLocaleString("en-US"), idleCores));
    }
    return {
      name: "endpoints",
      title: "Active endpoints",
      x: { label: "active endpoints", log: true },
      method:
        `POST /events, open loop for ${durationMs / 1000} s at ${eventsPerSecond} events/s, event i of type bench.n<N>.e<i mod N>, each type routed to one endpoint: ` +
        `every endpoint is active (with 1,000 of them each gets ${Math.round((eventsPerSecond * durationMs) / 1000 / 1000)} deliveries in the phase). ` +
        "Before it, a warm-up pass at the same rate delivers to every endpoint twice, so the per-endpoint state (endpoint cache, in-flight limiter, rate buckets) exists: the point is the steady state. " +
        "Event types grow with the endpoints (one route each), so the curve covers both.",
      roles: bench.roles,
      env: {},
      idleCores,
      points,
      columns: [],
      notes: [],
    };
  } finally {
    await bench.stop();
  }
}

/**
 * Payload size: 1 KB, 64 KB, 1 MB of `data`, all at one modest event rate: the cost of a delivery
 * depends on the rate too (batches fill, fixed costs spread), so only a common rate lets the
 * curve show what size alone adds. At 20 events/s of 1 MB the API process was near its limit
 * (about 40 core·ms per event, 503 `overloaded` as bodies queued), so the rate is 10/s.
 */
export async function runPayload(ctx: CurveContext): Promise<ScalingCurve> {
  const KB = 1024;
  const sizes = chosen(ctx, ctx.quick ? [KB, 64 * KB] : [KB, 64 * KB, 1024 * KB]);
  const eventsPerSecond = 10;
  const durationMs = ctx.quick ? 3000 : 20_000;
  // The defaults refuse a 1 MB event with 413 (MAX_PAYLOAD_BYTES, 256 KiB), and answer 503 once
  // six such bodies are in flight (MAX_BODY_BYTES_IN_FLIGHT, 64 MiB at 10 × each body).
  const env = { MAX_PAYLOAD_BYTES: String(2 * 1024 * KB), MAX_BODY_BYTES_IN_FLIGHT: String(256 * 1024 * KB) };
  const bench = await openBench(ctx, { env });
  try {
    const idleCores = await bench.warmUp(samplePayloadData());
    await bench.addEndpoints(["bench.payload"], "payload");
    const points: ScalingPoint[] = [];
    for (const size of sizes) {
      const payload = payloadOfSize(size);
      const label = size >= 1024 * KB ? `${size / 1024 / KB} MB` : `${size / KB} KB`;
      const spec = openLoop(`payload-${label.replace(" ", "")}`, eventsPerSecond, durationMs, `${label} of data per event`);
      const p = await bench.measure(bench.target({ eventType: "bench.payload", payload }), spec);
      points.push(pointOf(p, size, label, idleCores, { payloadBytes: JSON.stringify(payload).length }));
    }
    return {
      name: "payload",
      title: "Payload size",
      x: { label: "event data (bytes)", log: true },
      method:
        `POST /events, open loop at ${eventsPerSecond} events/s for ${durationMs / 1000} s at every size (${(eventsPerSecond * durationMs) / 1000} events); \`data\` is order-like JSON items of the given size. ` +
        "One rate for all sizes, low enough for 1 MB events, so the curve shows what size alone adds; at this rate a small event's cost is mostly fixed per-request work and the idle draw (see its column).",
      roles: bench.roles,
      env,
      idleCores,
      points,
      columns: [{ key: "payloadBytes", label: "data bytes" }],
      notes: [
        "MAX_PAYLOAD_BYTES=2097152 for this curve's stack: the default (256 KiB) refuses a 1 MB event with 413.",
        "MAX_BODY_BYTES_IN_FLIGHT=268435456 (256 MiB) too: the default (64 MiB, counted as 10 × each body) holds about six 1 MB bodies at once.",
      ],
    };
  } finally {
    await bench.stop();
  }
}

/**
 * One API and one worker against two of each (and the one dispatcher on RabbitMQ): the ramp of the
 * main bench, each stack from its first step up to the first step it does not keep up with.
 */
export async function runProcesses(ctx: CurveContext): Promise<ScalingCurve> {
  const counts = chosen(ctx, [1, 2]);
  const rates = ctx.quick ? [1000, 2000] : [1000, 3000, 4000, 5000, 6000, 7000, 8000];
  const points: ScalingPoint[] = [];
  const notes: string[] = [];
  let roles: Role[] = [];
  for (const n of counts) {
    roles = [...Array<Role>(n).fill("api"), ...Array<Role>(n).fill("worker"), ...(ctx.transport === "rabbitmq" ? (["dispatcher"] as Role[]) : [])];
    const bench = await openBench(ctx, { roles });
    try {
      const payload = samplePayloadData();
      const idleCores = await bench.warmUp(payload);
      await bench.addEndpoints(["bench.ramp"], "ramp");
      const target = bench.target({ eventType: "bench.ramp", payload });
      const steps: PhaseResult[] = [];
      for (const rate of rates) {
        // The main bench's ramp step, at this rate (its first step is 1,000 events/s).
        const step = await bench.measure(target, rampSteps(ctx.quick, rate / 1000)[0]!);
        steps.push(step);
        if (!step.keptUp) break;
      }
      const best = steps.filter((s) => s.keptUp).at(-1);
      const failing = steps.find((s) => !s.keptUp);
      if (!failing) notes.push(`${n} + ${n}: kept up with every step up to ${rates.at(-1)} events/s; the ceiling is higher.`);
      points.push(
        pointOf(steps[0]!, n, `${n} + ${n}`, idleCores, {
          sustainedPerSecond: best?.publish.eventsPerSecond ?? 0,
          ...(best ? { sustainedP99Ms: best.delivery.latencyMs.p99 } : {}),
          ...(failing ? { firstFailingPerSecond: failing.spec.eventsPerSecond! } : {}),
        }),
      );
    } finally {
      await bench.stop();
    }
  }
  return {
    name: "processes",
    title: "Processes per role",
    x: { label: "API + worker processes", log: false },
    method:
      `The main bench's ramp (POST /events/batch × 50, open loop, ${rates.join(", ")} events/s, ${ctx.quick ? 3 : 10} s per step) on a fresh stack per point, ` +
      "stopping after the first step that does not keep up; requests alternate between the API processes as a load balancer would spread them. " +
      "CPU per delivery and latency are those of the first step (1,000 events/s); the sustained rate is the highest step kept up.",
    roles,
    env: {},
    points,
    columns: [
      { key: "sustainedPerSecond", label: "Highest step kept up (events/s)" },
      { key: "sustainedP99Ms", label: "p99 there (ms)" },
      { key: "firstFailingPerSecond", label: "First step not kept up (events/s)" },
    ],
    notes,
  };
}
