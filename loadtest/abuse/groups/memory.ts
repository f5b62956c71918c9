import { readFileSync, writeFileSync } from "node:fs";
import { batchBodyLimit } from "../../../services/api/modules/events/index.ts";
import type { Context } from "../context.ts";
import type { Res } from "../probe.ts";

const GROUP = "memory";
const MiB = 1024 * 1024;
const BODIES = 8;
const BODY_BYTES = 28 * MiB;
const CHUNK_BYTES = 256 * 1024;

export interface MemoryRound {
  name: string;
  bodies: number;
  bodyBytes: number;
  answers: Record<string, number>;
  durationMs: number;
  rssBeforeMiB: number;
  /** Highest VmRSS seen by sampling every 20 ms during the round. */
  sampledPeakMiB: number;
  /** VmHWM after the round; reset before it when the kernel allows (clear_refs), else the process's lifetime peak. */
  peakMiB: number;
  peakIsRoundOnly: boolean;
  rssAfterMiB: number;
}

export interface MemoryReport {
  maxBodyBytesInFlight: number;
  batchBodyLimitBytes: number;
  rounds: MemoryRound[];
}

function status(pid: number): { rssMiB: number; hwmMiB: number } {
  const text = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? NaN);
  return { rssMiB: Math.round(kb("VmRSS") / 102.4) / 10, hwmMiB: Math.round(kb("VmHWM") / 102.4) / 10 };
}

/** Resets VmHWM to the current RSS (Linux: `5` to clear_refs); false when not allowed. */
function resetPeak(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, "5");
    return true;
  } catch {
    return false;
  }
}

/**
 * A batch body of about `size` bytes: as many events as a batch may hold, each with an equal share
 * of the bytes as data (within MAX_PAYLOAD_BYTES), of a type nobody subscribes to.
 */
function batchBody(size: number, maxEvents: number, maxPayload: number): Uint8Array {
  const count = Math.max(1, Math.min(maxEvents, Math.ceil(size / (maxPayload - 64))));
  const overhead = Buffer.byteLength(JSON.stringify({ events: Array.from({ length: count }, () => ({ type: "abuse.memory", data: { s: "" } })) }));
  const each = Math.floor((size - overhead) / count);
  const item = JSON.stringify({ type: "abuse.memory", data: { s: "x".repeat(each) } });
  return new TextEncoder().encode(`{"events":[${Array(count).fill(item).join(",")}]}`);
}

/**
 * Eight concurrent batch bodies, each twice: with Content-Length declared, then streamed chunked.
 * First the issue's attack, 28 MiB each (past the batch limit now: 413); then the largest batch the
 * API takes (just under its batch limit), eight of which together pass MAX_BODY_BYTES_IN_FLIGHT,
 * which counts what handling a body costs in memory. The API must refuse what passes the bound (503
 * `overloaded`, or 413) and keep its memory near the bound, however many arrive. The API's RSS is
 * read from /proc (it is a child process of the suite): before, peak during, after.
 */
