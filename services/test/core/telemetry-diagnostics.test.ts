import { afterEach, describe, expect, test } from "bun:test";
import { loadConfig } from "../../core/config/index.ts";
import type { Logger } from "../../core/log.ts";
import { logTelemetryDiagnostics } from "../../core/telemetry/diagnostics.ts";
import { startTelemetry, type Telemetry } from "../../core/telemetry/setup.ts";
import { tracer } from "../../core/telemetry/tracing.ts";
import { pollUntil } from "../support/poll.ts";

interface Line {
  level: string;
  msg: string;
  fields?: Record<string, unknown>;
}

function capturingLogger(lines: Line[]): Logger {
  const at = (level: string) => (msg: string, fields?: Record<string, unknown>) => void lines.push({ level, msg, fields });
  const logger: Logger = { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error"), child: () => logger };
  return logger;
}

describe("the OpenTelemetry SDK's diagnostics in the log", () => {
  test("warnings and errors become log lines; a repeat within 30 s is counted and reported with the next line", () => {
    const lines: Line[] = [];
    let now = 0;
    const diag = logTelemetryDiagnostics(capturingLogger(lines), () => now);
    diag.warn("Dropped 12 spans because maxQueueSize reached");
    diag.warn("Dropped 40 spans because maxQueueSize reached"); // same kind, other count
    diag.error("export failed", new Error("connect ECONNREFUSED"));
    diag.info("not logged");
    diag.debug("not logged");
    now = 29_999;
    diag.warn("Dropped 3 spans because maxQueueSize reached");
    now = 30_001;
    diag.warn("Dropped 5 spans because maxQueueSize reached");
    expect(lines).toEqual([
      { level: "warn", msg: "telemetry: Dropped 12 spans because maxQueueSize reached", fields: {} },
      { level: "error", msg: "telemetry: export failed", fields: { detail: "connect ECONNREFUSED" } },
      { level: "warn", msg: "telemetry: Dropped 5 spans because maxQueueSize reached", fields: { repeatedSinceLastLine: 2 } },
    ]);
  });

  test("a collector URL's password in a message or its detail is redacted", () => {
    const lines: Line[] = [];
    const diag = logTelemetryDiagnostics(capturingLogger(lines));
    diag.error("export to https://tenant:s3cret@collector.example/v1/traces failed", "retrying http://u:hunter2@10.0.0.1:4318/v1/traces");
    expect(JSON.stringify(lines)).not.toMatch(/s3cret|hunter2/);
    expect(lines[0]!.msg).toBe("telemetry: export to https://tenant:[redacted]@collector.example/v1/traces failed");
    expect(lines[0]!.fields).toEqual({ detail: "retrying http://u:[redacted]@10.0.0.1:4318/v1/traces" });
  });

  describe("from a running SDK", () => {
    let telemetry: Telemetry | undefined;
    let server: ReturnType<typeof Bun.serve> | undefined;
    afterEach(async () => {
      await telemetry?.shutdown();
      await server?.stop(true);
      telemetry = server = undefined;
    });

    const start = (handler: () => Response | Promise<Response>, env: Record<string, string>) => {
      server = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: handler });
      const lines: Line[] = [];
      const config = loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${server.port}`, ...env }).telemetry;
      telemetry = startTelemetry(config, "test", capturingLogger(lines));
      return lines;
    };

    test("a collector refusing the export is reported (the SDK alone says nothing)", async () => {
      const lines = start(() => new Response("no such tenant", { status: 400 }), { OTEL_BSP_SCHEDULE_DELAY: "10" });
      tracer().startSpan("refused").end();
      await pollUntil(() => lines.some((l) => l.level === "error" && l.msg.startsWith("telemetry:")), { timeoutMs: 10_000, what: "a telemetry error line" });
    });

    test("spans dropped because the export queue is full are reported with their count", async () => {
      // A collector slower than the spans come: one export in flight, a queue of 2.
      const lines = start(async () => (await Bun.sleep(300), new Response("{}")), {
        OTEL_BSP_MAX_QUEUE_SIZE: "2",
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE: "1",
        OTEL_BSP_SCHEDULE_DELAY: "10",
      });
      for (let i = 0; i < 10; i++) tracer().startSpan(`span ${i}`).end();
      // The drops are reported by the first span that finds room again, once exports caught up.
      await pollUntil(
        () => {
          tracer().startSpan("later").end();
          return lines.some((l) => l.level === "warn" && /Dropped \d+ spans/.test(l.msg));
        },
        { timeoutMs: 10_000, intervalMs: 400, what: "a dropped-spans warning" },
      );
    });

    test("the queue settings are checked at startup", () => {
      expect(() => loadConfig({ OTEL_BSP_MAX_QUEUE_SIZE: "0" })).toThrow(/OTEL_BSP_MAX_QUEUE_SIZE/);
      expect(() => loadConfig({ OTEL_BSP_SCHEDULE_DELAY: "soon" })).toThrow(/OTEL_BSP_SCHEDULE_DELAY/);
    });
  });
});
