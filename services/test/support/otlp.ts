import { gunzipSync } from "node:zlib";

/**
 * A local OTLP/HTTP trace receiver: point OTEL_EXPORTER_OTLP_ENDPOINT at `url` and it keeps every
 * export request exactly as the SDK sent it (OTLP/JSON), so a test sees what a collector would.
 */
export interface OtlpSpan {
  name: string;
  attributes: Record<string, unknown>;
}

export interface OtlpReceiver {
  url: string;
  /** The body of every export request, as received (gunzipped when the exporter compressed it). */
  exports: string[];
  /** Every span of every export, flattened. */
  spans(): OtlpSpan[];
  stop(): Promise<void>;
}

interface KeyValue {
  key: string;
  value: Record<string, unknown>;
}

interface ExportRequest {
  resourceSpans?: { scopeSpans?: { spans?: { name: string; attributes?: KeyValue[] }[] }[] }[];
}

export function startOtlpReceiver(): OtlpReceiver {
  const exports: string[] = [];
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(request) {
      if (new URL(request.url).pathname !== "/v1/traces") return new Response("not found", { status: 404 });
      const bytes = Buffer.from(await request.arrayBuffer());
      const body = request.headers.get("content-encoding") === "gzip" ? gunzipSync(bytes) : bytes;
      exports.push(body.toString("utf8"));
      return Response.json({});
    },
  });
  return {
    url: `http://127.0.0.1:${server.port}`,
    exports,
    spans: () =>
      exports.flatMap((text) =>
        ((JSON.parse(text) as ExportRequest).resourceSpans ?? []).flatMap((r) =>
          (r.scopeSpans ?? []).flatMap((s) =>
            (s.spans ?? []).map((span) => ({
              name: span.name,
              // Each OTLP value is one of stringValue, intValue, boolValue, …: keep whichever is set.
              attributes: Object.fromEntries((span.attributes ?? []).map((a) => [a.key, Object.values(a.value)[0]])),
            })),
          ),
        ),
      ),
    stop: async () => {
      await server.stop(true);
    },
  };
}
