import type { HistogramSummary } from "../sink/histogram.ts";
import type { LatencyBudget } from "./budget.ts";
import type { WaitProfile, WaitSampler } from "./wait-events.ts";
import type { SinkProcess } from "../sink/process.ts";
import { coreSpeedApart } from "./core-speed.ts";
import { runClosedLoop, runOpenLoop, type LoadResult } from "./generator.ts";
import type { BenchTransport, DbStats } from "./stack.ts";
import type { PeerName } from "../peers/peer.ts";
import { cpuBetween, diffMetrics, sampleCpu, scrapeRoles, type CpuSample, type KernelEvents, type StageStat } from "./observe.ts";

/**
 * One benchmark phase: publish for a while (open loop at a fixed event rate, or closed loop to find
 * the maximum), then wait until the sink holds every accepted event's delivery. The phase's verdict
 * is the product's core promise: every event the API accepted (202) is delivered, once or more.
 */
export interface PhaseSpec {
  name: string;
  description: string;
  /** What the phase measures: ingest throughput, end-to-end latency at a rate, a ramp step, warm-up. */
  group: "warmup" | "ingest" | "latency" | "ramp";
  mode: "open" | "closed";
  /** 1 = POST /events; more = POST /events/batch with that many events (≤ MAX_BATCH_EVENTS). */
  batchSize: number;
  /** Open loop: target events per second. */
  eventsPerSecond?: number;
  /** Open loop: in-flight limit; closed loop: concurrent publishers. */
  concurrency: number;
  durationMs: number;
  /**
   * Stop the worker and dispatcher processes (whichever run; SIGSTOP) while publishing and continue
   * them for the drain: ingest measured on its own, as when a burst arrives while delivery is away or behind.
   */
  pauseDelivery?: boolean;
  /** Closed loop: stop after this many requests, if that comes before durationMs (a backlog of a given size). */
  requests?: number;
}

/** The roles a paused-delivery phase stops; a stack running `all` in one process is never paused. */
const DELIVERY_ROLES = ["worker", "dispatcher"];

export interface PhaseTarget {
  /** The queue transport of the stack under test, or the peer under test (loadtest/peers): every result names it. */
  transport: BenchTransport | PeerName;
  apiUrl: string;
  apiKey?: string;
  /** The verifying sink, in a process of its own: its pid is in `pids` as `sink`. */
  sink: Pick<SinkProcess, "stats" | "reset" | "waitFor">;
  eventType: string;
  /** Endpoints routed to eventType: deliveries expected per event. */
  fanout: number;
  payload: Record<string, unknown>;
  /** Role health/metrics URLs and pids: each phase scrapes /metrics and reads CPU time from /proc. */
  roleUrls: Record<string, string>;
  pids: Record<string, number>;
  /** The stack's database: Postgres backends serving others count as "other" CPU. */
  database?: string;
  /** Table sizes and dead rows, read after each phase (Postgres here has autovacuum off or on: see settings). */
  dbStats?: () => Promise<DbStats>;
  /** The pool each of the stack's Postgres backends serves, by pid (stack.ts `backendPools`): splits Postgres's CPU. */
  backendPools?: () => Promise<Record<number, string>>;
  /** With `--wait-events`: starts sampling what the stack's backends are doing (wait-events.ts). */
  sampleWaits?: () => WaitSampler;
  /** Events spread over several types (one endpoint each, say): the type of request i's events. Default: eventType. */
  eventTypeFor?: (i: number) => string;
  /** More than one API process: request i goes to apiUrls[i % n], as a load balancer would spread them. Default: apiUrl. */
  apiUrls?: string[];
}

