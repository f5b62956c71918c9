import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * Stops what the bench started when the bench itself is killed (SIGKILL, Ctrl-C, an OOM kill, a CI
 * timeout), which runs none of its own shutdown: its roles, sinks and peers would otherwise keep
 * running and load every run after it. A small process of its own, started with the first child
 * watched, polls the bench's pid; once it is gone it SIGKILLs every watched child that is still the
 * process it was (its start time unchanged, so a reused pid is never hit). A bench that ends
 * normally has stopped its children itself and calls `releaseChildren`, and the reaper leaves.
 *
 * `bun loadtest/bench/reaper.ts <pid> <list>` runs the reaper for `pid`, reading children from `list`.
 */

const POLL_MS = 250;

let list: string | null = null;

/** Registers a child to be killed if this process dies without releasing it; starts the reaper once. */
export function watchChild(pid: number): void {
  const started = startTime(pid);
  if (started === null) return;
  if (list === null) {
    list = join(mkdtempSync(join(tmpdir(), "evently-reaper-")), "children");
    appendFileSync(list, "");
    Bun.spawn([process.execPath, import.meta.path, String(process.pid), list], { stdin: "ignore", stdout: "ignore", stderr: "ignore" }).unref();
  }
  appendFileSync(list, `${pid} ${started}\n`);
}

/** Tells the reaper its watch is over (every child stopped); it exits without killing anything. */
export function releaseChildren(): void {
  if (list === null) return;
  rmSync(join(list, ".."), { recursive: true, force: true });
  list = null;
}

/** The process's start time in clock ticks after boot (/proc/<pid>/stat, field 22); null if it is gone. */
function startTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces and parentheses: count fields after its last ")".
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? null;
  } catch {
    return null;
  }
}

/**
 * A name for a run's scratch database, queues and logs: this process's pid, then a random part. The
 * pid is what lets a later run tell a killed run's leftovers (`runGone`) from a live one's.
 */
export function newRunId(): string {
  return `${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
}

/** Whether the process that made this run id (newRunId) is gone, so what it left may be removed. */
export function runGone(runId: string): boolean {
  const pid = Number(/^(\d+)_[a-z0-9]+$/.exec(runId)?.[1]);
  return Number.isInteger(pid) && pid > 0 && !processAlive(pid);
}

/** Whether a process with this pid exists (EPERM: it does, another user's). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function reap(parent: number, file: string): Promise<void> {
  while (existsSync(file) && processAlive(parent)) await Bun.sleep(POLL_MS);
  if (!existsSync(file)) return;
  for (const line of readFileSync(file, "utf8").split("\n")) {
    const [pid, started] = line.split(" ");
    if (!pid || startTime(Number(pid)) !== started) continue;
    try {
      process.kill(Number(pid), "SIGKILL");
    } catch {
      // ended meanwhile
    }
  }
  rmSync(join(file, ".."), { recursive: true, force: true });
}

if (import.meta.main) {
  // Ctrl-C and a supervisor's SIGTERM reach the whole process group: the reaper outlives them, and
  // leaves on its own once the bench is gone.
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => {});
  const [parent, file] = Bun.argv.slice(2);
  await reap(Number(parent), file!);
}
