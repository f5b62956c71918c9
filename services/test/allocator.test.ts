import { describe, expect, test } from "bun:test";
import { resolve } from "node:path";

// The entry point itself, run as a process: mimalloc reports its options when started verbose, so
// the process's own allocator says which purge delay it runs with. An unknown role makes main.ts
// exit at once (2), after the allocator module has had its say.
const main = resolve(import.meta.dir, "../main.ts");

async function runMain(env: Record<string, string | undefined>) {
  const childEnv: Record<string, string | undefined> = { ...process.env, MIMALLOC_VERBOSE: "1", ...env };
  for (const [k, v] of Object.entries(childEnv)) if (v === undefined) delete childEnv[k];
  const child = Bun.spawn([process.execPath, main, "no-such-role"], { env: childEnv as Record<string, string>, stdout: "pipe", stderr: "pipe" });
  const [code, stderr] = await Promise.all([child.exited, new Response(child.stderr).text()]);
  return {
    code,
    stderr,
    // One "process init" per process image mimalloc started in.
    starts: stderr.match(/mimalloc: process init/g)?.length ?? 0,
    purgeDelays: [...stderr.matchAll(/option 'purge_delay': (-?\d+)/g)].map((m) => m[1]),
  };
}

describe("the allocator's settings at start", () => {
  test("a process started without them starts again in place with freed memory kept ten seconds", async () => {
    const run = await runMain({ MIMALLOC_PURGE_DELAY: undefined });
    expect(run.code).toBe(2);
    expect(run.starts).toBe(2);
    // The first image ran with mimalloc's default (100 ms in this Bun), the second with ours.
    expect(run.purgeDelays).toHaveLength(2);
    expect(run.purgeDelays[1]).toBe("10000");
    // The restarted image ran main.ts with the same arguments.
    expect(run.stderr).toContain('unknown role "no-such-role"');
  });

  test("an operator's own value is kept, and nothing restarts", async () => {
    const run = await runMain({ MIMALLOC_PURGE_DELAY: "250" });
    expect(run.code).toBe(2);
    expect(run.starts).toBe(1);
    expect(run.purgeDelays).toEqual(["250"]);
  });
});