export interface CpuUse {
  /** Cores used per process group (1.0 = one core for the whole window). */
  cores: Record<string, number>;
  /** CPU seconds (user + system) per process group over the window. */
  cpuSeconds: Record<string, number>;
  machineBusyPct: number;
  seconds: number;
  /** The stack's Postgres backends' CPU seconds by the pool they serve (`evently-ingest`, `evently-take`…). */
  postgresPools?: Record<string, number>;
  /** Context switches and page faults per process group over the window (observe.ts). */
  kernel?: Record<string, KernelEvents>;
  /** The role processes' CPU seconds by thread (observe.ts): the JavaScript thread, the JIT's, the HTTP client's… */
  threads?: Record<string, Record<string, number>>;
}

export interface PhaseResult {
  /** The queue transport this phase ran on, or the peer it measured. */
  transport: PhaseTarget["transport"];
  spec: PhaseSpec;
  publish: LoadResult & { eventsAccepted: number; eventsPerSecond: number };
  delivery: {
    expected: number;
    unique: number;
    duplicates: number;
    invalid: number;
    /** Every accepted event delivered before the drain timeout. */
    complete: boolean;
    /** From the end of publishing to the last first-delivery. */
    drainMs: number;
    /** Unique deliveries over the span from first to last, per second. */
    deliveriesPerSecond: number;
    /** Unique deliveries that arrived while publishing, per second of publishing. */
    duringPublishPerSecond: number;
    /** Deliveries still outstanding when publishing ended (the backlog). */
    backlogAtPublishEnd: number;
    /** Backlog / drain time: the delivery rate while working off the backlog with no new load. */
    drainPerSecond: number | null;
    peakSecond: number;
    /** Event creation → first receipt at the sink. */
    latencyMs: HistogramSummary;
  };
  /** Ramp steps: deliveries kept up with publishing (see KEEP_UP). */
  keptUp?: boolean;
  /** Per-stage timings and counters from every role's /metrics over the phase (publish + drain). */
  stages: StageStat[];
  /**
   * CPU while publishing, while draining the backlog (when the drain took ≥ 1 s), and over both:
   * from the first request to the last delivery, the window CPU per delivered event is taken from.
   */
  cpu: { publish: CpuUse; drain?: CpuUse; total: CpuUse };
  /** The stack's tables after the phase: live and dead rows (dead rows stay until vacuumed). */
  tables?: DbStats["tables"];
  /**
   * Over the phase: the scratch database's committed transactions and each index's scans. Postgres
   * publishes a backend's counts up to a second or so late, so a phase's figures are approximate.
   */
  db?: { transactions: number; indexScans: Record<string, number> };
  /** With `--budget`: where the sampled events' time went, stage by stage. */
  budget?: LatencyBudget;
  /**
   * Standard Webhooks signatures one JS thread made per second just before the phase and just after
   * its drain, in a process of its own (core-speed.ts, 200 ms each; null if that failed): how fast a
   * core was around the phase.
   */
  coreSpeed?: { before: number | null; after: number | null };
  /** With `--wait-events`: what the stack's Postgres backends were doing, while publishing and while draining (≥ 1 s). */
  waits?: { publish: WaitProfile; drain?: WaitProfile };
}

/** How long the core-speed probe runs before and after each phase, outside the phase's CPU windows. */
const CORE_SPEED_PROBE_MS = 200;

/**
 * A ramp step kept up when deliveries during the step reached 90% of the accepted rate, the backlog
 * left at its end drained within 5 s, and the generator achieved ≥ 95% of the target without drops.
 */
export const KEEP_UP = { deliveredShare: 0.9, drainMs: 5000, achievedShare: 0.95 };

function requestFor(t: PhaseTarget, batchSize: number): (i: number) => { url: string; body: string } {
  // One body per event type, made once and reused for every request: the server still creates
  // distinct events each time, and the generator spends its CPU on sending rather than on serialising.
  const bodies = new Map<string, string>();
  const bodyOf = (type: string) => {
    let body = bodies.get(type);
    if (body === undefined) {
      const event = { type, data: t.payload };
      body = JSON.stringify(batchSize === 1 ? event : { events: Array.from({ length: batchSize }, () => event) });
      bodies.set(type, body);
    }
    return body;
  };
  const urls = (t.apiUrls ?? [t.apiUrl]).map((api) => (batchSize === 1 ? `${api}/events` : `${api}/events/batch`));
  return (i) => ({ url: urls[i % urls.length]!, body: bodyOf(t.eventTypeFor?.(i) ?? t.eventType) });
}

