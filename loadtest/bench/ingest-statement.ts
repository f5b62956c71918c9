import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import postgres from "postgres";
import { samplePayload } from "./ceilings.ts";
import { sampleCpu } from "./observe.ts";

/**
 * The ingest statement alone (core/events/sql.ts `insertEventsWithJobs`): Postgres CPU per event
 * for groups of single events as group commit makes them, without HTTP, the API or a queue. For
 * judging a change to the statement or the schema under it, where the bench's phases are too
 * noisy to show a few microseconds per event.
 *
 * Each target is a checkout of the repository: its own schema (migrated by its own `migrate` into a
 * template database) and its own statement. Every measurement runs on a fresh copy of the template
 * with one endpoint routed `bench.*`: `--warmup` groups (WARMUP_MIN_EVENTS at least), ANALYZE, then
 * `--events` in groups of each `--groups` size, `--in-flight` statements at once (as
 * INGEST_GROUP_CONCURRENCY) on connections in the target's INGEST_SESSION, and reads the CPU of
 * that database's backends from /proc. `--setup` is SQL run on the copy before the warm-up (more
 * routes, a history of rows); it must suit every target's schema. Rounds interleave the
 * targets. Postgres must be reachable as DATABASE_URL's server (default postgres@127.0.0.1).
 *
 * `bun loadtest/bench/ingest-statement.ts [--targets=.,../other-checkout] [--groups=1,14,64]
 *  [--events=42000] [--in-flight=2] [--rounds=2] [--warmup=200] [--setup=SQL] [--claim=N] [--out=file.json]`
 *
 * `--claim=N`: each statement claims its jobs for a consumer with room for N (what one process,
 * role `all`, asks of it: `claimFor`), instead of making them for any worker to take.
 */
