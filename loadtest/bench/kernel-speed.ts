import { dlopen, FFIType, suffix } from "bun:ffi";
import { closeSync, fdatasyncSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runApart } from "./core-speed.ts";
import { kernelEventsOf } from "./observe.ts";

/**
 * How fast this machine's kernel and virtual disk are right now, Evently aside: the things a
 * single event at 1,000/s pays for that no code of ours does (BENCHMARKS.md, "Why a single event at
 * 1,000/s costs what it costs"): the WAL flush each durable commit waits for, waking a process
 * that sleeps in epoll, and the price of a page fault and of a system call, which the bench counts
 * per delivery (kernel-report.ts). One core's computing is core-speed.ts's; the slowest hour yet read no slower
 * there, so what slowed in it has to be told apart here. The ceilings take these once per run
 * (ceilings.ts), in a process of their own (`kernelSpeedApart`), whose CPU is the probe's alone.
 *
 *   bun loadtest/bench/kernel-speed.ts [ms]   # prints the KernelSpeed of `ms` per probe
 */
export interface KernelSpeed {
  /** 8 KiB written then fdatasync'd per second, one thread, in a file of the temp directory (on this machine, the disk Postgres writes its WAL to). */
  flushesPerSec: number;
  /** One-byte TCP round trips per second between two processes over loopback, back to back. */
  loopbackRoundTripsPerSec: number;
  /**
   * CPU (µs, both processes, user + system) per one-byte round trip when 1 ms passes between them,
   * so both sides sleep in epoll each time and are woken (three wake-ups in all, `wakeUpCpuMicros`).
   */
  idleRoundTripCpuMicros: number;
  /**
   * The same CPU divided by the times either process blocked meanwhile (voluntary context switches,
   * from /proc: the client sleeps for its timer and for the answer, the echo for the question), so
   * the price of one wake-up with its event-loop turn, which the bench counts per delivery. Absent
   * where /proc is not.
   */
  wakeUpCpuMicros?: number;
  /** CPU (µs) per page fault: the first write to each page of fresh memory. Absent where /proc is not. */
  pageFaultCpuMicros?: number;
  /** CPU (µs) per system call, the cheapest there is (getppid, called through libc). Absent without libc. */
  syscallCpuMicros?: number;
}

