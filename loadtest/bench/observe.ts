import { readdirSync, readFileSync } from "node:fs";

/**
 * What the benchmark reads about the stack besides the sink: each role's Prometheus /metrics
 * (per-stage timings as histogram means, counters), CPU time per process group from /proc, and the
 * role processes' peak RSS. Linux only for /proc; elsewhere those parts come back empty.
 */

/** Series key ("name{labels}" without `le`) → value, for every _sum, _count and _total series. */
export type MetricSnapshot = Record<string, number>;

const LINE = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/;

export function parsePrometheus(text: string): MetricSnapshot {
  const out: MetricSnapshot = {};
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue;
    const m = LINE.exec(line);
    if (!m) continue;
    const name = m[1]!;
    if (!name.startsWith("evently_") || !/(_sum|_count|_total)$/.test(name)) continue;
    const labels = (m[2] ?? "")
      .replace(/^\{|\}$/g, "")
      .split(/,(?=[a-zA-Z_]\w*=")/)
      .filter((l) => l && !l.startsWith("le=") && !l.startsWith("otel_scope_"));
    const value = Number(m[3]);
    if (!Number.isFinite(value)) continue;
    const key = labels.length ? `${name}{${labels.join(",")}}` : name;
    out[key] = (out[key] ?? 0) + value;
  }
  return out;
}

export async function scrapeRoles(roleUrls: Record<string, string>): Promise<Record<string, MetricSnapshot>> {
  const out: Record<string, MetricSnapshot> = {};
  await Promise.all(
    Object.entries(roleUrls).map(async ([role, url]) => {
      try {
        const res = await fetch(`${url}/metrics`);
        out[role] = parsePrometheus(await res.text());
      } catch {
        out[role] = {};
      }
    }),
  );
  return out;
}

/** One stage of one role over a phase: a histogram (count, mean) or a counter (count only). */
export interface StageStat {
  role: string;
  metric: string;
  /** Observations (histogram) or increments (counter) during the phase. */
  count: number;
  /** Histogram mean over the phase (_sum/_count delta); milliseconds for *_seconds metrics. */
  mean?: number;
  unit?: "ms" | "";
}

/** Histograms and counters whose value changed between two scrapes of every role. */
export function diffMetrics(before: Record<string, MetricSnapshot>, after: Record<string, MetricSnapshot>): StageStat[] {
  const out: StageStat[] = [];
  for (const [role, a] of Object.entries(after)) {
    const b = before[role] ?? {};
    const d = (k: string) => (a[k] ?? 0) - (b[k] ?? 0);
    for (const key of Object.keys(a).sort()) {
      const brace = key.indexOf("{");
      const name = brace < 0 ? key : key.slice(0, brace);
      const labels = brace < 0 ? "" : key.slice(brace);
      if (name.endsWith("_count")) {
        const base = name.slice(0, -"_count".length);
        const count = d(key);
        if (count <= 0) continue;
        const sum = d(`${base}_sum${labels}`);
        const seconds = base.endsWith("_seconds");
        out.push({ role, metric: base + labels, count, mean: round((seconds ? sum * 1000 : sum) / count), unit: seconds ? "ms" : "" });
      } else if (name.endsWith("_total")) {
        const count = d(key);
        if (count > 0) out.push({ role, metric: key, count });
      }
    }
  }
  return out;
}

const round = (v: number) => (Math.abs(v) >= 100 ? Math.round(v) : Math.round(v * 100) / 100);

/** CPU seconds (user + system) per process group, and the machine's busy/total jiffies. */
export interface CpuSample {
  atMs: number;
  groups: Record<string, number>;
  /** Kernel events per process group (every thread of its processes) since they started; not for "other". */
  kernel?: Record<string, KernelEvents>;
  /** The role processes' (and the bench's) CPU seconds by thread name: group → thread → seconds. */
  threads?: Record<string, Record<string, number>>;
  machine: { busy: number; total: number };
  /** CPU seconds of each backend serving `database`, by pid; with the pool each belongs to, where known. */
  backends?: Record<number, number>;
  pools?: Record<number, string>;
}

const TICKS_PER_S = 100; // USER_HZ: 100 on every Linux this runs on.

/**
 * What a process group made the kernel do besides running it. On this kind of virtual machine each
 * is dear (kernel-speed.ts reads their price), and none shows in a JavaScript profile.
 */
export interface KernelEvents {
  /** Voluntary context switches: a thread blocked (in epoll, a socket read, a lock), so each is one wake-up later. */
  sleeps: number;
  /** Involuntary context switches: a thread that could have run was preempted. */
  preemptions: number;
  /** Page faults, minor and major. */
  faults: number;
}

/** Fields 3 on of a /proc `stat` file (after the command name, which may hold spaces). */
const statFields = (stat: string) => stat.slice(stat.lastIndexOf(")") + 2).split(" ");

/**
 * A process's kernel events so far, all its threads together ("self": this process); undefined when
 * it is gone or there is no /proc. `fields`: its stat fields, when the caller has read them already.
 */
export function kernelEventsOf(pid: string, fields?: string[]): KernelEvents | undefined {
  try {
    const f = fields ?? statFields(readFileSync(`/proc/${pid}/stat`, "utf8"));
    let sleeps = 0;
    let preemptions = 0;
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const status = readFileSync(`/proc/${pid}/task/${task}/status`, "utf8");
      sleeps += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0);
      preemptions += Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0);
    }
    // minflt and majflt (fields 10 and 12) already sum every thread.
    return { sleeps, preemptions, faults: Number(f[7]) + Number(f[9]) };
  } catch {
    return undefined;
  }
}

