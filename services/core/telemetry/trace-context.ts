import { context, isSpanContextValid, ROOT_CONTEXT, trace, TraceFlags, type Context, type Link, type Span, type SpanContext } from "@opentelemetry/api";

/**
 * W3C trace context (`traceparent`) as it travels between Evently's processes: on the API request,
 * in the events table (migration 0011), in job messages, in AMQP headers and on the outgoing
 * webhook. Written here rather than through the API's global propagator so the hot path can skip
 * all of it with one boolean when tracing is off: nothing is parsed, formatted or stored then.
 */

let exporting = false;

/** Set by startTelemetry (setup.ts): true only while spans are recorded and exported. */
export function setTracingEnabled(on: boolean): void {
  exporting = on;
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

/** The `traceparent` of the span active now, when it records. */
export function activeTraceparent(): string | null {
  return exporting ? traceparentOf(trace.getActiveSpan()) : null;
}

/** A context whose parent is the span a `traceparent` names; `base` (the active context) when there is none. */
export function contextFrom(traceparent: string | null | undefined, base: Context = context.active()): Context {
  const parent = parseTraceparent(traceparent);
  return parent ? trace.setSpanContext(ROOT_CONTEXT, parent) : base;
}

/**
 * Where one span stands for many (a group commit, a message of many jobs, a batch of attempt
 * writes): its parent is the one trace they all share, or the active context when they are of
 * several traces; links keep every one of them, so no trace loses the span.
 */
export function parentAndLinks(traceparents: Iterable<string | null | undefined>): { parent: Context; links: Link[] } {
  const seen = new Set<string>();
  const links: Link[] = [];
  for (const traceparent of traceparents) {
    if (!traceparent || seen.has(traceparent)) continue;
    seen.add(traceparent);
    const spanContext = parseTraceparent(traceparent);
    if (spanContext) links.push({ context: spanContext });
  }
  const traces = new Set(links.map((link) => link.context.traceId));
  const parent = traces.size === 1 ? trace.setSpanContext(ROOT_CONTEXT, links[0]!.context) : context.active();
  return { parent, links };
}
