import type { HistogramSummary } from "../sink/histogram.ts";
import type { Sink } from "../sink/server.ts";
import { runClosedLoop, runOpenLoop, type LoadResult } from "./generator.ts";

/**
 * One benchmark phase: publish for a while (open loop at a fixed event rate, or closed loop to find
 * the maximum), then wait until the sink holds every accepted event's delivery. The phase's verdict
 * is the product's core promise: every event the API accepted (202) is delivered, once or more.
 */
export interface PhaseSpec {
  name: string;
  description: string;
  mode: "open" | "closed";
  /** 1 = POST /events; more = POST /events/batch with that many events (≤ MAX_BATCH_EVENTS). */
  batchSize: number;
  /** Open loop: target events per second. */
  eventsPerSecond?: number;
  /** Open loop: in-flight limit; closed loop: concurrent publishers. */
  concurrency: number;
  durationMs: number;
}

export interface PhaseTarget {
  apiUrl: string;
  apiKey?: string;
  sink: Sink;
  eventType: string;
  /** Endpoints routed to eventType: deliveries expected per event. */
  fanout: number;
  payload: Record<string, unknown>;
}

export interface PhaseResult {
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
    peakSecond: number;
    /** Event creation → first receipt at the sink. */
    latencyMs: HistogramSummary;
  };
}

function requestFor(t: PhaseTarget, batchSize: number): { url: string; body: string } {
  // One body reused for every request: the server still creates distinct events each time, and the
  // generator spends its CPU on sending rather than on serialising.
  const event = { type: t.eventType, data: t.payload };
  return batchSize === 1
    ? { url: `${t.apiUrl}/events`, body: JSON.stringify(event) }
    : { url: `${t.apiUrl}/events/batch`, body: JSON.stringify({ events: Array.from({ length: batchSize }, () => event) }) };
}

export async function runPhase(t: PhaseTarget, spec: PhaseSpec, drainTimeoutMs: number, log: (m: string) => void): Promise<PhaseResult> {
  t.sink.reset();
  const { url, body } = requestFor(t, spec.batchSize);
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (t.apiKey) headers.authorization = `Bearer ${t.apiKey}`;
  let eventsAccepted = 0;
  const send = async () => {
    const res = await fetch(url, { method: "POST", headers, body });
    const text = await res.text();
    if (res.status !== 202) throw new Error(`HTTP ${res.status} ${text.slice(0, 80)}`);
    // A batch answers one entry per event; count what the API says it accepted, not what we sent.
    eventsAccepted += spec.batchSize === 1 ? 1 : (JSON.parse(text) as { data: unknown[] }).data.length;
  };
  const onProgress = (p: { elapsedMs: number; ok: number; errors: number; inFlight: number }) =>
    log(`  ${spec.name} ${(p.elapsedMs / 1000).toFixed(0)}s: ${p.ok} requests ok, ${p.errors} errors, ${p.inFlight} in flight, sink ${t.sink.stats().unique}`);

  log(`phase ${spec.name}: ${spec.description}`);
  const load =
    spec.mode === "open"
      ? await runOpenLoop({ rate: (spec.eventsPerSecond ?? 0) / spec.batchSize, durationMs: spec.durationMs, concurrencyLimit: spec.concurrency, send, onProgress })
      : await runClosedLoop({ concurrency: spec.concurrency, durationMs: spec.durationMs, send, onProgress });
  const publishedAt = Date.now();

  const expected = eventsAccepted * t.fanout;
  const stats = await t.sink.waitFor({ unique: expected, timeoutMs: drainTimeoutMs });
  const lastAt = stats.lastAt ? Date.parse(stats.lastAt) : publishedAt;
  const result: PhaseResult = {
    spec,
    publish: { ...load, eventsAccepted, eventsPerSecond: Math.round((eventsAccepted * 1000) / load.durationMs) },
    delivery: {
      expected,
      unique: stats.unique,
      duplicates: stats.duplicates,
      invalid: stats.invalid,
      complete: stats.unique >= expected,
      drainMs: Math.max(0, lastAt - publishedAt),
      deliveriesPerSecond: stats.rate.overall,
      peakSecond: stats.rate.peakSecond,
      latencyMs: stats.latencyMs,
    },
  };
  const d = result.delivery;
  log(
    `phase ${spec.name}: ${eventsAccepted} events accepted (${result.publish.eventsPerSecond}/s, ${load.errors} errors, ${load.dropped} dropped), ` +
      `${d.unique}/${expected} delivered (${d.deliveriesPerSecond}/s), p50 ${d.latencyMs.p50} ms, p99 ${d.latencyMs.p99} ms`,
  );
  return result;
}

/** The phases of a run. Rates suit a small machine; pass --scale to multiply them. */
export function defaultPhases(quick: boolean, scale = 1): PhaseSpec[] {
  const s = quick ? 3_000 : 15_000;
  return [
    {
      name: "single",
      description: "POST /events, one event per request, fixed rate",
      mode: "open",
      batchSize: 1,
      eventsPerSecond: Math.round((quick ? 300 : 1000) * scale),
      concurrency: 256,
      durationMs: s,
    },
    {
      name: "batch-steady",
      description: "POST /events/batch, 100 events per request, fixed rate",
      mode: "open",
      batchSize: 100,
      eventsPerSecond: Math.round((quick ? 2000 : 5000) * scale),
      concurrency: 64,
      durationMs: s,
    },
    {
      name: "batch-max",
      description: "POST /events/batch, 500 events per request, 8 publishers as fast as accepted",
      mode: "closed",
      batchSize: 500,
      concurrency: 8,
      durationMs: s,
    },
  ];
}