/** Each thread's CPU seconds by its name ("main" for the process's first thread, whose name is the program's). */
function threadCpuOf(pid: string): Record<string, number> {
  const cpu: Record<string, number> = {};
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const stat = readFileSync(`/proc/${pid}/task/${task}/stat`, "utf8");
      const name = task === pid ? "main" : stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const f = statFields(stat);
      cpu[name] = (cpu[name] ?? 0) + (Number(f[11]) + Number(f[12])) / TICKS_PER_S;
    }
  } catch {}
  return cpu;
}

/**
 * Groups: the role pids given, "bench" (this process), postgres, rabbitmq (beam.smp), other. With
 * `database`, Postgres backends serving another database (e.g. a test suite running meanwhile) count
 * as "other"; Postgres's background processes (WAL writer, checkpointer…) as "postgres bg".
 */
export function sampleCpu(rolePids: Record<string, number>, database?: string, pools?: Record<number, string>): CpuSample {
  const groups: Record<string, number> = {};
  const kernel: Record<string, KernelEvents> = {};
  const threads: Record<string, Record<string, number>> = {};
  const backends: Record<number, number> = {};
  const byPid = new Map<number, string>(Object.entries(rolePids).map(([r, p]) => [p, r]));
  byPid.set(process.pid, "bench");
  let entries: string[] = [];
  try {
    entries = readdirSync("/proc");
  } catch {
    return { atMs: Date.now(), groups, machine: { busy: 0, total: 0 } };
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${e}/stat`, "utf8");
    } catch {
      continue;
    }
    const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    const fields = statFields(stat);
    const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14, 15)
    const pid = Number(e);
    let group = byPid.get(pid) ?? (comm === "postgres" ? "postgres" : comm.startsWith("beam") ? "rabbitmq" : "other");
    if (group === "postgres" && database) {
      let title = "";
      try {
        title = readFileSync(`/proc/${e}/cmdline`, "utf8");
      } catch {}
      // A backend's title is "postgres: 15/main: <user> <database> <host>(<port>) <state>".
      if (/\d\)/.test(title) && !title.includes(` ${database} `)) group = "other";
      else if (!/\d\)/.test(title)) group = "postgres bg";
      else backends[pid] = ticks / TICKS_PER_S;
    }
    groups[group] = (groups[group] ?? 0) + ticks / TICKS_PER_S;
    const events = group === "other" ? undefined : kernelEventsOf(e, fields);
    if (events) {
      const sum = (kernel[group] ??= { sleeps: 0, preemptions: 0, faults: 0 });
      sum.sleeps += events.sleeps;
      sum.preemptions += events.preemptions;
      sum.faults += events.faults;
    }
    if (byPid.has(pid))
      for (const [name, seconds] of Object.entries(threadCpuOf(e))) (threads[group] ??= {})[name] = (threads[group]![name] ?? 0) + seconds;
  }
  let machine = { busy: 0, total: 0 };
  try {
    const cpu = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
    const total = cpu.reduce((s, v) => s + v, 0);
    const idle = (cpu[3] ?? 0) + (cpu[4] ?? 0);
    machine = { busy: total - idle, total };
  } catch {}
  return { atMs: Date.now(), groups, kernel, threads, machine, ...(database ? { backends, pools } : {}) };
}

/**
 * Cores used per group between two samples (1.0 = one core busy the whole time) and the CPU seconds
 * behind them, plus the machine's busy share. Processes that started or exited in between are
 * counted only for the part seen, so "other" (e.g. short-lived test processes) is a lower bound.
 */
export function cpuBetween(
  a: CpuSample,
  b: CpuSample,
): {
  cores: Record<string, number>;
  cpuSeconds: Record<string, number>;
  machineBusyPct: number;
  postgresPools?: Record<string, number>;
  kernel?: Record<string, KernelEvents>;
  threads?: Record<string, Record<string, number>>;
} {
  const seconds = (b.atMs - a.atMs) / 1000;
  const cores: Record<string, number> = {};
  const cpuSeconds: Record<string, number> = {};
  if (seconds <= 0) return { cores, cpuSeconds, machineBusyPct: 0 };
  const postgresPools = b.pools ? backendsByPool(a, b) : undefined;
  for (const [g, v] of Object.entries(b.groups)) {
    const delta = v - (a.groups[g] ?? 0);
    if (delta > 0) {
      cores[g] = Math.round((delta / seconds) * 100) / 100;
      cpuSeconds[g] = Math.round(delta * 100) / 100;
    }
  }
  const total = b.machine.total - a.machine.total;
  const kernel = kernelBetween(a, b);
  return {
    cores,
    cpuSeconds,
    machineBusyPct: total > 0 ? Math.round(((b.machine.busy - a.machine.busy) / total) * 100) : 0,
    ...(postgresPools ? { postgresPools } : {}),
    ...(kernel ? { kernel } : {}),
    ...(b.threads ? { threads: threadsBetween(a, b) } : {}),
  };
}

/** Each role process's CPU seconds by thread name between two samples (threads that ended take theirs with them). */
function threadsBetween(a: CpuSample, b: CpuSample): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  for (const [group, byName] of Object.entries(b.threads ?? {}))
    for (const [name, seconds] of Object.entries(byName)) {
      const delta = seconds - (a.threads?.[group]?.[name] ?? 0);
      if (delta > 0) (out[group] ??= {})[name] = Math.round(delta * 100) / 100;
    }
  return out;
}

/**
 * Each group's kernel events between two samples. By group, as the CPU is: a process that exited in
 * between takes its counts with it, so a group whose processes come and go reads low (never below 0).
 */
function kernelBetween(a: CpuSample, b: CpuSample): Record<string, KernelEvents> | undefined {
  if (!a.kernel || !b.kernel) return undefined;
  const out: Record<string, KernelEvents> = {};
  for (const [g, v] of Object.entries(b.kernel)) {
    const w = a.kernel[g] ?? { sleeps: 0, preemptions: 0, faults: 0 };
    out[g] = {
      sleeps: Math.max(0, v.sleeps - w.sleeps),
      preemptions: Math.max(0, v.preemptions - w.preemptions),
      faults: Math.max(0, v.faults - w.faults),
    };
  }
  return out;
}

/**
 * The stack's Postgres backends' CPU seconds between two samples, summed by the pool each serves
 * (its application_name, core/db/client.ts; "unnamed" where unknown). Per backend, so a connection
 * made between the samples counts from its start, and one named only in the later sample counts
 * only its own share.
 */
function backendsByPool(a: CpuSample, b: CpuSample): Record<string, number> {
  const byPool: Record<string, number> = {};
  for (const [pid, cpu] of Object.entries(b.backends ?? {})) {
    const delta = cpu - (a.backends?.[Number(pid)] ?? 0);
    if (delta <= 0) continue;
    const pool = b.pools?.[Number(pid)] ?? a.pools?.[Number(pid)] ?? "unnamed";
    byPool[pool] = (byPool[pool] ?? 0) + delta;
  }
  return Object.fromEntries(Object.entries(byPool).map(([pool, seconds]) => [pool, Math.round(seconds * 100) / 100]));
}

/** VmHWM (peak resident set) and VmRSS of a process, in MiB; undefined when unreadable. */
export function memoryOf(pid: number): { peakRssMiB: number; rssMiB: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
    const hwm = kb("VmHWM");
    const rss = kb("VmRSS");
    if (!Number.isFinite(hwm)) return undefined;
    return { peakRssMiB: Math.round((hwm / 1024) * 10) / 10, rssMiB: Math.round((rss / 1024) * 10) / 10 };
  } catch {
    return undefined;
  }
}