export async function runPhase(t: PhaseTarget, spec: PhaseSpec, drainTimeoutMs: number, log: (m: string) => void): Promise<PhaseResult> {
  await t.sink.reset();
  const request = requestFor(t, spec.batchSize);
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (t.apiKey) headers.authorization = `Bearer ${t.apiKey}`;
  let eventsAccepted = 0;
  const send = async (i: number) => {
    const { url, body } = request(i);
    const res = await fetch(url, { method: "POST", headers, body });
    const text = await res.text();
    if (res.status !== 202) throw new Error(`HTTP ${res.status} ${text.slice(0, 80)}`);
    // A batch answers one entry per event; count what the API says it accepted, not what we sent.
    eventsAccepted += spec.batchSize === 1 ? 1 : (JSON.parse(text) as { data: unknown[] }).data.length;
  };
  const onProgress = (p: { elapsedMs: number; ok: number; errors: number; inFlight: number }) =>
    void t.sink
      .stats()
      .then((s) => log(`  ${spec.name} ${(p.elapsedMs / 1000).toFixed(0)}s: ${p.ok} requests ok, ${p.errors} errors, ${p.inFlight} in flight, sink ${s.unique}`))
      .catch(() => {});

  log(`phase ${spec.name} [${t.transport}]: ${spec.description}`);
  const dbBefore = t.dbStats ? await t.dbStats().catch(() => undefined) : undefined;
  const metricsBefore = await scrapeRoles(t.roleUrls);
  const pools = async () => (t.backendPools ? await t.backendPools().catch(() => undefined) : undefined);
  const speedBefore = coreSpeedApart(CORE_SPEED_PROBE_MS)?.signaturesPerSec ?? null;
  const cpu0 = sampleCpu(t.pids, t.database, await pools());
  // One sampler for the phase, cut where publishing ends.
  const waits = t.sampleWaits?.();
  // A role run twice has a second process named `<role>-2` (stack.ts): it is paused too.
  const paused = spec.pauseDelivery ? Object.entries(t.pids).filter(([name]) => DELIVERY_ROLES.includes(name.replace(/-\d+$/, ""))).map(([, pid]) => pid) : [];
  for (const pid of paused) process.kill(pid, "SIGSTOP");
  let load: LoadResult;
  let atPublishEnd: number;
  try {
    load =
      spec.mode === "open"
        ? await runOpenLoop({ rate: (spec.eventsPerSecond ?? 0) / spec.batchSize, durationMs: spec.durationMs, concurrencyLimit: spec.concurrency, send, onProgress })
        : await runClosedLoop({ concurrency: spec.concurrency, durationMs: spec.durationMs, count: spec.requests, send, onProgress });
    atPublishEnd = (await t.sink.stats()).unique;
  } catch (err) {
    await waits?.stop(); // a load that throws leaves no sampler running
    throw err;
  } finally {
    for (const pid of paused) process.kill(pid, "SIGCONT");
  }
  const waitsWhilePublishing = waits?.cut();
  const publishedAt = Date.now();
  const cpu1 = sampleCpu(t.pids, t.database, await pools());

  const expected = eventsAccepted * t.fanout;
  const stats = await t.sink.waitFor({ unique: expected, timeoutMs: drainTimeoutMs });
  const cpu2 = sampleCpu(t.pids, t.database, await pools());
  const waitsWhileDraining = await waits?.stop();
  const coreSpeed = { before: speedBefore, after: coreSpeedApart(CORE_SPEED_PROBE_MS)?.signaturesPerSec ?? null };
  // Let the worker record the last attempts and the dispatcher mark them before reading /metrics.
  await Bun.sleep(1000);
  const metricsAfter = await scrapeRoles(t.roleUrls);
  const lastAt = stats.lastAt ? Date.parse(stats.lastAt) : publishedAt;
  const drainMs = Math.max(0, lastAt - publishedAt);
  const backlog = Math.max(0, Math.min(expected, stats.unique) - atPublishEnd);
  const use = (a: CpuSample, b: CpuSample): CpuUse => ({ ...cpuBetween(a, b), seconds: Math.round((b.atMs - a.atMs) / 100) / 10 });
  const result: PhaseResult = {
    transport: t.transport,
    spec,
    publish: { ...load, eventsAccepted, eventsPerSecond: Math.round((eventsAccepted * 1000) / load.durationMs) },
    delivery: {
      expected,
      unique: stats.unique,
      duplicates: stats.duplicates,
      invalid: stats.invalid,
      complete: stats.unique >= expected,
      drainMs,
      deliveriesPerSecond: stats.rate.overall,
      duringPublishPerSecond: Math.round((atPublishEnd * 1000) / load.durationMs),
      backlogAtPublishEnd: Math.max(0, expected - atPublishEnd),
      drainPerSecond: drainMs >= 1000 ? Math.round((backlog * 1000) / drainMs) : null,
      peakSecond: stats.rate.peakSecond,
      latencyMs: stats.latencyMs,
    },
    stages: diffMetrics(metricsBefore, metricsAfter),
    cpu: { publish: use(cpu0, cpu1), ...(drainMs >= 1000 ? { drain: use(cpu1, cpu2) } : {}), total: use(cpu0, cpu2) },
    coreSpeed,
    ...(waitsWhilePublishing
      ? { waits: { publish: waitsWhilePublishing, ...(drainMs >= 1000 && waitsWhileDraining ? { drain: waitsWhileDraining } : {}) } }
      : {}),
  };
  const dbAfter = t.dbStats ? await t.dbStats().catch(() => undefined) : undefined;
  if (dbAfter) result.tables = dbAfter.tables;
  if (dbBefore && dbAfter)
    result.db = {
      transactions: dbAfter.transactions.committed - dbBefore.transactions.committed,
      indexScans: Object.fromEntries(Object.entries(dbAfter.indexScans).map(([k, v]) => [k, v - (dbBefore.indexScans[k] ?? 0)])),
    };
  const d = result.delivery;
  if (spec.group === "ramp") {
    const target = spec.eventsPerSecond ?? 0;
    result.keptUp =
      d.complete &&
      load.dropped === 0 &&
      load.errors === 0 &&
      result.publish.eventsPerSecond >= KEEP_UP.achievedShare * target &&
      d.duringPublishPerSecond >= KEEP_UP.deliveredShare * result.publish.eventsPerSecond &&
      d.drainMs <= KEEP_UP.drainMs;
  }
  const cores = Object.entries(result.cpu.publish.cores)
    .filter(([, v]) => v >= 0.05)
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
  log(
    `phase ${spec.name} [${t.transport}]: ${eventsAccepted} events accepted (${result.publish.eventsPerSecond}/s, ${load.errors} errors, ${load.dropped} dropped), ` +
      `${d.unique}/${expected} delivered (${d.duringPublishPerSecond}/s while publishing, drain ${(d.drainMs / 1000).toFixed(1)} s` +
      `${d.drainPerSecond ? ` at ${d.drainPerSecond}/s` : ""}), p50 ${d.latencyMs.p50} ms, p99 ${d.latencyMs.p99} ms` +
      `${result.keptUp === undefined ? "" : result.keptUp ? ", kept up" : ", did NOT keep up"}; cores: ${cores}`,
  );
  return result;
}

