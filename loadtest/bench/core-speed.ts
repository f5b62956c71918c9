import { createHmac, randomBytes } from "node:crypto";

/**
 * How fast one core is right now, as work the worker and the API do: Standard Webhooks signatures
 * and JSON round trips per second in one JS thread. The ceilings take both once per run
 * (ceilings.ts); every phase takes the signatures before it starts and after its drain (phases.ts
 * `coreSpeed`). Always in a process of its own: measured inside the bench, whose heap holds a
 * phase's records, the same loop ran 4-10 times slower from garbage collection alone. This file
 * imports nothing else, so that process starts small.
 *
 *   bun loadtest/bench/core-speed.ts [ms] [json]   # prints {"signaturesPerSec":N[,"jsonRoundTripsPerSec":N]}
 */

/**
 * How many times `work` runs in `durationMs`, per second, after a tenth of that spent warming it up.
 * The clock is read every `perClockRead` runs: a run of a few microseconds should not time the clock.
 */
export function timesPerSecond(durationMs: number, work: () => unknown, perClockRead = 100): number {
  let sink = 0;
  for (const end = performance.now() + durationMs / 10; performance.now() < end; ) if (work()) sink++;
  let count = 0;
  const start = performance.now();
  let now = start;
  while (now - start < durationMs) {
    for (let i = 0; i < perClockRead; i++) if (work()) sink++;
    count += perClockRead;
    now = performance.now();
  }
  // The results are counted so the engine cannot drop the work as unused.
  return sink >= 0 ? Math.round((count * 1000) / (now - start)) : 0;
}

const SIGNING_KEY = randomBytes(32);
// An id, a timestamp and a ~300-byte body, as the worker signs them.
const SIGNED_CONTENT = `msg_2Lc9example.1733500000.${JSON.stringify({ orderId: "ord_0000000003", amount: 23757, note: "benchmark payload ".repeat(13) })}`;

/** Standard Webhooks signatures (HMAC-SHA256, base64) one JS thread makes per second, for `durationMs`. */
export function signaturesPerSecond(durationMs: number): number {
  return timesPerSecond(durationMs, () => createHmac("sha256", SIGNING_KEY).update(SIGNED_CONTENT).digest("base64"));
}

/** JSON.parse then JSON.stringify of a ~300-byte payload per second, one JS thread, for `durationMs`. */
export function jsonRoundTripsPerSecond(durationMs: number): number {
  const payload = SIGNED_CONTENT.slice(SIGNED_CONTENT.indexOf("{"));
  return timesPerSecond(durationMs, () => JSON.stringify(JSON.parse(payload)));
}

export interface CoreSpeed {
  signaturesPerSec: number;
  /** Only when asked for (`json`). */
  jsonRoundTripsPerSec?: number;
}

/** The probes above in a fresh process (Bun's own startup not counted), `durationMs` each; null when it failed. */
export function coreSpeedApart(durationMs: number, json = false): CoreSpeed | null {
  return runApart<CoreSpeed>(import.meta.path, [String(durationMs), ...(json ? ["json"] : [])]);
}

/** Runs a probe script in a fresh process and parses the JSON it prints; null when it failed. */
export function runApart<T>(script: string, args: string[]): T | null {
  const child = Bun.spawnSync([process.execPath, script, ...args], { stdout: "pipe", stderr: "ignore" });
  try {
    return child.exitCode === 0 ? (JSON.parse(child.stdout.toString()) as T) : null;
  } catch {
    return null;
  }
}

if (import.meta.main) {
  const ms = Number(Bun.argv[2] ?? 200);
  const speed: CoreSpeed = { signaturesPerSec: signaturesPerSecond(ms) };
  if (Bun.argv[3] === "json") speed.jsonRoundTripsPerSec = jsonRoundTripsPerSecond(ms);
  console.log(JSON.stringify(speed));
}
