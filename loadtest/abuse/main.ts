import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import postgres from "postgres";
import { apiOperations } from "../../services/api/app.ts";
import { loadConfig } from "../../services/core/config/index.ts";
import { startStack, type Stack } from "../bench/stack.ts";
import { createApp, type Context } from "./context.ts";
import { bodyCases } from "./groups/bodies.ts";
import { headerCases, queryAndPathCases } from "./groups/inputs.ts";
import { isolationCases } from "./groups/isolation.ts";
import { keyCases } from "./groups/keys.ts";
import { memoryCases, type MemoryReport } from "./groups/memory.ts";
import { protocolCases } from "./groups/protocol.ts";
import { ssrfCases } from "./groups/ssrf.ts";
import { Suite, type CaseResult } from "./probe.ts";
import { startReceivers, type Receivers } from "./receivers.ts";

/**
 * `npm run abuse`: a table of hostile requests against an Evently installation of its own (API
 * and worker as child processes, as deployed, on a scratch database that is dropped afterwards),
 * with loopback receivers only: SSRF in every spelling, oversized and deeply nested bodies, invalid
 * UTF-8, header injection, bad keys, another application's ids on every route, malformed HTTP
 * framing, and eight concurrent batches (28 MiB, then the largest the API takes) with the API's RSS
 * read from /proc.
 *
 * Prints a line per group, then the table and `tried=N refused=N wrongly_accepted=N 5xx=N`; writes
 * every case (what was sent, what came back, the verdict) to loadtest/results/abuse-<time>.json.
 * Exits 1 on any case wrongly accepted or answered with a 5xx, any hit on a decoy receiver, or a
 * failed control (a request that must succeed, without which a refusal proves nothing).
 *
 * The installation may deliver only to 127.0.0.1 (DELIVERY_ALLOWED_CIDRS=127.0.0.1/32), where the
 * suite's receiver listens; decoys listen on 127.0.0.2 and [::1] at the same port. No case names an
 * address beyond this machine with a route to it (receivers.ts, groups/ssrf.ts).
 */
const OUT_DIR = join(import.meta.dir, "../results");
/** The whole run is bounded: a hang anywhere stops it, the stack is removed, and the run fails. */
const WATCHDOG_MS = 150_000;

const t0 = performance.now();
const log = (msg: string) => console.log(`[abuse ${((performance.now() - t0) / 1000).toFixed(1).padStart(5)}s] ${msg}`);
const startedAt = new Date().toISOString();

function revision(): string {
  const r = Bun.spawnSync(["git", "describe", "--always", "--dirty"], { cwd: import.meta.dir, stderr: "ignore" });
  return r.exitCode === 0 ? r.stdout.toString().trim() : "unknown";
}

let stack: Stack | undefined;
let receivers: Receivers | undefined;
let sql: postgres.Sql | undefined;
const teardown = async () => {
  await sql?.end({ timeout: 2 }).catch(() => {});
  await stack?.stop().catch((err) => log(`stack stop: ${(err as Error).message}`));
  await receivers?.stop().catch(() => {});
};
const watchdog = setTimeout(async () => {
  log(`FAILED: the suite ran past ${WATCHDOG_MS / 1000} s; stopping`);
  await teardown();
  process.exit(1);
}, WATCHDOG_MS);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, async () => {
    await teardown();
    process.exit(130);
  });
}

process.on("unhandledRejection", async (err) => {
  log(`FAILED: ${(err as Error).stack ?? String(err)}`);
  await teardown();
  process.exit(1);
});

receivers = await startReceivers();
log(`receivers: ${receivers.url} (allowed), decoys ${receivers.decoys.join(", ")}${receivers.unavailable.length ? `; not available: ${receivers.unavailable.join("; ")}` : ""}`);
stack = await startStack({
  label: "abuse",
  transport: "postgres",
  roles: ["api", "worker"],
  log,
  env: {
    // The SSRF guard on, with one exception: the suite's own receiver.
    DELIVERY_ALLOW_PRIVATE_NETWORKS: "false",
    DELIVERY_ALLOWED_CIDRS: "127.0.0.1/32",
    // Fixtures need failed jobs quickly: one retry right away, then failed.
    RETRY_SCHEDULE: "10ms",
    RETRY_JITTER: "0",
    QUEUE_POLL_INTERVAL_MS: "100",
  },
});
const config = loadConfig({ ...process.env, ...stack.env });
sql = postgres(stack.env.DATABASE_URL!, { max: 2, onnotice: () => {} });
const suite = new Suite(stack.apiUrl, stack.pids.api!, join(stack.logDir, "api.log"));
const adminKey = stack.env.ADMIN_API_KEY!;
const table = apiOperations({
  config,
  sql: null as never, // building the table runs no query
  ingest: null as never,
  readiness: async () => ({}),
  authenticate: async () => null,
  rateLimit: { take: () => ({ ok: true }) },
});
const ctx: Context = {
  suite,
  receivers,
  adminKey,
  a: await createApp(suite, adminKey, "abuse A"),
  b: await createApp(suite, adminKey, "abuse B"),
  sql,
  config,
  table,
  createApp: (name, keyBody) => createApp(suite, adminKey, name, keyBody),
  log,
};
log(`API ${stack.apiUrl} (pid ${stack.pids.api}), worker pid ${stack.pids.worker}; applications A ${ctx.a.id}, B ${ctx.b.id}`);

