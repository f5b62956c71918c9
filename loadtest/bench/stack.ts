import amqp from "amqplib";
import { mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { loadConfig } from "../../services/core/config/index.ts";
import { deleteTopology } from "../../services/core/queue/rabbitmq/topology.ts";
import { installationEnv, pipeRoleOutput, waitReady } from "../processes.ts";
import { newRunId, runGone, watchChild } from "./reaper.ts";
import { BACKEND_POOL_SQL } from "./wait-events.ts";

/**
 * An Evently installation for one benchmark run, as separate processes the way it is deployed:
 * `migrate`, then `api`, `worker` and (RabbitMQ transport) `dispatcher`, or `all`, each
 * `bun services/main.ts <role>`. It gets a scratch database and, on RabbitMQ, its own AMQP prefix,
 * so it shares nothing with other installations on the same servers, and stop() removes both.
 * Process output goes to log files, one per role.
 */
export type BenchTransport = "rabbitmq" | "postgres";

export interface StackOptions {
  /** QUEUE_TRANSPORT of every role; set explicitly, never left to the product's default. Default rabbitmq. */
  transport?: BenchTransport;
  /**
   * Roles to run, each in its own process. Default api, worker, dispatcher (RabbitMQ); api, worker
   * (Postgres). A role named twice runs twice: its second process is `<role>-2` in pids, roleUrls and logs.
   */
  roles?: Array<"api" | "worker" | "dispatcher" | "all">;
  /** A database URL on the server to use; the stack uses a scratch database beside it. */
  databaseUrl?: string;
  /** RabbitMQ transport only. */
  amqpUrl?: string;
  /** Postgres settings for the scratch database (ALTER DATABASE … SET), e.g. plan_cache_mode: for experiments. */
  databaseSettings?: Record<string, string>;
  /** Extra environment for every role (e.g. WORKER_MAX_IN_FLIGHT). */
  env?: Record<string, string>;
  /** Write a V8 CPU profile of each role into this directory (bun --cpu-prof), for finding hot spots. */
  cpuProfileDir?: string;
  log?: (msg: string) => void;
  /** Run the roles (and migrate) from another checkout of the repository: A/B comparisons of two versions. */
  repoRoot?: string;
  /** Names the scratch database (`evently_<label>_…`), AMQP prefix and log directory, so leftovers say whose they are. Default bench. */
  label?: string;
  /**
   * Each worker connects to an API process for the hand-over (QUEUE_HANDOVER_URL; the n-th worker
   * to the n-th API, round the APIs), as the deployments set it up. Default true; false measures
   * the take (Postgres transport) or the broker (RabbitMQ) alone.
   */
  handover?: boolean;
}

export interface Stack {
  transport: BenchTransport;
  apiUrl: string;
  /** Health/metrics URL of every role process. */
  roleUrls: Record<string, string>;
  /** Process id of every role process (for /proc: CPU time, peak RSS). */
  pids: Record<string, number>;
  env: Record<string, string>;
  logDir: string;
  /** Job counts by status and attempt count: where undelivered events are, when some are. */
  jobStates(): Promise<{ status: string; attemptCount: number; count: number }[]>;
  /** Live and dead rows, size and scans of the stack's tables and indexes, its database's transactions, and the server settings that bear on them. */
  dbStats(): Promise<DbStats>;
  /**
   * The pool each backend serving the stack's database belongs to, by pid: its application_name
   * (core/db/client.ts names every pool), with " listen" added for a LISTEN connection.
   */
  backendPools(): Promise<Record<number, string>>;
  /**
   * VACUUM ANALYZE of the stack's tables when the server runs with autovacuum off (as CI servers
   * here do): what autovacuum would have done between phases. Returns whether it ran.
   */
  vacuumIfNoAutovacuum(): Promise<boolean>;
  /**
   * The same, repeated every `autovacuum_naptime` until the returned stop is called: what autovacuum
   * would do during a long phase. Re-analysing also makes Postgres re-plan cached statements, so a
   * plan made while a table was empty does not outlive a backlog for longer than it would in
   * production. `onRun` is called after each VACUUM. Does nothing when autovacuum is on.
   */
  vacuumPeriodically(onRun: () => void): () => Promise<void>;
  stop(): Promise<void>;
}

export interface DbStats {
  tables: Array<{ table: string; live: number; dead: number; totalMiB: number; seqScans: number; seqRowsRead: number; idxScans: number; idxRowsFetched: number }>;
  /** Scans of each index of the stack's tables (cumulative), to tell which statements use which index. */
  indexScans: Record<string, number>;
  /** The scratch database's committed and rolled-back transactions (cumulative, pg_stat_database). */
  transactions: { committed: number; rolledBack: number };
  settings: Record<string, string>;
}

const REPO_ROOT = new URL("../../", import.meta.url).pathname;

interface Child {
  role: string;
  proc: ReturnType<typeof Bun.spawn>;
  started: Promise<number>;
}

/** Spawns one role; `started` resolves with its port from the "evently started" log line. */
function spawnRole(role: string, env: Record<string, string | undefined>, logDir: string, cpuProfile?: { dir: string; name: string }, name = role, root = REPO_ROOT): Child {
  const profile = cpuProfile ? ["--cpu-prof", `--cpu-prof-dir=${cpuProfile.dir}`, `--cpu-prof-name=${cpuProfile.name}`] : [];
  const proc = Bun.spawn([process.execPath, ...profile, join(root, "services/main.ts"), role], {
    cwd: root,
    env,
    stdout: "pipe",
    stderr: "pipe",
  });
  watchChild(proc.pid);
  const logged = pipeRoleOutput(proc, join(logDir, `${name}.log`));
  const exited = proc.exited.then((code) => Promise.reject(new Error(`${name} exited with code ${code} before starting; see ${logDir}/${name}.log`)));
  return { role: name, proc, started: Promise.race([logged, exited]) };
}

export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const log = options.log ?? (() => {});
  const transport = options.transport ?? "rabbitmq";
  const id = newRunId();
  const label = options.label ?? "bench";
  if (!/^[a-z]+$/.test(label)) throw new Error(`stack label must be lower-case letters, not ${label}`);
  const dbUrl = new URL(options.databaseUrl ?? process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres");
  const adminUrl = new URL(dbUrl);
  adminUrl.pathname = "/postgres";
  dbUrl.pathname = `/evently_${label}_${id}`;
  const { env, childEnv } = installationEnv({
    transport,
    databaseUrl: dbUrl.toString(),
    amqp: { url: options.amqpUrl ?? process.env.AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672", prefix: `evently-${label}-${id}` },
    settings: options.env,
  });
  const logDir = join(tmpdir(), `evently-${label}-${id}`);
  mkdirSync(logDir, { recursive: true });
  log(`stack (${transport} transport): scratch database ${dbUrl.pathname.slice(1)}${env.AMQP_PREFIX ? `, AMQP prefix ${env.AMQP_PREFIX}` : ""}, logs in ${logDir}`);

  const children: Child[] = [];
  // One connection, kept: asked before every CPU sample, it would otherwise add a backend each time.
  const poolsSql = postgres(dbUrl.toString(), { max: 1, onnotice: () => {}, connection: { application_name: "bench" } });
  const backendPools = async (): Promise<Record<number, string>> => {
    const rows = await poolsSql<{ pid: number; pool: string }[]>`
      select pid, ${poolsSql.unsafe(BACKEND_POOL_SQL)} as pool
      from pg_stat_activity where datname = current_database() and backend_type = 'client backend'`;
    return Object.fromEntries(rows.map((r) => [r.pid, r.pool]));
  };
  const stop = async () => {
    await poolsSql.end({ timeout: 1 }).catch(() => {});
    for (const c of children.reverse()) {
      c.proc.kill("SIGTERM");
      const exited = await Promise.race([c.proc.exited.then(() => true), Bun.sleep(10_000).then(() => false)]);
      if (!exited) c.proc.kill("SIGKILL");
    }
    await cleanup(transport === "rabbitmq" ? env : undefined, adminUrl.toString(), dbUrl.pathname.slice(1)).catch((err) => log(`stack cleanup: ${(err as Error).message}`));
  };

  await removeLeftovers(label, adminUrl.toString(), options.amqpUrl ?? process.env.AMQP_URL, log);
  try {
    const root = options.repoRoot ?? REPO_ROOT;
    const migrate = Bun.spawn([process.execPath, join(root, "services/main.ts"), "migrate"], { cwd: root, env: childEnv, stdout: "ignore", stderr: "pipe" });
    if ((await migrate.exited) !== 0) throw new Error(`migrate failed: ${await new Response(migrate.stderr).text()}`);
    if (options.databaseSettings && Object.keys(options.databaseSettings).length) {
      const admin = postgres(adminUrl.toString(), { max: 1, onnotice: () => {} });
      try {
        for (const [name, value] of Object.entries(options.databaseSettings)) {
          if (!/^[a-z_.]+$/.test(name)) throw new Error(`bad setting name ${name}`);
          await admin.unsafe(`alter database "${dbUrl.pathname.slice(1)}" set ${name} = '${value.replace(/'/g, "''")}'`);
        }
      } finally {
        await admin.end();
      }
    }
    const roleUrls: Record<string, string> = {};
    const pids: Record<string, number> = {};
    const roles = options.roles ?? (transport === "rabbitmq" ? ["api", "worker", "dispatcher"] : ["api", "worker"]);
    for (const [i, role] of roles.entries()) {
      const earlier = roles.slice(0, i).filter((r) => r === role).length;
      const name = earlier ? `${role}-${earlier + 1}` : role;
      const cpuProfile = options.cpuProfileDir ? { dir: options.cpuProfileDir, name: `${transport}-${name}.cpuprofile` } : undefined;
      const apis = Object.entries(roleUrls).filter(([started]) => started.startsWith("api")).map(([, url]) => url);
      const workerNo = roles.slice(0, i).filter((r) => r === "worker").length;
      const handoverUrl = role === "worker" && options.handover !== false ? apis[workerNo % apis.length] : undefined;
      const child = spawnRole(role, handoverUrl ? { ...childEnv, QUEUE_HANDOVER_URL: handoverUrl } : childEnv, logDir, cpuProfile, name, root);
      children.push(child);
      pids[name] = child.proc.pid;
      const port = await Promise.race([child.started, Bun.sleep(30_000).then(() => Promise.reject(new Error(`${name} did not start within 30 s`)))]);
      roleUrls[name] = `http://127.0.0.1:${port}`;
      await waitReady(roleUrls[name]!, 30_000);
    }
    const apiUrl = roleUrls.api ?? roleUrls.all;
    if (!apiUrl) throw new Error("no api or all role among the roles");
    const jobStates = async () => {
      const sql = postgres(dbUrl.toString(), { max: 1, onnotice: () => {}, transform: postgres.camel });
      try {
        return await sql<{ status: string; attemptCount: number; count: number }[]>`
          select status, attempt_count, count(*)::int as count from jobs group by 1, 2 order by 1, 2`;
      } finally {
        await sql.end();
      }
    };
    const dbStats = async (): Promise<DbStats> => {
      const sql = postgres(dbUrl.toString(), { max: 1, onnotice: () => {} });
      try {
        const tables = await sql<DbStats["tables"]>`
          select relname as "table", n_live_tup::float8 as live, n_dead_tup::float8 as dead,
                 seq_scan::float8 as "seqScans", seq_tup_read::float8 as "seqRowsRead",
                 coalesce(idx_scan, 0)::float8 as "idxScans", coalesce(idx_tup_fetch, 0)::float8 as "idxRowsFetched",
                 round(pg_total_relation_size(relid) / 1048576.0, 1)::float8 as "totalMiB"
          from pg_stat_user_tables order by pg_total_relation_size(relid) desc limit 6`;
        const indexes = await sql<{ index: string; scans: number }[]>`
          select indexrelname as index, idx_scan::float8 as scans from pg_stat_user_indexes`;
        const [db] = await sql<{ committed: number; rolledBack: number }[]>`
          select xact_commit::float8 as committed, xact_rollback::float8 as "rolledBack" from pg_stat_database where datname = current_database()`;
        const settings = await sql<{ name: string; setting: string }[]>`
          select name, setting from pg_settings
          where name in ('autovacuum', 'plan_cache_mode', 'synchronous_commit', 'fsync', 'shared_buffers', 'max_wal_size', 'wal_level')`;
        return {
          tables: [...tables],
          indexScans: Object.fromEntries(indexes.map((r) => [r.index, r.scans])),
          transactions: db ?? { committed: 0, rolledBack: 0 },
          settings: Object.fromEntries(settings.map((r) => [r.name, r.setting])),
        };
      } finally {
        await sql.end();
      }
    };
    const vacuum = await autovacuumStandIn(dbUrl.toString(), ["jobs", "outbox", "events", "attempts"]);
    return { transport, apiUrl, roleUrls, pids, env, logDir, jobStates, dbStats, backendPools, vacuumIfNoAutovacuum: vacuum.ifOff, vacuumPeriodically: vacuum.periodically, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Autovacuum's stand-in on a server that runs with it off: see Stack's vacuumIfNoAutovacuum and vacuumPeriodically. */
export interface AutovacuumStandIn {
  ifOff(): Promise<boolean>;
  periodically(onRun: () => void): () => Promise<void>;
}

/** VACUUM ANALYZE of `tables` in the database at `databaseUrl`, when the server's autovacuum is off. */
export async function autovacuumStandIn(databaseUrl: string, tables: string[]): Promise<AutovacuumStandIn> {
  const setting = async (name: string): Promise<string | undefined> => {
    const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
    try {
      const [row] = await sql<{ setting: string }[]>`select setting from pg_settings where name = ${name}`;
      return row?.setting;
    } finally {
      await sql.end();
    }
  };
  const ifOff = async (): Promise<boolean> => {
    if ((await setting("autovacuum")) !== "off") return false;
    const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
    try {
      await sql.unsafe(`vacuum (analyze) ${tables.join(", ")}`);
      return true;
    } finally {
      await sql.end();
    }
  };
  const naptimeMs = Number((await setting("autovacuum_naptime")) ?? 60) * 1000;
  const periodically = (onRun: () => void) => {
    let running: Promise<void> | undefined;
    const timer = setInterval(() => {
      running ??= ifOff()
        .then((ran) => void (ran && onRun()), () => {})
        .finally(() => (running = undefined));
    }, naptimeMs);
    return async () => {
      clearInterval(timer);
      await running;
    };
  };
  return { ifOff, periodically };
}

/** Deletes the run's exchanges and queues (given the RabbitMQ stack's environment), then its database. */
async function cleanup(amqpEnv: Record<string, string> | undefined, adminUrl: string, database: string): Promise<void> {
  if (amqpEnv) {
    const config = loadConfig(amqpEnv);
    const connection = await amqp.connect(config.queue.AMQP_URL!);
    try {
      const channel = await connection.createChannel();
      await deleteTopology(channel, config.queue).catch(() => {});
      await channel.close().catch(() => {});
    } finally {
      await connection.close();
    }
  }
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`drop database if exists "${database}" with (force)`);
  } finally {
    await admin.end();
  }
}

/**
 * Drops the scratch databases, exchanges and queues of stacks with this label whose process is gone
 * without its cleanup (killed; the reaper stopped its roles): they would fill the server run by run.
 * A live stack's, this process's among them, are left alone (runGone).
 */
async function removeLeftovers(label: string, adminUrl: string, amqpUrl: string | undefined, log: (line: string) => void): Promise<void> {
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  let names: string[];
  try {
    names = (await admin<{ datname: string }[]>`select datname from pg_database where datname ~ ${`^evently_${label}_[0-9]+_[a-z0-9]+$`}`).map((r) => r.datname);
  } finally {
    await admin.end();
  }
  for (const name of names) {
    const id = name.slice(`evently_${label}_`.length);
    if (!runGone(id)) continue;
    const { env } = installationEnv({
      transport: "rabbitmq",
      databaseUrl: adminUrl,
      amqp: { url: amqpUrl ?? "amqp://guest:guest@127.0.0.1:5672", prefix: `evently-${label}-${id}` },
    });
    // Its transport is not known: RabbitMQ's names are deleted if they exist, skipped if it is down.
    await cleanup(env, adminUrl, name).catch(() => cleanup(undefined, adminUrl, name));
    log(`removed the leftovers of a stack whose process is gone: ${name}`);
  }
}

/** What the API answers a create with, as far as the benches read it. */
export interface Created {
  id: string;
  secret: string;
  key: string;
}

/** POST `body` to the stack's API with `key`; throws unless it answers 201. */
export async function createVia(stack: Pick<Stack, "apiUrl">, path: string, body: unknown, key: string): Promise<Created> {
  const res = await fetch(`${stack.apiUrl}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: JSON.stringify(body),
  });
  if (res.status !== 201) throw new Error(`POST ${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as Created;
}

/**
 * An application named `name` and a key of its own, made with the admin key: what every request of
 * a run authenticates with, as a producer's would.
 */
export async function producerKey(stack: Pick<Stack, "apiUrl" | "env">, name: string): Promise<string> {
  const admin = stack.env.ADMIN_API_KEY!;
  const application = await createVia(stack, "/applications", { name }, admin);
  return (await createVia(stack, `/applications/${application.id}/api-keys`, { name }, admin)).key;
}
