import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { readPort, samplePayload } from "./ceilings.ts";
import { runClosedLoop } from "./generator.ts";
import { sampleCpu } from "./observe.ts";
import { createVia, producerKey, startStack, type Stack } from "./stack.ts";

/**
 * The API process's own CPU per accepted single event (POST /events), apart from the rest of the
 * pipeline: what the bench's burst-single phase reports as "api" CPU per event, measured alone and
 * repeatably so that changes to the request path can be compared.
 *
 * Each target is a server in its own process; this process drives it with `--requests` POST /events
 * at `--concurrency` in flight (a closed loop, as burst-single does) and reads the server's CPU time
 * (user + system, from /proc) over them. Targets:
 * - `api`: the api role alone (no worker or dispatcher: nothing is delivered) on a scratch database,
 *   with an application key, one endpoint and a route, as the bench sets up;
 * - `api=<dir>`: the same from another checkout of the repository, for A/B comparisons;
 * - `bare`: Bun.serve with a trivial JSON handler (echo-server.ts), the floor the runtime sets;
 * - `elysia`: one Elysia route doing the same (echo-server.ts elysia), the floor the framework sets.
 * Rounds interleave the targets (A, B, A, B…) so drift on the machine falls on all of them alike.
 *
 * `bun loadtest/bench/api-cpu.ts [--targets=api,bare,elysia] [--rounds=3] [--requests=20000]
 *  [--concurrency=64] [--transport=rabbitmq|postgres] [--out=file.json] [--cpu-prof=dir]`
 */
const { values: args } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    targets: { type: "string", default: "api,bare,elysia" },
    rounds: { type: "string", default: "3" },
    requests: { type: "string", default: "20000" },
    concurrency: { type: "string", default: "64" },
    transport: { type: "string", default: "rabbitmq" },
    out: { type: "string" },
    /** Write a CPU profile of each api target into this directory, sampled every 100 µs. */
    "cpu-prof": { type: "string" },
  },
});
const rounds = Number(args.rounds);
const requests = Number(args.requests);
const concurrency = Number(args.concurrency);
const transport = args.transport === "postgres" ? "postgres" : "rabbitmq";
const log = (m: string) => console.error(`[api-cpu] ${m}`);

interface Target {
  name: string;
  url: string;
  pid: number;
  headers: Record<string, string>;
  /** The scratch database, for telling its Postgres backends from others. */
  database?: string;
  stop(): Promise<void>;
}

/** The api role of the checkout at `root`, set up as the bench sets it up: one key, endpoint and route. */
async function startApi(name: string, root: string | undefined): Promise<Target> {
  // Through the environment, as the stack's own option cannot set the interval; `migrate` writes one too.
  const profile = args["cpu-prof"] ? { env: { BUN_OPTIONS: `--cpu-prof --cpu-prof-interval=100 --cpu-prof-dir=${resolve(args["cpu-prof"])}` } } : {};
  const stack: Stack = await startStack({ transport, roles: ["api"], repoRoot: root, label: "apicpu", log, ...profile });
  try {
    // A revision before applications (A/B runs) has no /applications and no keys: any key passes.
    const key = await producerKey(stack, "api-cpu").catch((err: Error) => {
      if (!err.message.includes(": 404")) throw err;
      return stack.env.ADMIN_API_KEY!;
    });
    // Nothing delivers in this run: the endpoint only gives each event a job, as in the bench.
    const endpoint = await createVia(stack, "/endpoints", { url: "http://127.0.0.1:9/hooks/api-cpu" }, key);
    await createVia(stack, "/routes", { endpointId: endpoint.id, eventType: "bench.*" }, key);
    return {
      name,
      url: `${stack.apiUrl}/events`,
      pid: stack.pids.api!,
      headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
      database: new URL(stack.env.DATABASE_URL!).pathname.slice(1),
      stop: () => stack.stop(),
    };
  } catch (err) {
    await stack.stop();
    throw err;
  }
}