interface GroupRun {
  group: string;
  seconds: number;
  error?: string;
}
const groups: [string, (ctx: Context) => Promise<unknown>][] = [
  // First, so "before" is the API as started and the peak is this attack's.
  ["memory", memoryCases],
  ["ssrf", ssrfCases],
  ["keys", keyCases],
  ["cross-application", isolationCases],
  ["bodies", bodyCases],
  ["header injection", headerCases],
  ["query and path", queryAndPathCases],
  ["http framing", protocolCases],
];
const runs: GroupRun[] = [];
let memory: MemoryReport | undefined;
for (const [group, run] of groups) {
  const started = performance.now();
  let error: string | undefined;
  try {
    const out = await run(ctx);
    if (group === "memory") memory = out as MemoryReport;
  } catch (err) {
    // A group that cannot finish is a failed control, not a silent gap.
    error = (err as Error).stack ?? String(err);
    suite.control(group, "the group ran to its end", false, error.split("\n").slice(0, 3).join(" "));
  }
  const seconds = (performance.now() - started) / 1000;
  runs.push({ group, seconds, error });
  const t = tally(suite.results.filter((r) => r.group === group));
  const c = suite.controls.filter((r) => r.group === group);
  log(
    `${group.padEnd(18)} tried=${t.tried} refused=${t.refused} wrongly_accepted=${t.wrongly} 5xx=${t.server}` +
      ` not_as_documented=${t.undocumented} controls=${c.filter((x) => x.ok).length}/${c.length} (${seconds.toFixed(1)} s)`,
  );
  if (!suite.apiAlive()) {
    log(`the API process (pid ${suite.apiPid}) is gone after ${group}; see ${stack.logDir}/api.log`);
    break;
  }
}

// A bypass anywhere in the run shows as a hit here; give a late delivery a moment to land.
await Bun.sleep(500);
const bypassHits = receivers.bypassHits();
const apiAliveAtEnd = suite.apiAlive();
const logDir = stack.logDir;
clearTimeout(watchdog);
await teardown();

function tally(results: CaseResult[]) {
  return {
    tried: results.length,
    refused: results.filter((r) => r.verdict === "refused").length,
    wrongly: results.filter((r) => r.verdict === "wrongly_accepted").length,
    server: results.filter((r) => r.verdict === "5xx").length,
    undocumented: results.filter((r) => r.verdict === "refused" && !r.asDocumented).length,
  };
}

const total = tally(suite.results);
const failedControls = suite.controls.filter((c) => !c.ok);
const failures = [
  ...suite.results.filter((r) => r.verdict !== "refused").map((r) => `${r.verdict}: [${r.group}] ${r.name}`),
  ...bypassHits.map((h) => `decoy hit: ${h.method} ${h.listener}${h.path}`),
  ...failedControls.map((c) => `control failed: [${c.group}] ${c.name}: ${c.detail}`),
  ...(apiAliveAtEnd ? [] : ["the API process died during the run"]),
];

console.log("");
const header = ["group", "tried", "refused", "wrongly_accepted", "5xx", "not_as_documented", "controls"];
const rows = groups.map(([group]) => {
  const t = tally(suite.results.filter((r) => r.group === group));
  const c = suite.controls.filter((x) => x.group === group);
  return [group, t.tried, t.refused, t.wrongly, t.server, t.undocumented, `${c.filter((x) => x.ok).length}/${c.length}`].map(String);
});
rows.push(["total", total.tried, total.refused, total.wrongly, total.server, total.undocumented, `${suite.controls.length - failedControls.length}/${suite.controls.length}`].map(String));
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
console.log(line(header));
for (const r of rows) console.log(line(r));
console.log("");

