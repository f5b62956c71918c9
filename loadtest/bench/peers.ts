import { generateSecret } from "../../services/core/signing/index.ts";
import { PEERS } from "../peers/drivers.ts";
import { startPeer, type RunningPeer } from "../peers/launch.ts";
import { isPeerName, PEER_NAMES, settingsOf, type PeerName, type PeerSettings } from "../peers/peer.ts";
import { startSinkProcess, type SinkProcess } from "../sink/process.ts";
import { samplePayload } from "./ceilings.ts";
import { memoryOf } from "./observe.ts";
import { defaultPhases, rampSteps, runPhase, type PhaseResult, type PhaseSpec, type PhaseTarget } from "./phases.ts";
import { summarise, type Memory, type Summary } from "./report.ts";
import { autovacuumStandIn } from "./stack.ts";

/**
 * The peers in the benchmark (loadtest/peers): after Evently's transports, each peer runs through
 * the same warm-up, first latency phase (latency-1000 in a full run) and ramp, with the same
 * generator and specs (runPhase) and a sink of its own that verifies the same signatures. Its
 * phases are checked as Evently's are: every accepted event delivered, once, validly signed.
 */
export interface PeerRun {
  peer: PeerName;
  /** The queue and how the peer uses it. */
  description: string;
  /** The settings it ran with: its tuned defaults unless a run overrode them. */
  settings: PeerSettings;
  /** Its own processes (producer, worker), by the names the CPU figures use. */
  processes: string[];
  /** Where its queue lives: Postgres or Redis. */
  queueServer: string;
  notes: string[];
  phases: PhaseResult[];
  /** Peak and final RSS of the producer and worker processes. */
  memory: Memory;
  summary: Summary;
  /** What Evently gives that this peer does not. */
  doesNotGive: string[];
  passed: boolean;
  failures: string[];
}

/** `--peers=graphile,bullmq|none`; absent: both in a full run, none in a quick one. */
export function parsePeersChoice(option: string | undefined, quick: boolean): PeerName[] {
  if (option === undefined) return quick ? [] : [...PEER_NAMES];
  if (option === "none") return [];
  const names = option.split(",");
  const unknown = names.filter((name) => !isPeerName(name));
  if (unknown.length) throw new Error(`--peers takes ${PEER_NAMES.join(", ")} or none, not ${unknown.join(", ")}`);
  return names as PeerName[];
}

/** What a peer runs: the warm-up and the first latency phase (`steady`), then the ramp. */
export function peerPhases(quick: boolean, scale: number): { steady: PhaseSpec[]; ramp: PhaseSpec[] } {
  const phases = defaultPhases(quick, scale);
  return { steady: [phases.find((p) => p.group === "warmup")!, phases.find((p) => p.group === "latency")!], ramp: rampSteps(quick, scale) };
}

/** The same verdict as Evently's phases: no event lost, none delivered twice (no fault is injected), no bad signature. */
function phaseFailures(result: PhaseResult): string[] {
  const d = result.delivery;
  const name = result.spec.name;
  return [
    ...(d.complete ? [] : [`${name}: ${d.unique} of ${d.expected} accepted events delivered before the drain timeout`]),
    ...(d.duplicates > 0 ? [`${name}: ${d.duplicates} events delivered more than once`] : []),
    ...(d.invalid > 0 ? [`${name}: ${d.invalid} deliveries failed signature checks`] : []),
    ...(result.publish.eventsAccepted === 0 ? [`${name}: no event was accepted (${JSON.stringify(result.publish.errorKinds)})`] : []),
  ];
}

export interface PeerRunOptions {
  phases: { steady: PhaseSpec[]; ramp: PhaseSpec[] };
  drainTimeoutMs: number;
  log: (msg: string) => void;
  /** Overrides of the peer's tuned settings (tune.ts tries several). */
  settings?: Record<string, string | number | boolean>;
}

