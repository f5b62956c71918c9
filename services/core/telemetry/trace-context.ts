import { context, isSpanContextValid, ROOT_CONTEXT, trace, TraceFlags, type Context, type Link, type Span, type SpanContext, type SpanOptions } from "@opentelemetry/api";
import { tracer } from "./tracing.ts";

/**
 * W3C trace context (`traceparent`) as it travels between Evently's processes: on the API request,
 * in the events table (migration 0011), in job messages, in AMQP headers and on the outgoing
 * webhook. Written here rather than through the API's global propagator so the hot path can skip
 * all of it with one boolean when tracing is off: nothing is parsed, formatted or stored then.
 */

let exporting = false;
let sampleRatio = 1;

/**
 * Set by startTelemetry (setup.ts): whether spans are recorded and exported, and which share of new
 * traces is kept (TRACE_SAMPLE_RATIO).
 *
 * The ratio is applied here, once, where a trace starts (an API request without a caller's
 * context, a sweep), before any span exists; every later hop makes spans only for a trace that was
 * kept. So at 1% the other 99% of events cost one random number at the API and nothing after it:
 * no span, no context switch, no traceparent stored or sent. (Leaving the decision to the SDK's
 * ratio sampler would create and discard a span, and enter a context, at every hop of every event.)
 */
export function setTracingEnabled(on: boolean, ratio = 1): void {
  exporting = on;
  sampleRatio = ratio;
}

/** Whether spans are recorded at all: callers skip every bit of trace-context work when not. */
export function tracingEnabled(): boolean {
  return exporting;
}

// version 00 only: a later version's extra fields are ignored by the spec's rules, but its first
// 55 characters keep this shape, which is all we read.
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-|$)/;

/** The span context a `traceparent` names, or undefined when it is absent or malformed (then it is ignored, as the spec says). */
export function parseTraceparent(header: string | null | undefined): SpanContext | undefined {
  if (!header) return undefined;
  const match = TRACEPARENT.exec(header.trim().toLowerCase());
  if (!match || match[1] === "ff" || (match[1] === "00" && header.trim().length !== 55)) return undefined;
  const spanContext: SpanContext = { traceId: match[2]!, spanId: match[3]!, traceFlags: parseInt(match[4]!, 16) & TraceFlags.SAMPLED, isRemote: true };
  return isSpanContextValid(spanContext) ? spanContext : undefined;
}

export function formatTraceparent(spanContext: SpanContext): string {
  return `00-${spanContext.traceId}-${spanContext.spanId}-${(spanContext.traceFlags & TraceFlags.SAMPLED) === 0 ? "00" : "01"}`;
}

/** The `traceparent` of a span that is recording; null otherwise (tracing off, not sampled): nothing to carry on. */
export function traceparentOf(span: Span | undefined): string | null {
  return span !== undefined && span.isRecording() ? formatTraceparent(span.spanContext()) : null;
}

/** The active span context when it belongs to a sampled trace: a recording span, or a sampled remote parent (a job's event). */
function sampledActive(): SpanContext | undefined {
  if (!exporting) return undefined;
  const spanContext = trace.getSpanContext(context.active());
  return spanContext && isSpanContextValid(spanContext) && spanContext.traceFlags & TraceFlags.SAMPLED ? spanContext : undefined;
}

/** The `traceparent` of the active context when it belongs to a sampled trace; null otherwise: nothing to carry on. */
export function activeTraceparent(): string | null {
  const spanContext = sampledActive();
  return spanContext ? formatTraceparent(spanContext) : null;
}

/** Whether a new trace starts here: tracing is on and this one falls in the sample. */
function startsTrace(): boolean {
  return exporting && (sampleRatio >= 1 || Math.random() < sampleRatio);
}

/** The place of a span that starts a trace of its own (a sweep), when this one falls in the sample. */
export function newTracePlace(): SpanPlace | null {
  return startsTrace() ? { parent: ROOT_CONTEXT, links: [] } : null;
}

/**
 * The parent of an API request's span, or null when the request is not traced: a caller's sampled
 * `traceparent` is joined, an unsampled one is respected (nothing traced), and without one a new
 * trace starts when it falls in the sample.
 */
export function requestParent(header: string | null): Context | null {
  if (!exporting) return null;
  const caller = parseTraceparent(header);
  if (caller) return caller.traceFlags & TraceFlags.SAMPLED ? trace.setSpanContext(ROOT_CONTEXT, caller) : null;
  return startsTrace() ? ROOT_CONTEXT : null;
}

/** The active context as a span's place when it belongs to a sampled trace (an attempt of a traced event); null otherwise: no span. */
export function activePlace(): SpanPlace | null {
  return sampledActive() ? { parent: context.active(), links: [] } : null;
}

/** A context whose parent is the span a `traceparent` names; `base` (the active context) when there is none. */
export function contextFrom(traceparent: string | null | undefined, base: Context = context.active()): Context {
  const parent = parseTraceparent(traceparent);
  return parent ? trace.setSpanContext(ROOT_CONTEXT, parent) : base;
}

/** Where a span stands: its parent and the traces it links. */
export interface SpanPlace {
  parent: Context;
  links: Link[];
}

/**
 * Where one span stands for many (a group commit, a message of many jobs, a batch of attempt
 * writes): its parent is the one trace they all share, or the active context when they are of
 * several traces; links keep every one of them, so no trace loses the span. Null when none of them
 * carries a trace (tracing off, or none sampled): then no span is made.
 */
export function parentAndLinks(traceparents: Iterable<string | null | undefined>): SpanPlace | null {
  if (!exporting) return null;
  const seen = new Set<string>();
  const links: Link[] = [];
  for (const traceparent of traceparents) {
    if (!traceparent || seen.has(traceparent)) continue;
    seen.add(traceparent);
    const spanContext = parseTraceparent(traceparent);
    if (spanContext) links.push({ context: spanContext });
  }
  if (links.length === 0) return null;
  const traces = new Set(links.map((link) => link.context.traceId));
  const parent = traces.size === 1 ? trace.setSpanContext(ROOT_CONTEXT, links[0]!.context) : context.active();
  return { parent, links };
}

/**
 * Runs `work` inside an active span named `name` placed at `place`, or bare when there is no place
 * (nothing to trace). The span ends when the work settles.
 */
export function spanAt<T>(name: string, place: SpanPlace | null, options: SpanOptions, work: (span?: Span) => Promise<T>): Promise<T> {
  if (!place) return work();
  return tracer().startActiveSpan(name, { ...options, links: place.links }, place.parent, async (span) => {
    try {
      return await work(span);
    } finally {
      span.end();
    }
  });
}
