import { metrics, trace } from "@opentelemetry/api";
import { PrometheusExporter, PrometheusSerializer } from "@opentelemetry/exporter-prometheus";
import { NodeSDK } from "@opentelemetry/sdk-node";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor } from "@opentelemetry/sdk-trace";
import type { Config } from "../config/index.ts";
import { resetInstruments } from "./instruments.ts";

export interface Telemetry {
  /** Prometheus text exposition of every metric this process recorded. */
  renderMetrics(): Promise<string>;
  shutdown(): Promise<void>;
}

let active: Telemetry | undefined;

/**
 * Starts the OpenTelemetry SDK once per process: metrics are always collected and served on
 * `/metrics`; spans are exported only when OTEL_EXPORTER_OTLP_ENDPOINT is set (otherwise the
 * tracer is a no-op and costs nothing on the hot path).
 */
export function startTelemetry(config: Config["telemetry"], role: string): Telemetry {
  if (active) return active;
  const reader = new PrometheusExporter({ preventServerStart: true });
  const sdk = new NodeSDK({
    resource: resourceFromAttributes({ "service.name": config.OTEL_SERVICE_NAME, "evently.role": role }),
    metricReaders: [reader],
    // Without an endpoint: no span processor at all, so the SDK does not fall back to its default
    // exporter (OTLP to localhost) and spans cost nothing.
    spanProcessors: config.OTEL_EXPORTER_OTLP_ENDPOINT
      ? [new BatchSpanProcessor({ exporter: new OTLPTraceExporter({ url: new URL("/v1/traces", config.OTEL_EXPORTER_OTLP_ENDPOINT).toString() }) })]
      : [],
    logRecordProcessors: [],
    instrumentations: [],
    autoDetectResources: false,
  });
  sdk.start();
  resetInstruments();
  const serializer = new PrometheusSerializer();
  active = {
    async renderMetrics() {
      const { resourceMetrics } = await reader.collect();
      return serializer.serialize(resourceMetrics);
    },
    async shutdown() {
      active = undefined;
      await sdk.shutdown().catch(() => {});
      // The SDK registers its providers globally and never unregisters them, and the API refuses a
      // second registration: without this, a later start in the same process (tests run many
      // installations in one) would record into the stopped providers, that is nowhere.
      trace.disable();
      metrics.disable();
    },
  };
  return active;
}