for (const r of memory?.rounds ?? []) {
  console.log(
    `api RSS under ${r.bodies} × ${(r.bodyBytes / 1024 / 1024).toFixed(1)} MiB /events/batch (${r.name}): ` +
      `${r.rssBeforeMiB} MiB before, ${r.peakMiB} MiB peak (VmHWM${r.peakIsRoundOnly ? "" : ", process lifetime"}; sampled ${r.sampledPeakMiB}), ` +
      `${r.rssAfterMiB} MiB 2 s after; answers ${Object.entries(r.answers).map(([k, n]) => `${n}× ${k}`).join(", ")}`,
  );
}
if (memory && memory.rounds.length > 0) {
  const start = memory.rounds[0]!.rssBeforeMiB;
  const peak = Math.max(...memory.rounds.map((r) => r.peakMiB));
  const bound = memory.maxBodyBytesInFlight / 1024 / 1024;
  console.log(
    `api RSS over the memory group: ${start} MiB at start, ${peak} MiB peak: +${(peak - start).toFixed(1)} MiB, ` +
      `${((peak - start) / bound).toFixed(1)} × MAX_BODY_BYTES_IN_FLIGHT (${bound} MiB; batch body limit ${(memory.batchBodyLimitBytes / 1024 / 1024).toFixed(1)} MiB)`,
  );
}
console.log(
  `decoys: ${[...receivers.decoys, `127.0.0.1:${receivers.port}/ssrf/*`]
    .map((d) => `${d} ${bypassHits.filter((h) => (d.includes("/ssrf/") ? h.listener === `127.0.0.1:${receivers!.port}` : h.listener === d)).length} hits`)
    .join(", ")}${receivers.unavailable.length ? ` (not bound: ${receivers.unavailable.join("; ")})` : ""}`,
);
for (const n of suite.notes) console.log(`note [${n.group}]: ${n.text}`);

const undocumented = suite.results.filter((r) => r.verdict === "refused" && !r.asDocumented);
if (undocumented.length > 0) {
  console.log(`\nrefused, but not as documented (${undocumented.length}; not a failure):`);
  for (const r of undocumented) console.log(`  [${r.group}] ${r.name}: expected ${r.expected}, got ${r.got}${r.note ? ` (${r.note})` : ""}`);
}
const bad = suite.results.filter((r) => r.verdict !== "refused");
if (bad.length > 0 || failedControls.length > 0 || bypassHits.length > 0) {
  console.log("\nFAILURES:");
  for (const r of bad) {
    console.log(`  ${r.verdict.toUpperCase()} [${r.group}] ${r.name}`);
    console.log(`    sent:     ${r.sent.length > 300 ? `${r.sent.slice(0, 300)}…` : r.sent}`);
    console.log(`    expected: ${r.expected}`);
    console.log(`    got:      ${r.got}${r.requestId ? ` (x-request-id ${r.requestId})` : ""}`);
    if (r.note) console.log(`    note:     ${r.note}`);
    if (r.apiLog) console.log(`    api log:  ${r.apiLog.slice(0, 600)}`);
  }
  for (const c of failedControls) console.log(`  CONTROL FAILED [${c.group}] ${c.name}: ${c.detail}`);
  for (const h of bypassHits) console.log(`  DECOY HIT ${h.method} ${h.listener}${h.path}`);
  console.log(`  (role logs: ${logDir})`);
}

const summaryLine = `tried=${total.tried} refused=${total.refused} wrongly_accepted=${total.wrongly} 5xx=${total.server}`;
const report = {
  startedAt,
  finishedAt: new Date().toISOString(),
  revision: revision(),
  seconds: Math.round((performance.now() - t0) / 100) / 10,
  summary: { tried: total.tried, refused: total.refused, wronglyAccepted: total.wrongly, serverErrors: total.server, notAsDocumented: total.undocumented },
  summaryLine,
  passed: failures.length === 0,
  failures,
  settings: {
    DELIVERY_ALLOWED_CIDRS: "127.0.0.1/32",
    MAX_PAYLOAD_BYTES: config.http.MAX_PAYLOAD_BYTES,
    MAX_BATCH_EVENTS: config.http.MAX_BATCH_EVENTS,
    MAX_BODY_BYTES_IN_FLIGHT: config.http.MAX_BODY_BYTES_IN_FLIGHT,
  },
  memory,
  receivers: { allowed: receivers.url, decoys: receivers.decoys, unavailable: receivers.unavailable, bypassHits },
  inboundSignatures: "not tested: Evently verifies no inbound signatures yet",
  groups: runs,
  controls: suite.controls,
  notes: suite.notes,
  cases: suite.results,
};
mkdirSync(OUT_DIR, { recursive: true });
const file = join(OUT_DIR, `abuse-${startedAt.replace(/[:.]/g, "-")}.json`);
writeFileSync(file, JSON.stringify(report, null, 2) + "\n");
console.log(`\nwrote ${file}`);
console.log(failures.length === 0 ? "PASSED" : `FAILED: ${failures.length} problem(s) listed above`);
console.log(summaryLine);
process.exit(failures.length === 0 ? 0 : 1);