/**
 * The phases of a run. Rates suit a small machine; pass --scale to multiply them.
 *
 * - warmup: a few seconds at a low rate so JIT, pools and keep-alive sockets are warm.
 * - latency-N: POST /events at a fixed N events/s (open loop): end-to-end latency at that rate.
 * - ingest-single / ingest-batch: closed loops at saturation: how fast the API accepts events while
 *   delivery runs. The backlog they leave is then drained with no new load: that drain rate is
 *   reported separately.
 * - burst-single / burst-batch: the same with the delivery roles stopped while publishing
 *   (ingest on its own, as during a burst); the whole burst is then delivered and checked.
 * - the ramp (rampSteps): open loop, batches of 50, rising rates; see runPhase's keptUp.
 */
export function defaultPhases(quick: boolean, scale = 1): PhaseSpec[] {
  const r = (v: number) => Math.round(v * scale);
  return [
    {
      name: "warmup",
      description: "POST /events, fixed 300 events/s, warm-up (not a measurement)",
      group: "warmup",
      mode: "open",
      batchSize: 1,
      eventsPerSecond: 300,
      concurrency: 64,
      durationMs: quick ? 2000 : 5000,
    },
    ...(quick ? [latencyPhase(r(500), 4000)] : [latencyPhase(r(1000), 20_000), latencyPhase(r(2000), 20_000)]),
    {
      name: "ingest-single",
      description: "POST /events, one event per request, 64 publishers as fast as accepted",
      group: "ingest",
      mode: "closed",
      batchSize: 1,
      concurrency: 64,
      durationMs: quick ? 3000 : 10_000,
    },
    {
      name: "ingest-batch",
      description: "POST /events/batch, 500 events per request, 8 publishers as fast as accepted",
      group: "ingest",
      mode: "closed",
      batchSize: 500,
      concurrency: 8,
      durationMs: quick ? 2000 : 8000,
    },
    {
      name: "burst-single",
      description: "POST /events, one event per request, 64 publishers as fast as accepted, delivery roles stopped",
      group: "ingest",
      mode: "closed",
      batchSize: 1,
      concurrency: 64,
      durationMs: quick ? 2000 : 8000,
      pauseDelivery: true,
    },
    {
      name: "burst-batch",
      description: "POST /events/batch, 500 events per request, 8 publishers as fast as accepted, delivery roles stopped",
      group: "ingest",
      mode: "closed",
      batchSize: 500,
      concurrency: 8,
      durationMs: quick ? 2000 : 6000,
      pauseDelivery: true,
    },
  ];
}

