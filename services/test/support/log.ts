import type { Level, Logger } from "../../core/log.ts";

export interface LogLine {
  level: Level;
  msg: string;
  [field: string]: unknown;
}

/** A logger that keeps every line (all levels, children included) for a test to inspect. */
export function captureLog(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const make = (base: Record<string, unknown>): Logger => {
    const write = (level: Level) => (msg: string, fields?: Record<string, unknown>) => void lines.push({ ...base, ...fields, level, msg });
    return { debug: write("debug"), info: write("info"), warn: write("warn"), error: write("error"), child: (fields) => make({ ...base, ...fields }) };
  };
  return { log: make({}), lines };
}