/** A floor server (echo-server.ts, bare or through Elysia) in its own process. */
async function startFloor(name: "bare" | "elysia"): Promise<Target> {
  const child = Bun.spawn([process.execPath, join(import.meta.dir, "echo-server.ts"), name], { stdin: "pipe", stdout: "pipe", stderr: "inherit" });
  const port = await readPort(child.stdout);
  return {
    name,
    url: `http://127.0.0.1:${port}/events`,
    pid: child.pid,
    headers: { "content-type": "application/json" },
    stop: async () => {
      child.kill("SIGTERM");
      await child.exited;
    },
  };
}

function startTarget(spec: string): Promise<Target> {
  if (spec === "bare" || spec === "elysia") return startFloor(spec);
  if (spec === "api") return startApi(spec, undefined);
  if (spec.startsWith("api=")) return startApi(spec, resolve(spec.slice(4)));
  throw new Error(`unknown target ${spec}: api, api=<checkout>, bare or elysia`);
}

interface Measurement {
  target: string;
  round: number;
  requests: number;
  errors: number;
  requestsPerSecond: number;
  /** CPU µs per request (user + system) of the server process, the Postgres backends of its database, and this client. */
  serverUs: number;
  postgresUs: number;
  clientUs: number;
}

const body = JSON.stringify({ type: "bench.order.paid", data: JSON.parse(samplePayload(1)) });

async function drive(t: Target, count: number): Promise<{ ok: number; errors: number; okPerSecond: number; errorKinds: Record<string, number> }> {
  const send = async () => {
    const res = await fetch(t.url, { method: "POST", headers: t.headers, body });
    const text = await res.text();
    if (res.status !== 202) throw new Error(`HTTP ${res.status} ${text.slice(0, 80)}`);
  };
  return runClosedLoop({ concurrency, count, send });
}

async function measure(t: Target, round: number): Promise<Measurement> {
  const a = sampleCpu({ server: t.pid }, t.database);
  const load = await drive(t, requests);
  const b = sampleCpu({ server: t.pid }, t.database);
  // Raw differences: cpuBetween rounds to whole hundredths of a second.
  const us = (group: string) => Math.round((((b.groups[group] ?? 0) - (a.groups[group] ?? 0)) * 1e6) / Math.max(1, load.ok));
  if (load.errors > 0) log(`${t.name}: ${load.errors} errors: ${JSON.stringify(load.errorKinds)}`);
  return {
    target: t.name,
    round,
    requests: load.ok,
    errors: load.errors,
    requestsPerSecond: load.okPerSecond,
    serverUs: us("server"),
    postgresUs: us("postgres"),
    clientUs: us("bench"),
  };
}

const targets: Target[] = [];
const results: Measurement[] = [];
try {
  for (const spec of args.targets.split(",").filter(Boolean)) targets.push(await startTarget(spec));
  // JIT, pools, keep-alive sockets and the key cache warm before anything is counted.
  for (const t of targets) await drive(t, Math.min(5000, requests));
  for (let round = 1; round <= rounds; round++) {
    for (const t of round % 2 ? targets : [...targets].reverse()) {
      const m = await measure(t, round);
      results.push(m);
      log(`round ${round} ${m.target}: ${m.requestsPerSecond} req/s, server ${m.serverUs} µs/req, postgres ${m.postgresUs}, client ${m.clientUs}`);
    }
  }
} finally {
  for (const t of targets) await t.stop().catch((err) => log(`stopping ${t.name}: ${(err as Error).message}`));
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] ?? 0;
const summary = [...new Set(results.map((r) => r.target))].map((target) => {
  const rs = results.filter((r) => r.target === target);
  return {
    target,
    serverUs: rs.map((r) => r.serverUs),
    medianServerUs: median(rs.map((r) => r.serverUs)),
    medianPostgresUs: median(rs.map((r) => r.postgresUs)),
    medianClientUs: median(rs.map((r) => r.clientUs)),
    medianRequestsPerSecond: median(rs.map((r) => r.requestsPerSecond)),
  };
});
console.table(summary.map(({ serverUs, ...s }) => ({ ...s, serverUs: serverUs.join(" ") })));
if (args.out) {
  mkdirSync(resolve(args.out, ".."), { recursive: true });
  writeFileSync(args.out, JSON.stringify({ at: new Date().toISOString(), transport, requests, concurrency, rounds, results, summary }, null, 2));
  log(`wrote ${args.out}`);
}