const { values: args } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    targets: { type: "string", default: "." },
    groups: { type: "string", default: "1,14,64" },
    events: { type: "string", default: "42000" },
    "in-flight": { type: "string", default: "2" },
    rounds: { type: "string", default: "2" },
    warmup: { type: "string", default: "200" },
    setup: { type: "string", default: "" },
    claim: { type: "string", default: "0" },
    out: { type: "string" },
  },
});
const log = (m: string) => console.error(`[ingest-statement] ${m}`);
const server = new URL(process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres");
const urlOf = (database: string) => Object.assign(new URL(server), { pathname: `/${database}` }).toString();
const admin = postgres(urlOf("postgres"), { max: 1, onnotice: () => {} });
const APP = "app_00000000000000000000000000000000";
const data = samplePayload(1);

interface Target {
  root: string;
  template: string;
  /** The target's INGEST_SESSION: the settings of the connections the API runs the statement on. */
  session: Record<string, string>;
  insert: (sql: postgres.Sql, rows: object[], graceMs: number, notifyChannel: string | null, claimFor: { maxJobs: number; leaseMs: number } | null) => Promise<unknown>;
}

async function prepare(spec: string, i: number): Promise<Target> {
  const root = resolve(spec);
  const template = `evently_stmt_${process.pid}_${i}`;
  await admin.unsafe(`create database ${template}`);
  const migrate = Bun.spawn([process.execPath, join(root, "services/main.ts"), "migrate"], {
    cwd: root,
    env: { ...process.env, DATABASE_URL: urlOf(template) },
    stdout: "ignore",
    stderr: "pipe",
  });
  if ((await migrate.exited) !== 0) throw new Error(`migrate in ${root}: ${await new Response(migrate.stderr).text()}`);
  const sql = postgres(urlOf(template), { max: 1, onnotice: () => {} });
  // A schema from before applications has no app_id columns.
  const [tenanted] = await sql`select 1 from information_schema.columns where table_name = 'endpoints' and column_name = 'app_id'`;
  const app = tenanted ? { app_id: APP } : {};
  await sql`insert into endpoints ${sql({ id: "ep_stmt", url: "http://127.0.0.1:9/stmt", secret: "whsec_stmt", ...app })}`;
  await sql`insert into routes ${sql({ id: "rt_stmt", endpoint_id: "ep_stmt", event_type: "bench.*", ...app })}`;
  await sql.end();
  const module = await import(join(root, "services/core/events/sql.ts"));
  return { root, template, session: module.INGEST_SESSION ?? {}, insert: module.insertEventsWithJobs };
}

let sequence = 0;
const groupOf = (size: number) =>
  Array.from({ length: size }, () => ({
    id: `evt_stmt${process.pid}_${(sequence++).toString().padStart(12, "0")}`,
    appId: APP,
    type: "bench.order.paid",
    dataJson: data,
    idempotencyKey: null,
    createdAt: new Date(),
    ttlSeconds: null,
    traceParent: null,
  }));

/**
 * The warm-up writes at least this many events, whatever the group size, before its ANALYZE.
 * Postgres plans each foreign-key check once per connection; after an ANALYZE of a `jobs` of one
 * page (40 single-event groups), the outbox's check of its job was a sequential scan, kept while the
 * table grew: 1,058-1,171 µs of Postgres CPU per single-event statement over 20,000 rows, against
 * 464-471 µs with the check reading the index. The bench's stacks analyze as the tables grow, as
 * autovacuum does in production; this measures that steady state.
 */
const WARMUP_MIN_EVENTS = 2000;

const claim = Number(args.claim) > 0 ? { maxJobs: Number(args.claim), leaseMs: 10_000 } : null;

async function measure(t: Target, group: number): Promise<{ eventsPerSecond: number; postgresUsPerEvent: number }> {
  const database = `${t.template}_run`;
  await admin.unsafe(`create database ${database} template ${t.template}`);
  const sql = postgres(urlOf(database), { max: Number(args["in-flight"]), onnotice: () => {}, connection: t.session });
  try {
    if (args.setup) await sql.unsafe(args.setup);
    const warmupGroups = Math.max(Number(args.warmup), Math.ceil(WARMUP_MIN_EVENTS / group));
    for (let i = 0; i < warmupGroups; i++) await t.insert(sql, groupOf(group), 0, null, claim);
    await sql`analyze`;
    const calls = Math.max(1, Math.round(Number(args.events) / group));
    let started = 0;
    const a = sampleCpu({}, database);
    await Promise.all(
      Array.from({ length: Number(args["in-flight"]) }, async () => {
        while (started < calls) {
          started++;
          await t.insert(sql, groupOf(group), 0, null, claim);
        }
      }),
    );
    const b = sampleCpu({}, database);
    const events = calls * group;
    return {
      eventsPerSecond: Math.round((events * 1000) / (b.atMs - a.atMs)),
      postgresUsPerEvent: Math.round((((b.groups.postgres ?? 0) - (a.groups.postgres ?? 0)) * 1e6) / events),
    };
  } finally {
    await sql.end();
    await admin.unsafe(`drop database if exists ${database} with (force)`);
  }
}

const targets: Target[] = [];
const results: { target: string; group: number; round: number; eventsPerSecond: number; postgresUsPerEvent: number }[] = [];
try {
  for (const [i, spec] of args.targets.split(",").entries()) targets.push(await prepare(spec, i));
  for (let round = 1; round <= Number(args.rounds); round++) {
    for (const group of args.groups.split(",").map(Number)) {
      for (const t of round % 2 ? targets : [...targets].reverse()) {
        const m = await measure(t, group);
        results.push({ target: t.root, group, round, ...m });
        log(`round ${round}, groups of ${group}, ${t.root}: ${m.postgresUsPerEvent} µs of Postgres CPU per event, ${m.eventsPerSecond} events/s`);
      }
    }
  }
} finally {
  for (const t of targets) await admin.unsafe(`drop database if exists ${t.template} with (force)`);
  await admin.end();
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] ?? 0;
const keys = [...new Set(results.map((r) => `${r.target}|${r.group}`))];
console.table(
  keys.map((k) => {
    const rs = results.filter((r) => `${r.target}|${r.group}` === k);
    return {
      target: rs[0]!.target,
      group: rs[0]!.group,
      postgresUsPerEvent: rs.map((r) => r.postgresUsPerEvent).join(" "),
      medianUs: median(rs.map((r) => r.postgresUsPerEvent)),
      medianEventsPerSecond: median(rs.map((r) => r.eventsPerSecond)),
    };
  }),
);
if (args.out) {
  mkdirSync(resolve(args.out, ".."), { recursive: true });
  writeFileSync(args.out, JSON.stringify({ at: new Date().toISOString(), args, results }, null, 2));
  log(`wrote ${args.out}`);
}
