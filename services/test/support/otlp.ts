import { gunzipSync } from "node:zlib";
import protoRoot from "otlp-transformer-decoder/build/src/generated/root.js";

/**
 * A local OTLP/HTTP trace receiver: point OTEL_EXPORTER_OTLP_ENDPOINT at `url` and it keeps every
 * export request the SDK sent, in either OTLP/HTTP encoding (OTEL_EXPORTER_OTLP_PROTOCOL), so a test
 * sees what a collector would. Protobuf bodies are decoded with OpenTelemetry's own generated
 * protobuf code, not by hand, so a test fails if the exporter sends what a collector cannot read.
 */
export interface OtlpSpan {
  name: string;
  /** Hex, as W3C traceparent writes them. */
  traceId: string;
  spanId: string;
  /** Empty for a root span. */
  parentSpanId: string;
  links: { traceId: string; spanId: string }[];
  attributes: Record<string, unknown>;
  /** Start and end, in milliseconds since the epoch (sub-millisecond in the fraction). */
  startMs: number;
  endMs: number;
}

export interface OtlpReceiver {
  url: string;
  /**
   * Every export request as searchable text (gunzipped when the exporter compressed it): an OTLP/JSON
   * body as received; a protobuf body as its decoded request in JSON, then its raw bytes as latin1,
   * so a string the decoding does not surface (bytes values, unknown fields) can still be found.
   */
  exports: string[];
  /** Every span of every export, flattened. */
  spans(): OtlpSpan[];
  stop(): Promise<void>;
}

interface KeyValue {
  key: string;
  value: Record<string, unknown>;
}

interface ExportSpan {
  name: string;
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  links?: { traceId: string; spanId: string }[];
  attributes?: KeyValue[];
  /** 64-bit: a decimal string (or a number from some encoders). */
  startTimeUnixNano: string | number;
  endTimeUnixNano: string | number;
}

// OTLP/JSON (the protocol's JSON mapping): ids are hex strings, attributes a list of {key, value:
// AnyValue}. A decoded protobuf request is brought to the same shape (ids from bytes to hex).
interface ExportRequest {
  resourceSpans?: { scopeSpans?: { spans?: ExportSpan[] }[] }[];
}

// The exporter's own package (0.301) ships an encoder but no decoder; an older release of it, kept
// as a test-only alias, ships protobufjs static code for the OTLP messages. Its typings say only
// "a protobuf Root", so the one message used here is typed by hand.
interface StaticMessage {
  decode(bytes: Uint8Array): object;
  toObject(message: object, options: { longs: StringConstructor; bytes: StringConstructor; arrays: boolean }): unknown;
}
const ExportTraceServiceRequest = (
  protoRoot as unknown as { opentelemetry: { proto: { collector: { trace: { v1: { ExportTraceServiceRequest: StaticMessage } } } } } }
).opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest;

const ID_FIELDS = new Set(["traceId", "spanId", "parentSpanId"]);

/**
 * A protobuf export request as OTLP/JSON: ids (bytes, here base64) become lowercase hex; 64-bit
 * integers stay decimal strings (nanosecond times do not fit a double), except int attribute
 * values, which are small (counts, statuses) and compare as numbers, as the JSON exporter sends them.
 */
function decodeProtobuf(body: Buffer): ExportRequest {
  const object = ExportTraceServiceRequest.toObject(ExportTraceServiceRequest.decode(body), { longs: String, bytes: String, arrays: true });
  return JSON.parse(JSON.stringify(object), (key, value) => {
    if (ID_FIELDS.has(key) && typeof value === "string") return Buffer.from(value, "base64").toString("hex");
    if (key === "intValue" && typeof value === "string") return Number(value);
    return value;
  }) as ExportRequest;
}

/** Epoch nanoseconds (beyond a double's integers) to milliseconds, keeping microseconds. */
function nanosToMs(nanos: string | number): number {
  return Number(BigInt(nanos) / 1000n) / 1000;
}

export function startOtlpReceiver(): OtlpReceiver {
  const exports: string[] = [];
  const requests: ExportRequest[] = [];
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(request) {
      if (new URL(request.url).pathname !== "/v1/traces") return new Response("not found", { status: 404 });
      const bytes = Buffer.from(await request.arrayBuffer());
      const body = request.headers.get("content-encoding") === "gzip" ? gunzipSync(bytes) : bytes;
      const type = (request.headers.get("content-type") ?? "").split(";")[0]!.trim();
      if (type === "application/json") {
        const text = body.toString("utf8");
        requests.push(JSON.parse(text) as ExportRequest);
        exports.push(text);
        return Response.json({});
      }
      if (type !== "application/x-protobuf") return new Response(`unsupported content-type ${type}`, { status: 415 });
      const decoded = decodeProtobuf(body);
      requests.push(decoded);
      exports.push(`${JSON.stringify(decoded)}\n${body.toString("latin1")}`);
      // An empty ExportTraceServiceResponse: zero bytes in protobuf.
      return new Response(new Uint8Array(0), { headers: { "content-type": "application/x-protobuf" } });
    },
  });
  return {
    url: `http://127.0.0.1:${server.port}`,
    exports,
    spans: () =>
      requests.flatMap((exported) =>
        (exported.resourceSpans ?? []).flatMap((r) =>
          (r.scopeSpans ?? []).flatMap((s) =>
            (s.spans ?? []).map((span) => ({
              name: span.name,
              traceId: span.traceId,
              spanId: span.spanId,
              parentSpanId: span.parentSpanId ?? "",
              links: (span.links ?? []).map((link) => ({ traceId: link.traceId, spanId: link.spanId })),
              // Each OTLP value is one of stringValue, intValue, boolValue, …: keep whichever is set.
              attributes: Object.fromEntries((span.attributes ?? []).map((a) => [a.key, Object.values(a.value)[0]])),
              startMs: nanosToMs(span.startTimeUnixNano),
              endMs: nanosToMs(span.endTimeUnixNano),
            })),
          ),
        ),
      ),
    stop: async () => {
      await server.stop(true);
    },
  };
}
