import { isSpanContextValid, trace } from "@opentelemetry/api";

/** Structured JSON logs, one line each. Never pass secrets or payloads here. */
export type Level = "debug" | "info" | "warn" | "error";
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

export function createLogger(level: Level = "info", base: Record<string, unknown> = {}): Logger {
  const min = ORDER[level];
  const write = (lvl: Level, msg: string, fields?: Record<string, unknown>) => {
    if (ORDER[lvl] < min) return;
    // The active span's ids, so a line can be found from its trace and the other way round.
    // Valid only with tracing on: then also inside a job's remote context (worker pipeline), whose
    // span is the event's request span.
    const active = trace.getActiveSpan()?.spanContext();
    const ids = active && isSpanContextValid(active) ? { trace_id: active.traceId, span_id: active.spanId } : undefined;
    const line = JSON.stringify({ time: new Date().toISOString(), level: lvl, msg, ...ids, ...base, ...fields });
    (lvl === "error" || lvl === "warn" ? process.stderr : process.stdout).write(line + "\n");
  };
  return {
    debug: (m, f) => write("debug", m, f),
    info: (m, f) => write("info", m, f),
    warn: (m, f) => write("warn", m, f),
    error: (m, f) => write("error", m, f),
    child: (fields) => createLogger(level, { ...base, ...fields }),
  };
}

/** Prints only errors: the default where no logger is given (tests, embedded use). */
export const silentLogger: Logger = createLogger("error", {});
