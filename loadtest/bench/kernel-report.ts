import type { KernelEvents } from "./observe.ts";
import type { PhaseResult } from "./phases.ts";
import { PEER_LABEL, TRANSPORT_LABEL } from "./peers-report.ts";
import { OUTSIDE_STACK, stackGroups, type BenchReport } from "./report.ts";

/**
 * The report's sections on what a delivery's CPU is made of, for Evently's transports and the peers
 * alike: the role processes' CPU by thread (the JavaScript thread, the JIT compiler, the HTTP
 * client…), and what each process made the kernel do. CPU per delivery says what a delivery costs;
 * these say how much of that is compiling, and how much is paid per wake-up and per fault, whose
 * prices the ceilings' kernel probe reads (kernel-speed.ts).
 */

/** "api 1.12 · worker 2.47": one count per delivered event for each group that has it. */
function perGroup(kernel: Record<string, KernelEvents>, groups: string[], delivered: number, pick: (k: KernelEvents) => number): string {
  const cells = groups.filter((g) => kernel[g]).map((g) => `${g} ${(pick(kernel[g]!) / delivered).toFixed(2)}`);
  return cells.length ? cells.join(" · ") : "–";
}

function total(kernel: Record<string, KernelEvents>, groups: string[], delivered: number, pick: (k: KernelEvents) => number): string {
  return (groups.reduce((sum, g) => sum + (kernel[g] ? pick(kernel[g]!) : 0), 0) / delivered).toFixed(1);
}

function kernelRow(label: string, p: PhaseResult): string | undefined {
  const kernel = p.cpu.total.kernel;
  const delivered = p.delivery.unique;
  if (!kernel || delivered <= 0 || p.spec.group === "warmup") return undefined;
  const groups = stackGroups(p.transport);
  const sleeps = (k: KernelEvents) => k.sleeps;
  const faults = (k: KernelEvents) => k.faults;
  const preemptions = (k: KernelEvents) => k.preemptions;
  return (
    `| ${label} | ${p.spec.name} | ${perGroup(kernel, groups, delivered, sleeps)} | ${perGroup(kernel, groups, delivered, faults)} | ` +
    `**${total(kernel, groups, delivered, sleeps)}** · ${total(kernel, groups, delivered, preemptions)} · **${total(kernel, groups, delivered, faults)}** | ` +
    `${OUTSIDE_STACK.filter((g) => kernel[g]).map((g) => `${g} ${(kernel[g]!.sleeps / delivered).toFixed(2)} · ${(kernel[g]!.faults / delivered).toFixed(2)}`).join("<br>") || "–"} |`
  );
}

/** "api: main 0.205 · JITWorker 0.049": each role process's threads, core·ms per delivered event, the smallest left out. */
function threadRow(label: string, p: PhaseResult): string | undefined {
  const threads = p.cpu.total.threads;
  const delivered = p.delivery.unique;
  if (!threads || delivered <= 0 || p.spec.group === "warmup") return undefined;
  const cells = stackGroups(p.transport)
    .filter((g) => threads[g])
    .map((g) => {
      const named = Object.entries(threads[g]!)
        .map(([name, seconds]) => [name, (seconds * 1000) / delivered] as const)
        .filter(([, perEvent]) => perEvent >= 0.005)
        .sort((x, y) => y[1] - x[1]);
      return `${g}: ${named.length ? named.map(([name, perEvent]) => `${name} ${perEvent.toFixed(3)}`).join(" · ") : "–"}`;
    });
  return cells.length ? `| ${label} | ${p.spec.name} | ${cells.join("<br>")} |` : undefined;
}

/** Every Evently transport's phases and every peer's, each through `toRow`. */
function rowsOf(r: Pick<BenchReport, "runs" | "peers">, toRow: (label: string, p: PhaseResult) => string | undefined): string[] {
  return [
    ...r.runs.flatMap((t) => t.phases.map((p) => toRow(TRANSPORT_LABEL[t.transport] ?? t.transport, p))),
    ...(r.peers ?? []).flatMap((peer) => peer.phases.map((p) => toRow(PEER_LABEL[peer.peer], p))),
  ].filter((line): line is string => line !== undefined);
}

export function threadLines(r: Pick<BenchReport, "runs" | "peers">): string[] {
  const rows = rowsOf(r, threadRow);
  if (!rows.length) return [];
  return [
    "## The role processes' CPU per delivered event (core·ms), by thread",
    "",
    "Each process's threads by name, from `/proc`: `main` is the JavaScript thread; in Bun `JITWorker` compiles,",
    "`HTTP Client` makes the worker's requests (fetch), `HeapHelper` helps the garbage collector and `mi-scavenger`",
    "hands freed memory back. Threads under 0.005 core·ms per event are left out.",
    "",
    "| System | Phase | Threads |",
    "| --- | --- | --- |",
    ...rows,
    "",
  ];
}

export function kernelEventLines(r: Pick<BenchReport, "runs" | "peers">): string[] {
  const rows = rowsOf(r, kernelRow);
  if (!rows.length) return [];
  return [
    "## Context switches and page faults per delivered event",
    "",
    "Over each phase (publishing and drain), from `/proc`, every thread of each process. A sleep is a voluntary context",
    "switch: a thread blocked (epoll, a socket, a lock) and was woken again later, so it counts wake-ups. A preemption",
    "is an involuntary one. The ceilings' kernel probe reads what a wake-up and a page fault cost on this machine. `bench`",
    "is the generator and `sink` the sink, each a process of its own outside the stack.",
    "",
    "| System | Phase | Sleeps per event, by process | Page faults per event, by process | Stack: sleeps · preemptions · faults | Generator and sink: sleeps · faults |",
    "| --- | --- | --- | --- | --- | --- |",
    ...rows,
    "",
  ];
}
