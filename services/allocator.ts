/**
 * The native allocator's settings, applied before anything else runs (main.ts, the entry point,
 * applies them before it imports the program).
 *
 * Bun allocates its native memory (request and response bodies, the buffers postgres.js builds
 * for each statement, strings) with mimalloc, which by default hands freed memory back to the
 * operating system 100 ms after it was freed. Under steady load the same memory is wanted again
 * at once: every hand-back is an `madvise` that flushes the TLB of every core the process has run
 * on (an inter-processor interrupt per core, dear in a virtual machine), and every reuse page-faults
 * it back in. A profile of both roles at 1,000 events/s put a tenth of their time in mimalloc's
 * purging thread alone. Kept for ten seconds instead, freed memory is reused (interleaved bench
 * runs: 3-15% less CPU per delivery for the whole stack, the same peak RSS); the memory guard's
 * forced collections (core/memory-guard.ts) still return it at once when a process is over its
 * memory target, since a full collection makes mimalloc purge what is free.
 *
 * mimalloc reads its options from the environment once, when the process starts, so a process that
 * finds the setting absent starts itself again in place (`execve`: same pid, same arguments and
 * runtime flags) with it set. A value the operator set is kept, whatever it is.
 */
const ALLOCATOR_ENV: Readonly<Record<string, string>> = { MIMALLOC_PURGE_DELAY: "10000" };

export function restartWithAllocatorSettings(): void {
  const missing = Object.entries(ALLOCATOR_ENV).filter(([name]) => process.env[name] === undefined);
  if (missing.length === 0 || typeof process.execve !== "function") return;
  process.execve(process.execPath, [process.execPath, ...process.execArgv, ...process.argv.slice(1)], { ...process.env, ...Object.fromEntries(missing) });
}
