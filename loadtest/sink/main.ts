import { faultsFromEnv } from "./faults.ts";
import { startSink } from "./server.ts";

/**
 * `bun loadtest/sink/main.ts` — the sink as a process (compose `sink` service, local k6 runs).
 *
 * Env: PORT (9999), HOST (0.0.0.0), SINK_SECRET (comma-separated whsec_… secrets checked on every
 * delivery), SINK_TIMESTAMP_TOLERANCE_S (300, 0 = off), SINK_DEDUP_WINDOW (5,000,000 webhook-ids),
 * and the faults SINK_FAIL_RATE, SINK_FAIL_STATUS, SINK_FAIL_FIRST, SINK_DELAY_MS, SINK_DELAY_JITTER_MS.
 * Everything except the bind address can also be changed at runtime over HTTP (see README).
 */
function intEnv(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be an integer in [${min}, ${max}], got "${raw}"`);
  return n;
}

try {
  const sink = startSink({
    port: intEnv("PORT", 9999, 0, 65535),
    hostname: process.env.HOST || "0.0.0.0",
    secrets: (process.env.SINK_SECRET ?? "")
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean),
    faults: faultsFromEnv(process.env),
    timestampToleranceS: intEnv("SINK_TIMESTAMP_TOLERANCE_S", 300, 0, 86_400 * 365),
    dedupWindow: intEnv("SINK_DEDUP_WINDOW", 5_000_000, 2, 500_000_000),
  });
  console.log(JSON.stringify({ time: new Date().toISOString(), level: "info", msg: "sink listening", url: sink.url, port: sink.port }));

  const shutdown = async (signal: string) => {
    const s = sink.stats();
    console.log(
      JSON.stringify({ time: new Date().toISOString(), level: "info", msg: "sink stopping", signal, unique: s.unique, duplicates: s.duplicates, invalid: s.invalid }),
    );
    await sink.stop();
    process.exit(0);
  };
  process.on("SIGINT", () => void shutdown("SIGINT"));
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
} catch (err) {
  console.error(JSON.stringify({ level: "error", msg: "sink failed to start", error: (err as Error).message }));
  process.exit(1);
}