/** Writes and flushes 8 KiB at the start of a temp file as often as it can for `durationMs`. */
export function flushesPerSecond(durationMs: number): number {
  const dir = mkdtempSync(join(tmpdir(), "evently-flush-"));
  const fd = openSync(join(dir, "wal"), "w");
  const page = Buffer.alloc(8192, 1);
  try {
    let count = 0;
    const start = performance.now();
    while (performance.now() - start < durationMs) {
      writeSync(fd, page, 0, page.length, 0);
      fdatasyncSync(fd);
      count++;
    }
    return Math.round((count * 1000) / (performance.now() - start));
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Writes one byte to each page of a fresh `mib` MiB buffer: every write takes a page fault (the
 * memory is mapped but not yet backed). CPU per fault, counted from /proc rather than assumed.
 */
export function pageFaultCpu(mib: number): number | undefined {
  const pages = (mib * 1024 * 1024) / 4096;
  const [faultsBefore, cpuBefore] = [kernelEventsOf("self")?.faults, cpuMicros()];
  const memory = new Uint8Array(new ArrayBuffer(pages * 4096));
  for (let i = 0; i < pages; i++) memory[i * 4096] = 1;
  const [faultsAfter, cpuAfter] = [kernelEventsOf("self")?.faults, cpuMicros()];
  if (faultsBefore === undefined || faultsAfter === undefined || faultsAfter - faultsBefore < pages / 2) return undefined;
  return Math.round(((cpuAfter - cpuBefore) / (faultsAfter - faultsBefore)) * 100) / 100;
}

/** getppid through libc as often as it can for `durationMs`: CPU (µs) per call, or undefined where libc cannot be opened. */
export function syscallCpu(durationMs: number): number | undefined {
  let getppid: () => number;
  try {
    getppid = dlopen(`libc.${suffix}.6`, { getppid: { args: [], returns: FFIType.i32 } }).symbols.getppid;
  } catch {
    return undefined;
  }
  let calls = 0;
  const [start, cpuBefore] = [performance.now(), cpuMicros()];
  while (performance.now() - start < durationMs) {
    for (let i = 0; i < 1000; i++) getppid();
    calls += 1000;
  }
  return Math.round(((cpuMicros() - cpuBefore) / calls) * 1000) / 1000;
}

/** CPU time this process used so far, in µs. */
const cpuMicros = () => {
  const { user, system } = process.cpuUsage();
  return user + system;
};

/**
 * Round trips with an echo server in a child process (this file, `echo`): back to back for
 * `durationMs`, then `idleTrips` of them 1 ms apart, whose CPU both processes report.
 */
export async function loopback(durationMs: number, idleTrips: number): Promise<Omit<KernelSpeed, "flushesPerSec">> {
  const child = Bun.spawn([process.execPath, import.meta.path, "echo"], { stdout: "pipe", stderr: "ignore" });
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  const nextLine = async (): Promise<string> => {
    while (!buffered.includes("\n")) {
      const { value, done } = await lines.read();
      if (done) throw new Error("the echo process ended early");
      buffered += value;
    }
    const at = buffered.indexOf("\n");
    const line = buffered.slice(0, at);
    buffered = buffered.slice(at + 1);
    return line;
  };
  try {
    const port = Number(await nextLine());
    let answered: (() => void) | undefined;
    const socket = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data: () => answered?.() } });
    socket.setNoDelay(true);
    const trip = () =>
      new Promise<void>((resolve) => {
        answered = resolve;
        socket.write("x");
      });
    for (let i = 0; i < 200; i++) await trip();
    let trips = 0;
    const start = performance.now();
    while (performance.now() - start < durationMs) {
      await trip();
      trips++;
    }
    const loopbackRoundTripsPerSec = Math.round((trips * 1000) / (performance.now() - start));
    // The echo reports its CPU and sleeps at each "c": read before and after the idle trips.
    const childReading = async () => {
      socket.write("c");
      const [cpu, sleeps] = (await nextLine()).split(" ").map(Number);
      return { cpu: cpu!, sleeps };
    };
    const own = () => ({ cpu: cpuMicros(), sleeps: kernelEventsOf("self")?.sleeps });
    const [ownBefore, childBefore] = [own(), await childReading()];
    for (let i = 0; i < idleTrips; i++) {
      await Bun.sleep(1);
      await trip();
    }
    const [ownAfter, childAfter] = [own(), await childReading()];
    socket.end();
    const cpu = ownAfter.cpu - ownBefore.cpu + childAfter.cpu - childBefore.cpu;
    const idleRoundTripCpuMicros = Math.round(cpu / idleTrips);
    const sleeps = [ownBefore.sleeps, ownAfter.sleeps, childBefore.sleeps, childAfter.sleeps];
    if (sleeps.some((v) => v === undefined || Number.isNaN(v))) return { loopbackRoundTripsPerSec, idleRoundTripCpuMicros };
    const [a, b, c, d] = sleeps as number[];
    return { loopbackRoundTripsPerSec, idleRoundTripCpuMicros, wakeUpCpuMicros: Math.round(cpu / (b! - a! + d! - c!)) };
  } finally {
    child.kill();
    await child.exited;
  }
}

/** Every probe above, `durationMs` each (the idle trips take about as long). */
export async function kernelSpeed(durationMs: number): Promise<KernelSpeed> {
  const flushesPerSec = flushesPerSecond(durationMs);
  const speed: KernelSpeed = { flushesPerSec, ...(await loopback(durationMs, Math.max(100, Math.round(durationMs / 1.2)))) };
  const pageFaultCpuMicros = pageFaultCpu(64);
  const syscallCpuMicros = syscallCpu(Math.min(durationMs, 500));
  return { ...speed, ...(pageFaultCpuMicros ? { pageFaultCpuMicros } : {}), ...(syscallCpuMicros ? { syscallCpuMicros } : {}) };
}

/** `kernelSpeed` in a fresh process; null when it failed. */
export function kernelSpeedApart(durationMs: number): KernelSpeed | null {
  return runApart<KernelSpeed>(import.meta.path, [String(durationMs)]);
}

if (import.meta.main && Bun.argv[2] === "echo") {
  // Echoes each byte but "c", which it answers with its own CPU time so far (µs) and sleeps on stdout.
  const server = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(socket) {
        socket.setNoDelay(true);
      },
      data(socket, data) {
        if (data[0] === 0x63) console.log(`${cpuMicros()} ${kernelEventsOf("self")?.sleeps ?? "NaN"}`);
        else socket.write(data);
      },
    },
  });
  console.log(server.port);
} else if (import.meta.main) {
  console.log(JSON.stringify(await kernelSpeed(Number(Bun.argv[2] ?? 1000))));
}