/** POST /events at a fixed rate, one event per request (open loop): end-to-end latency at that rate. */
export function latencyPhase(rate: number, durationMs: number): PhaseSpec {
  return {
    name: `latency-${rate}`,
    description: `POST /events, one event per request, fixed ${rate} events/s`,
    group: "latency",
    mode: "open",
    batchSize: 1,
    eventsPerSecond: rate,
    concurrency: 256,
    durationMs,
  };
}

/**
 * Ramp steps in events/s; the ramp stops after the first step that does not keep up. It reaches
 * past the sustained target (5,000/s) far enough that the systems compared do not all keep up with
 * its top step: ending at 6,000/s, it could not tell Evently from either peer in a fast hour.
 */
export function rampSteps(quick: boolean, scale = 1): PhaseSpec[] {
  const rates = quick ? [1000] : [1000, 1500, 2000, 3000, 4000, 5000, 6000, 8000, 10_000];
  return rates.map((rate) => ({
    name: `ramp-${Math.round(rate * scale)}`,
    description: `POST /events/batch, 50 events per request, fixed ${Math.round(rate * scale)} events/s`,
    group: "ramp" as const,
    mode: "open" as const,
    batchSize: 50,
    eventsPerSecond: Math.round(rate * scale),
    concurrency: 64,
    durationMs: quick ? 3000 : 10_000,
  }));
}
