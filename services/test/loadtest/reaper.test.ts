import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { processAlive } from "../../../loadtest/bench/reaper.ts";

const REAPER = join(import.meta.dir, "../../../loadtest/bench/reaper.ts");

/**
 * A stand-in for the bench: starts a child that would run for a minute, watches it, optionally
 * releases it (as a bench that ended normally does), prints the child's pid and waits to be killed.
 */
function standIn(release: boolean): string {
  const dir = mkdtempSync(join(tmpdir(), "evently-reaper-test-"));
  dirs.push(dir);
  const file = join(dir, "bench.ts");
  writeFileSync(
    file,
    `import { releaseChildren, watchChild } from ${JSON.stringify(REAPER)};
const child = Bun.spawn([process.execPath, "-e", "setTimeout(() => {}, 60_000)"], { stdin: "ignore", stdout: "ignore", stderr: "ignore" });
watchChild(child.pid);
${release ? "releaseChildren();" : ""}
console.log(child.pid);
setInterval(() => {}, 1000);
`,
  );
  return file;
}

const dirs: string[] = [];
const children: number[] = [];

async function startBench(release: boolean): Promise<{ bench: ReturnType<typeof Bun.spawn>; child: number }> {
  const bench = Bun.spawn([process.execPath, standIn(release)], { stdout: "pipe", stderr: "inherit" });
  const reader = bench.stdout.getReader();
  let text = "";
  while (!text.includes("\n")) {
    const chunk = await reader.read();
    if (chunk.done) throw new Error("the stand-in ended before printing its child's pid");
    text += new TextDecoder().decode(chunk.value);
  }
  const child = Number(text.trim());
  children.push(child);
  return { bench, child };
}

async function waitFor(check: () => boolean, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (check()) return true;
    await Bun.sleep(50);
  }
  return check();
}

afterEach(() => {
  for (const pid of children.splice(0)) if (processAlive(pid)) process.kill(pid, "SIGKILL");
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe("the bench's reaper", () => {
  test("kills a watched child when the bench is SIGKILLed", async () => {
    const { bench, child } = await startBench(false);
    expect(processAlive(child)).toBe(true);
    bench.kill("SIGKILL");
    await bench.exited;
    expect(await waitFor(() => !processAlive(child), 5000)).toBe(true);
  });

  test("leaves children alone once the bench released them", async () => {
    const { bench, child } = await startBench(true);
    bench.kill("SIGKILL");
    await bench.exited;
    // Longer than the reaper's poll: had it still been watching, the child would be gone.
    await Bun.sleep(1000);
    expect(processAlive(child)).toBe(true);
  });
});
