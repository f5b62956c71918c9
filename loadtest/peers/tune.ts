import { parseArgs } from "node:util";
import { peerPhases, runPeer, type PeerRun } from "../bench/peers.ts";
import { isPeerName, PEER_NAMES } from "./peer.ts";

/**
 * `npx bun loadtest/peers/tune.ts --peer=bullmq --vary=concurrency=64,128,256,512 [--vary=groupCommit=true,false] [--set=name=value] [--seconds=6]`
 *
 * How the peers' defaults were chosen: one short run of the bench's peer phases per combination of
 * the varied settings (warm-up, latency at 1,000 events/s, then the ramp until a step does not keep
 * up; `--seconds` per phase), each on a fresh queue, then a table of the figures the report
 * compares. Short runs on a shared machine are noisy: run a candidate twice before believing a
 * difference of less than a fifth.
 */
const { values: args } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    peer: { type: "string" },
    vary: { type: "string", multiple: true, default: [] },
    set: { type: "string", multiple: true, default: [] },
    seconds: { type: "string", default: "6" },
  },
});
const peer = args.peer ?? "";
if (!isPeerName(peer)) throw new Error(`--peer must be one of ${PEER_NAMES.join(", ")}`);
const seconds = Number(args.seconds);
if (!(seconds >= 2)) throw new Error("--seconds must be at least 2");
const pair = (kv: string) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)] as const;
const fixed = Object.fromEntries(args.set!.map(pair));
// Every combination of the varied values, each with the fixed ones.
const combinations = args.vary!.map(pair).reduce<Record<string, string>[]>(
  (acc, [name, values]) => acc.flatMap((c) => values.split(",").map((v) => ({ ...c, [name]: v }))),
  [{}],
);
const log = (msg: string) => console.log(`[tune ${new Date().toISOString().slice(11, 19)}] ${msg}`);

const { steady, ramp } = peerPhases(false, 1);
const shortened = (specs: typeof steady) => specs.map((s) => ({ ...s, durationMs: s.group === "warmup" ? 3000 : seconds * 1000 }));
const results: Array<{ varied: Record<string, string>; run: PeerRun }> = [];
for (const varied of combinations) {
  log(`--- ${peer} ${JSON.stringify(varied)}`);
  const run = await runPeer(peer, { phases: { steady: shortened(steady), ramp: shortened(ramp) }, drainTimeoutMs: 60_000, log, settings: { ...fixed, ...varied } });
  results.push({ varied, run });
}

const latency = (r: PeerRun) => r.summary.latency[0];
const cpuAt = (r: PeerRun, phase: string | undefined) => r.summary.cpuPerDelivery.find((c) => c.phase === phase)?.stack.toFixed(2) ?? "–";
console.log(`\n${peer}, fixed ${JSON.stringify(fixed)}, ${seconds} s per phase\n`);
console.log("| Settings | Latency p50 / p95 / p99 at 1,000/s (ms) | Highest ramp step kept up | CPU per delivery at 1,000/s, then at that step (core·ms) | Passed |");
console.log("| --- | --- | --- | --- | --- |");
for (const { varied, run } of results) {
  const l = latency(run);
  const kept = run.summary.sustained;
  console.log(
    `| ${Object.entries(varied).map(([k, v]) => `${k}=${v}`).join(", ")} | ${l ? `${l.p50} / ${l.p95} / ${l.p99}` : "–"} | ` +
      `${kept ? `${kept.eventsPerSecond}/s (${kept.phase})` : "none"} | ${cpuAt(run, l?.phase)}, ${cpuAt(run, kept?.phase)} | ${run.passed ? "yes" : run.failures.join("; ")} |`,
  );
}
process.exit(0);
