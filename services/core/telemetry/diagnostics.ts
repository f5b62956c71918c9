import { diag, DiagLogLevel, type DiagLogger } from "@opentelemetry/api";
import type { Logger } from "../log.ts";
import { redactUrlsIn } from "../redact.ts";

// One line per kind of message per window: a collector that is down fails every export (several a
// second under load), and the log should say so, not drown in it.
const REPEAT_WINDOW_MS = 30_000;

/**
 * The OpenTelemetry SDK's own warnings and errors (a failed span export, spans dropped because the
 * export queue was full) as structured log lines. The SDK is silent without a diagnostic logger,
 * so a wrong collector URL or a queue too small for the span rate went unnoticed. Repeats of a
 * message within REPEAT_WINDOW_MS are counted, and the count goes out with its next line.
 */
export function logTelemetryDiagnostics(log: Logger, now: () => number = Date.now): DiagLogger {
  const seen = new Map<string, { loggedAt: number; suppressed: number }>();
  const write = (level: "warn" | "error") => (message: string, ...args: unknown[]) => {
    // Messages carry counts ("Dropped 37 spans…"): the kind is the message with its numbers out.
    const kind = `${level} ${message.replace(/\d+/g, "#")}`;
    const entry = seen.get(kind);
    const at = now();
    if (entry && at - entry.loggedAt < REPEAT_WINDOW_MS) {
      entry.suppressed++;
      return;
    }
    seen.set(kind, { loggedAt: at, suppressed: 0 });
    // An exporter's message may quote the collector's URL, credentials included.
    const detail = redactUrlsIn(args.map(describe).join(" "));
    log[level](`telemetry: ${redactUrlsIn(message)}`, {
      ...(detail ? { detail } : {}),
      ...(entry?.suppressed ? { repeatedSinceLastLine: entry.suppressed } : {}),
    });
  };
  const ignore = () => {};
  return { error: write("error"), warn: write("warn"), info: ignore, debug: ignore, verbose: ignore };
}

function describe(value: unknown): string {
  if (value instanceof Error) return value.message;
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value); // a cycle
  }
}

/** Routes the SDK's diagnostics to `log` (warnings and errors only); replaces any earlier route. */
export function routeTelemetryDiagnostics(log: Logger): void {
  diag.disable();
  diag.setLogger(logTelemetryDiagnostics(log), { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true });
}
