import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

// Each case runs a real process: the handlers act on the process itself (exit codes, signals).
const dir = mkdtempSync(join(tmpdir(), "evently-process-end-"));
const script = join(dir, "role.ts");
writeFileSync(
  script,
  `
import { createLogger } from ${JSON.stringify(resolve(import.meta.dir, "../core/log.ts"))};
import { endProcessOnSignalOrUnhandledError } from ${JSON.stringify(resolve(import.meta.dir, "../process-end.ts"))};
const [mode, stopKind] = process.argv.slice(2);
const log = createLogger("info", { role: "test" });
const stop = () => {
  console.log("stop called");
  if (stopKind === "hangs") return new Promise<void>(() => {});
  if (stopKind === "fails") return Promise.reject(new Error("stop broke"));
  return new Promise<void>((r) => setTimeout(() => { console.log("stopped"); r(); }, 50));
};
endProcessOnSignalOrUnhandledError(log, stop, { crashStopDeadlineMs: 300 });
setInterval(() => {}, 1000); // keeps the process alive like a role's server
console.log("ready");
if (mode === "rejection") void Promise.reject(new Error("nobody awaited this"));
if (mode === "exception") setTimeout(() => { throw new Error("thrown from a callback"); }, 10);
`,
);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function run(mode: string, stopKind = "ok", signals: ("SIGTERM" | "SIGINT")[] = []) {
  const child = Bun.spawn([process.execPath, script, mode, stopKind], { stdout: "pipe", stderr: "pipe" });
  const reader = child.stdout.getReader();
  let stdout = "";
  while (!stdout.includes("ready")) {
    const { value, done } = await reader.read();
    if (done) break;
    stdout += new TextDecoder().decode(value);
  }
  for (const signal of signals) {
    child.kill(signal);
    await Bun.sleep(100);
  }
  const code = await child.exited;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    stdout += new TextDecoder().decode(value);
  }
  const stderr = await new Response(child.stderr).text();
  const lines = stderr
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as { level: string; msg: string; error?: string; role?: string });
  return { code, stdout, lines, stderr };
}

describe("how a role process ends", () => {
  test("an unhandled rejection is logged as one structured line, the roles stop, and the process exits 70", async () => {
    const r = await run("rejection");
    expect(r.code).toBe(70);
    expect(r.stdout).toContain("stopped");
    const line = r.lines.find((l) => l.msg === "unhandled rejection: stopping the process");
    expect(line).toMatchObject({ level: "error", role: "test" });
    expect(line!.error).toContain("nobody awaited this");
  });

  test("an exception thrown from a callback ends the same way", async () => {
    const r = await run("exception");
    expect(r.code).toBe(70);
    expect(r.stdout).toContain("stopped");
    expect(r.lines.find((l) => l.msg === "uncaught exception: stopping the process")?.error).toContain("thrown from a callback");
  });

  test("after an unhandled error, a stop that never finishes is cut off at the deadline", async () => {
    const started = performance.now();
    const r = await run("rejection", "hangs");
    expect(r.code).toBe(70);
    expect(r.stdout).toContain("stop called");
    expect(r.lines.map((l) => l.msg)).toContain("stopping took too long; exiting without finishing it");
    expect(performance.now() - started).toBeLessThan(10_000);
  });

  test("a stop that fails is logged and the exit code says so", async () => {
    const r = await run("rejection", "fails");
    expect(r.code).toBe(70);
    expect(r.lines.find((l) => l.msg === "stopping failed")?.error).toContain("stop broke");
  });

  test("SIGTERM stops the roles and exits 0", async () => {
    const r = await run("idle", "ok", ["SIGTERM"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("stopped");
    expect(r.stdout).not.toContain("nobody awaited");
  });

  test("a second signal while stopping exits at once", async () => {
    const r = await run("idle", "hangs", ["SIGINT", "SIGINT"]);
    expect(r.code).toBe(130);
    expect(r.lines.map((l) => l.msg)).toContain("second signal while stopping: exiting now");
  });
});
