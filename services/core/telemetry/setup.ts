import { diag, metrics, trace } from "@opentelemetry/api";
import { PrometheusExporter, PrometheusSerializer } from "@opentelemetry/exporter-prometheus";
import { NodeSDK } from "@opentelemetry/sdk-node";
import { OTLPTraceExporter as OTLPJsonTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { OTLPTraceExporter as OTLPProtobufTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { AlwaysOnSampler, BatchSpanProcessor, ParentBasedSampler, type SpanExporter } from "@opentelemetry/sdk-trace";
import type { Config } from "../config/index.ts";
import { silentLogger, type Logger } from "../log.ts";
import { routeTelemetryDiagnostics } from "./diagnostics.ts";
import { resetInstruments } from "./instruments.ts";
import { setTracingEnabled } from "./trace-context.ts";

export interface Telemetry {
  /** Prometheus text exposition of every metric this process recorded. */
  renderMetrics(): Promise<string>;
  shutdown(): Promise<void>;
}

let active: Telemetry | undefined;

/** The OTLP/HTTP span exporter in the configured encoding; the URL is the endpoint's traces path. */
function spanExporter(config: Config["telemetry"], endpoint: string): SpanExporter {
  const url = new URL("/v1/traces", endpoint).toString();
  return config.OTEL_EXPORTER_OTLP_PROTOCOL === "http/json" ? new OTLPJsonTraceExporter({ url }) : new OTLPProtobufTraceExporter({ url });
}

/**
 * Starts the OpenTelemetry SDK once per process: metrics are always collected and served on
 * `/metrics`; spans are exported only when OTEL_EXPORTER_OTLP_ENDPOINT is set (otherwise the
 * tracer is a no-op and costs nothing on the hot path).
 */
export function startTelemetry(config: Config["telemetry"], role: string, log: Logger = silentLogger): Telemetry {
  if (active) return active;
  routeTelemetryDiagnostics(log);
  const reader = new PrometheusExporter({ preventServerStart: true });
  const sdk = new NodeSDK({
    resource: resourceFromAttributes({ "service.name": config.OTEL_SERVICE_NAME, "evently.role": role }),
    metricReaders: [reader],
    // Without an endpoint: no span processor at all, so the SDK does not fall back to its default
    // exporter (OTLP to localhost) and spans cost nothing.
    spanProcessors: config.OTEL_EXPORTER_OTLP_ENDPOINT
      ? [
          new BatchSpanProcessor({
            exporter: spanExporter(config, config.OTEL_EXPORTER_OTLP_ENDPOINT),
            maxQueueSize: config.OTEL_BSP_MAX_QUEUE_SIZE,
            maxExportBatchSize: Math.min(config.OTEL_BSP_MAX_EXPORT_BATCH_SIZE, config.OTEL_BSP_MAX_QUEUE_SIZE),
            scheduledDelayMillis: config.OTEL_BSP_SCHEDULE_DELAY,
          }),
        ]
      : [],
    // Parent-based: a caller's sampling decision (its traceparent's flag) is kept. Every root span
    // is kept too, because TRACE_SAMPLE_RATIO is applied before a root span is made
    // (trace-context.ts startsTrace), where skipping a trace costs nothing.
    sampler: new ParentBasedSampler({ root: new AlwaysOnSampler() }),
    logRecordProcessors: [],
    instrumentations: [],
    autoDetectResources: false,
  });
  sdk.start();
  setTracingEnabled(config.OTEL_EXPORTER_OTLP_ENDPOINT !== undefined, config.TRACE_SAMPLE_RATIO);
  resetInstruments();
  const serializer = new PrometheusSerializer();
  active = {
    async renderMetrics() {
      const { resourceMetrics } = await reader.collect();
      return serializer.serialize(resourceMetrics);
    },
    async shutdown() {
      active = undefined;
      setTracingEnabled(false);
      await sdk.shutdown().catch(() => {});
      // The SDK registers its providers globally and never unregisters them, and the API refuses a
      // second registration: without this, a later start in the same process (tests run many
      // installations in one) would record into the stopped providers, that is nowhere.
      trace.disable();
      metrics.disable();
      diag.disable();
    },
  };
  return active;
}
