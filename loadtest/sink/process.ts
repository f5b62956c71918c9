import { join } from "node:path";
import { watchChild } from "../bench/reaper.ts";
import type { SinkStats } from "./state.ts";

/**
 * The sink in a process of its own (`main.ts`), driven over its HTTP control routes: what the
 * bench uses, so the CPU a phase reads from /proc splits the load generator (the bench process)
 * from the sink that receives and verifies every delivery.
 */
export interface SinkProcess {
  /** Base URL; deliveries go to `${url}/hooks/<scope>`. */
  url: string;
  pid: number;
  stats(): Promise<SinkStats>;
  /** Clears the measurements (not secrets) and returns the ones it cleared. */
  reset(): Promise<SinkStats>;
  addSecret(secret: string, scope: string): Promise<void>;
  /** Returns once `unique` deliveries have arrived, or after `timeoutMs` (default 60 s) whatever happened. */
  waitFor(options: { unique: number; timeoutMs?: number }): Promise<SinkStats>;
  stop(): Promise<void>;
}

export interface SinkProcessOptions {
  /** webhook-ids remembered for duplicate detection; the bench's million-event runs need them all. */
  dedupWindow?: number;
  /** How long to wait for the "sink listening" line. Default 10 s. */
  startTimeoutMs?: number;
}

const MAIN = join(import.meta.dir, "main.ts");
const WAIT_PIECE_MS = 5_000;

/** Reads the sink's output until its "sink listening" line; the rest is read and dropped, so the pipe never fills. */
async function listeningUrl(proc: Bun.Subprocess<"ignore", "pipe", "inherit">, timeoutMs: number): Promise<string> {
  const reader = proc.stdout.getReader();
  const decoder = new TextDecoder();
  const timer = setTimeout(() => proc.kill(), timeoutMs);
  try {
    let text = "";
    for (;;) {
      const chunk = await reader.read();
      if (chunk.done) throw new Error(`the sink process ended before listening (exit code ${await proc.exited}; killed after ${timeoutMs} ms if it hung)`);
      text += decoder.decode(chunk.value, { stream: true });
      const line = text.split("\n").find((l) => l.includes('"sink listening"'));
      if (line === undefined) continue;
      void (async () => {
        while (!(await reader.read()).done);
      })().catch(() => {});
      return (JSON.parse(line) as { url: string }).url;
    }
  } finally {
    clearTimeout(timer);
  }
}

export async function startSinkProcess(options: SinkProcessOptions = {}): Promise<SinkProcess> {
  // The bench's environment (its allocator settings, say), without sink settings it may hold: faults
  // injected from there would fail the run's deliveries.
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("SINK_")));
  const proc = Bun.spawn([process.execPath, MAIN], {
    env: {
      ...inherited,
      PORT: "0",
      HOST: "127.0.0.1",
      SINK_DEDUP_WINDOW: String(options.dedupWindow ?? 5_000_000),
    },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "inherit",
  });
  watchChild(proc.pid);
  const url = await listeningUrl(proc, options.startTimeoutMs ?? 10_000);
  const control = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    const res = await fetch(`${url}${path}`, {
      method,
      headers: body === undefined ? undefined : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!res.ok) throw new Error(`sink ${method} ${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  };
  const stats = () => control<SinkStats>("GET", "/stats");
  return {
    url,
    pid: proc.pid,
    stats,
    reset: () => control("POST", "/reset"),
    addSecret: async (secret, scope) => {
      await control("POST", "/secrets", { secret, scope });
    },
    // The sink waits in pieces of WAIT_PIECE_MS, under Bun.serve's idle timeout (10 s).
    waitFor: async ({ unique, timeoutMs = 60_000 }) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const piece = Math.max(0, Math.min(WAIT_PIECE_MS, deadline - Date.now()));
        const s = await control<SinkStats>("GET", `/stats?waitUnique=${unique}&timeoutMs=${piece}`);
        if (s.unique >= unique || Date.now() >= deadline) return s;
      }
    },
    stop: async () => {
      proc.kill("SIGTERM");
      await proc.exited;
    },
  };
}
