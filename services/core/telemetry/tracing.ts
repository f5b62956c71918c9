import { trace, type Tracer } from "@opentelemetry/api";

/**
 * The tracer every span starts from, from the OpenTelemetry API alone: a no-op until startTelemetry (setup.ts)
 * registers the SDK, and cheap to import from hot-path modules, which need not load the SDK.
 */
export const tracer = (): Tracer => trace.getTracer("evently");