export async function memoryCases(ctx: Context): Promise<MemoryReport> {
  const { suite, a, config } = ctx;
  const pid = suite.apiPid;
  const attack = batchBody(BODY_BYTES, config.http.MAX_BATCH_EVENTS, config.http.MAX_PAYLOAD_BYTES);
  const largest = batchBody(batchBodyLimit(config.http) - 64 * 1024, config.http.MAX_BATCH_EVENTS, config.http.MAX_PAYLOAD_BYTES);
  const report: MemoryReport = { maxBodyBytesInFlight: config.http.MAX_BODY_BYTES_IN_FLIGHT, batchBodyLimitBytes: batchBodyLimit(config.http), rounds: [] };
  const chunked = (body: Uint8Array) => {
    let offset = 0;
    return new ReadableStream<Uint8Array>({
      pull(controller) {
        if (offset >= body.byteLength) return controller.close();
        controller.enqueue(body.subarray(offset, offset + CHUNK_BYTES));
        offset += CHUNK_BYTES;
      },
    });
  };
  const rounds: [name: string, count: number, body: Uint8Array, makeBody: () => Uint8Array | ReadableStream<Uint8Array>][] = [
    // Not a case: what one admitted body costs, to read the attack's peak by.
    ["one largest batch alone, for reference", 1, largest, () => largest],
    ["declared Content-Length", BODIES, attack, () => attack],
    ["streamed, chunked", BODIES, attack, () => chunked(attack)],
    ["largest batch, declared Content-Length", BODIES, largest, () => largest],
    ["largest batch, streamed, chunked", BODIES, largest, () => chunked(largest)],
  ];
  for (const [name, count, body, makeBody] of rounds) {
    await Bun.sleep(500);
    const before = status(pid);
    const peakIsRoundOnly = resetPeak(pid);
    let sampledPeak = before.rssMiB;
    const sampler = setInterval(() => {
      try {
        sampledPeak = Math.max(sampledPeak, status(pid).rssMiB);
      } catch {
        // The process is gone; the verdict says so.
      }
    }, 20);
    const started = performance.now();
    const answers: Res[] = await Promise.all(
      Array.from({ length: count }, () =>
        suite.send({ method: "POST", path: "/events/batch", key: a.key, body: makeBody(), bodyNote: `${(body.byteLength / MiB).toFixed(1)} MiB` }),
      ),
    );
    const durationMs = Math.round(performance.now() - started);
    clearInterval(sampler);
    const peak = suite.apiAlive() ? status(pid).hwmMiB : NaN;
    await Bun.sleep(2000);
    const after = suite.apiAlive() ? status(pid).rssMiB : NaN;
    const counts: Record<string, number> = {};
    for (const r of answers) {
      const key = r.status === 0 ? "no answer" : `${r.status}${r.code ? ` ${r.code}` : ""}`;
      counts[key] = (counts[key] ?? 0) + 1;
    }
    report.rounds.push({
      name,
      bodies: count,
      bodyBytes: body.byteLength,
      answers: counts,
      durationMs,
      rssBeforeMiB: before.rssMiB,
      sampledPeakMiB: sampledPeak,
      peakMiB: peak,
      peakIsRoundOnly,
      rssAfterMiB: after,
    });
    if (count === 1) continue;
    const serverErrors = answers.filter((r) => r.status >= 500 && !(r.status === 503 && r.code === "overloaded"));
    const admitted = answers.filter((r) => r.status > 0 && r.status < 400).length;
    const refusedAsDocumented = answers.every(
      (r) => (r.status === 503 && r.code === "overloaded" && r.headers.get("retry-after") !== null) || r.status === 413 || r.status === 202,
    );
    const crashed = !suite.apiAlive();
    suite.record({
      group: GROUP,
      name: `${BODIES} concurrent ${(body.byteLength / MiB).toFixed(1)} MiB batches, ${name}`,
      sent: `${BODIES} × POST /events/batch of ${body.byteLength} bytes at once (${name})`,
      expected: `those past MAX_BODY_BYTES_IN_FLIGHT (${report.maxBodyBytesInFlight} bytes) refused: 503 overloaded + Retry-After, or 413`,
      got: `${Object.entries(counts).map(([k, n]) => `${n}× ${k}`).join(", ")}; API RSS ${before.rssMiB} → peak ${peak} → ${after} MiB`,
      verdict: crashed || serverErrors.length > 0 ? "5xx" : admitted === BODIES ? "wrongly_accepted" : "refused",
      asDocumented: refusedAsDocumented,
      note: crashed ? "the API process is gone" : admitted === BODIES ? "every body was read: the in-flight bound did not hold" : undefined,
    });
  }
  const small = await suite.send({ method: "POST", path: "/events", key: a.key, body: { type: "abuse.memory", data: { after: true } } });
  suite.control(GROUP, "after the attack a small event is accepted (the bound's bytes were given back)", small.status === 202, `${small.status} ${small.code ?? ""}`);
  return report;
}