/** One peer through its phases. Only a setting it does not have throws; any other failure is recorded in the run. */
export async function runPeer(peer: PeerName, options: PeerRunOptions): Promise<PeerRun> {
  const { log } = options;
  const driver = PEERS[peer];
  const settings = settingsOf(driver, options.settings);
  const secret = generateSecret();
  const phases: PhaseResult[] = [];
  const failures: string[] = [];
  const notes: string[] = [];
  const memory: Memory = {};
  let running: RunningPeer | undefined;
  let sinkProcess: SinkProcess | undefined;
  try {
    const sink = (sinkProcess = await startSinkProcess());
    await sink.addSecret(secret, "bench");
    running = await startPeer({ peer, endpoints: [{ id: "ep_bench", url: `${sink.url}/hooks/bench`, secret }], settings, log });
    log(`=== peer ${peer}: ${JSON.stringify(settings)}`);
    const queue = running.queue;
    const vacuum = queue.vacuumTables ? await autovacuumStandIn(queue.queueUrl, queue.vacuumTables) : undefined;
    const target: PhaseTarget = {
      transport: peer,
      apiUrl: running.url,
      sink,
      eventType: "bench.order.paid",
      fanout: 1,
      payload: JSON.parse(samplePayload(1)),
      roleUrls: {},
      pids: { ...running.pids, sink: sink.pid },
      database: queue.database,
    };
    const run = async (spec: PhaseSpec) => {
      // graphile-worker's tables get autovacuum's stand-in exactly as Evently's do (see stack.ts).
      if (await vacuum?.ifOff()) log("autovacuum is off on this server: ran VACUUM ANALYZE before the phase, as autovacuum would");
      let vacuums = 0;
      const stopVacuums = vacuum?.periodically(() => vacuums++);
      const result = await runPhase(target, spec, options.drainTimeoutMs, log).finally(stopVacuums);
      if (vacuums > 0) notes.push(`\`${spec.name}\` lasted long enough for ${vacuums} VACUUM ANALYZE during the phase (autovacuum's stand-in).`);
      phases.push(result);
      failures.push(...phaseFailures(result));
      return result;
    };
    for (const spec of options.phases.steady) await run(spec);
    for (const spec of options.phases.ramp) {
      if (!(await run(spec)).keptUp) {
        log(`ramp: stopped after ${spec.name}, which did not keep up`);
        break;
      }
    }
    for (const role of ["producer", "worker"]) {
      const pid = running.pids[role];
      const m = pid ? memoryOf(pid) : undefined;
      if (m) memory[role] = m;
    }
  } catch (err) {
    failures.push(`run aborted: ${(err as Error).message}`);
  } finally {
    await sinkProcess?.stop();
    await running?.stop();
  }
  const left = await running?.queue.leftovers().catch(() => 0);
  if (left) failures.push(`${left} of the run's databases or keys were left on the server`);
  const passed = failures.length === 0;
  log(`=== peer ${peer}: ${passed ? "every accepted event was delivered once" : `FAILED:\n  ${failures.join("\n  ")}`}`);
  return {
    peer,
    description: driver.summary,
    settings,
    processes: ["producer", "worker"],
    queueServer: driver.queueServer,
    notes,
    phases,
    memory,
    summary: summarise(peer, phases, null),
    doesNotGive: driver.doesNotGive,
    passed,
    failures,
  };
}

export interface PeersOptions {
  quick: boolean;
  scale: number;
  /** --phases: only these phases and ramp steps, by name. */
  chosen: (spec: PhaseSpec) => boolean;
  drainTimeoutMs: number;
  log: (msg: string) => void;
}

/** Each peer named, one after the other, through its phases. */
export async function runPeers(peers: PeerName[], o: PeersOptions): Promise<PeerRun[]> {
  const { steady, ramp } = peerPhases(o.quick, o.scale);
  const phases = { steady: steady.filter(o.chosen), ramp: ramp.filter(o.chosen) };
  if (!phases.steady.length && !phases.ramp.length) return [];
  const runs: PeerRun[] = [];
  for (const peer of peers) runs.push(await runPeer(peer, { phases, drainTimeoutMs: o.drainTimeoutMs, log: o.log }));
  return runs;
}
