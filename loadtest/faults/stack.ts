import { mkdirSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import amqp from "amqplib";
import postgres from "postgres";
import { loadConfig } from "../../services/core/config/index.ts";
import { deleteTopology } from "../../services/core/queue/rabbitmq/topology.ts";
import { installationEnv, isAlive, pipeRoleOutput, waitReady } from "../processes.ts";

/**
 * One installation per scenario, as deployed: each role its own `bun services/main.ts <role>`
 * process, which a scenario can SIGKILL and start again by name (`api`, `dispatcher`, `worker-1`…).
 * Its database is cloned from the suite's migrated template, its AMQP prefix is its own, and stop()
 * removes both. The API keeps one port across restarts, so producers keep their URL.
 */
export type Transport = "rabbitmq" | "postgres";

const REPO_ROOT = new URL("../../", import.meta.url).pathname;
const MAIN = join(REPO_ROOT, "services/main.ts");
export const ADMIN_URL = process.env.FAULTS_DATABASE_ADMIN_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
export const AMQP_URL = process.env.FAULTS_AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672";
const RUN = `${process.pid}`;
const TEMPLATE = `evently_faults_tpl_${RUN}`;

/** Every role process of every stack, so an emergency exit can kill what is left. */
const children = new Set<ReturnType<typeof Bun.spawn>>();
export function killAllChildren(): void {
  for (const child of children) child.kill("SIGKILL");
}
process.on("exit", killAllChildren);

/** Stacks not yet stopped: an emergency exit stops them too (their databases and queues go). */
const live = new Set<() => Promise<void>>();
export async function stopAllStacks(): Promise<void> {
  await Promise.all([...live].map((stop) => Promise.race([stop().catch(() => {}), Bun.sleep(15_000)])));
}

export function databaseUrl(name: string): string {
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

async function admin<T>(fn: (sql: postgres.Sql) => Promise<T>): Promise<T> {
  const sql = postgres(ADMIN_URL, { max: 1, onnotice: () => {}, connect_timeout: 5 });
  try {
    return await fn(sql);
  } finally {
    await sql.end({ timeout: 2 });
  }
}

/** Migrates the suite's template once (dropping templates and clones of suite runs that are gone). */
export async function prepareTemplate(): Promise<void> {
  await admin(async (sql) => {
    const stale = await sql<{ datname: string }[]>`select datname from pg_database where datname like 'evently\\_faults\\_%'`;
    for (const { datname } of stale) {
      // evently_faults_tpl_<pid> and evently_faults_<pid>_<n>
      const pid = Number(datname.split("_")[datname.startsWith("evently_faults_tpl_") ? 3 : 2]);
      if (pid !== process.pid && !isAlive(pid)) await sql.unsafe(`drop database if exists "${datname}" with (force)`);
    }
  });
  const migrate = Bun.spawn([process.execPath, MAIN, "migrate"], {
    cwd: REPO_ROOT,
    env: { ...process.env, DATABASE_URL: databaseUrl(TEMPLATE), LOG_LEVEL: "warn" },
    stdout: "ignore",
    stderr: "pipe",
  });
  if ((await migrate.exited) !== 0) throw new Error(`migrate failed: ${await new Response(migrate.stderr).text()}`);
}

export async function dropTemplate(): Promise<void> {
  await admin((sql) => sql.unsafe(`drop database if exists "${TEMPLATE}" with (force)`)).catch(() => {});
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export interface RoleProcess {
  name: string;
  pid: number;
  url: string;
  proc: ReturnType<typeof Bun.spawn>;
}

export interface StackOptions {
  name: string;
  transport: Transport;
  /** Worker processes, named worker-1… (default 1). */
  workers?: number;
  env?: Record<string, string>;
  log: (msg: string) => void;
}

export interface FaultStack {
  transport: Transport;
  apiUrl: string;
  logDir: string;
  /** The scratch database (camelCased columns). */
  sql: postgres.Sql;
  roles: Map<string, RoleProcess>;
  /** Starts (or starts again) a role by name; resolves once it answers /ready. */
  start(name: string): Promise<RoleProcess>;
  kill(name: string, signal?: NodeJS.Signals): Promise<void>;
  /** A JSON request to the API with the application's key. */
  api(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }>;
  /** An endpoint for `url` receiving `eventType`; returns the API's answer (201 expected). */
  subscribe(url: string, eventType: string, endpoint?: Record<string, unknown>): Promise<any>;
  appKey: string;
  stop(): Promise<void>;
}

let counter = 0;

export async function startFaultStack(options: StackOptions): Promise<FaultStack> {
  const { transport, log } = options;
  const id = `${RUN}_${++counter}`;
  const database = `evently_faults_${id}`;
  const logDir = join(tmpdir(), `evently-faults-${id}-${options.name}`);
  mkdirSync(logDir, { recursive: true });
  await admin((sql) => sql.unsafe(`create database "${database}" template "${TEMPLATE}"`));
  const apiPort = await freePort();
  const { env, childEnv } = installationEnv({
    transport,
    databaseUrl: databaseUrl(database),
    amqp: { url: AMQP_URL, prefix: `evently-faults-${id}` },
    settings: options.env,
  });
  const sql = postgres(env.DATABASE_URL!, { max: 4, onnotice: () => {}, transform: postgres.camel, connect_timeout: 5 });
  const roles = new Map<string, RoleProcess>();

  const start = async (name: string): Promise<RoleProcess> => {
    const role = name.replace(/-\d+$/, "");
    const port = role === "api" ? apiPort : 0;
    // As deployed: each worker holds a hand-over connection to the API, whose port stays the same
    // across restarts, so the scenarios' faults hit that path too.
    const handover = role === "worker" ? { QUEUE_HANDOVER_URL: `http://127.0.0.1:${apiPort}` } : {};
    const proc = Bun.spawn([process.execPath, MAIN, role], {
      cwd: REPO_ROOT,
      env: { ...childEnv, ...handover, PORT: String(port) },
      stdout: "pipe",
      stderr: "pipe",
    });
    children.add(proc);
    void proc.exited.then(() => children.delete(proc));
    const started = pipeRoleOutput(proc, join(logDir, `${name}.log`));
    const exited = proc.exited.then((code) => Promise.reject(new Error(`${name} exited with ${code} before starting; see ${logDir}/${name}.log`)));
    const timeout = Bun.sleep(30_000).then(() => Promise.reject(new Error(`${name} did not start within 30 s`)));
    const listening = await Promise.race([started, exited, timeout]);
    const url = `http://127.0.0.1:${listening}`;
    await waitReady(url, 30_000);
    const running = { name, pid: proc.pid, url, proc };
    roles.set(name, running);
    return running;
  };

  const kill = async (name: string, signal: NodeJS.Signals = "SIGKILL") => {
    const role = roles.get(name);
    if (!role) return;
    role.proc.kill(signal);
    const exited = await Promise.race([role.proc.exited.then(() => true), Bun.sleep(10_000).then(() => false)]);
    if (!exited) role.proc.kill("SIGKILL");
    await role.proc.exited;
    roles.delete(name);
  };

  const stop = async () => {
    live.delete(stop);
    await Promise.all([...roles.keys()].map((name) => kill(name, "SIGTERM")));
    await sql.end({ timeout: 2 }).catch(() => {});
    if (transport === "rabbitmq") {
      try {
        const connection = await amqp.connect(AMQP_URL);
        const channel = await connection.createChannel();
        await deleteTopology(channel, loadConfig(env).queue).catch(() => {});
        await channel.close().catch(() => {});
        await connection.close();
      } catch (err) {
        log(`stack ${options.name}: AMQP cleanup failed: ${(err as Error).message}`);
      }
    }
    await admin((s) => s.unsafe(`drop database if exists "${database}" with (force)`)).catch((err) =>
      log(`stack ${options.name}: drop database failed: ${(err as Error).message}`),
    );
  };

  live.add(stop);
  try {
    const names = ["api", ...(transport === "rabbitmq" ? ["dispatcher"] : []), ...Array.from({ length: options.workers ?? 1 }, (_, i) => `worker-${i + 1}`)];
    await Promise.all(names.map(start));
    const apiUrl = roles.get("api")!.url;
    const adminCall = (method: string, path: string, body: unknown, key: string) =>
      fetch(`${apiUrl}${path}`, {
        method,
        headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
        body: body === undefined ? undefined : JSON.stringify(body),
      }).then(async (r) => ({ status: r.status, body: await r.json().catch(() => null) }));
    const app = await adminCall("POST", "/applications", { name: `faults ${options.name}` }, env.ADMIN_API_KEY!);
    if (app.status !== 201) throw new Error(`POST /applications: ${app.status} ${JSON.stringify(app.body)}`);
    const key = await adminCall("POST", `/applications/${app.body.id}/api-keys`, { name: "faults" }, env.ADMIN_API_KEY!);
    if (key.status !== 201) throw new Error(`POST api-keys: ${key.status} ${JSON.stringify(key.body)}`);
    const appKey = key.body.key as string;
    const api = (method: string, path: string, body?: unknown) => adminCall(method, path, body, appKey);
    const subscribe = async (url: string, eventType: string, endpoint: Record<string, unknown> = {}) => {
      const created = await api("POST", "/endpoints", { url, eventTypes: [eventType], ...endpoint });
      if (created.status !== 201) throw new Error(`POST /endpoints: ${created.status} ${JSON.stringify(created.body)}`);
      return created.body;
    };
    log(`stack ${options.name} (${transport}): database ${database}, roles ${names.join(", ")}, logs in ${logDir}`);
    return { transport, apiUrl, logDir, sql, roles, start, kill, api, subscribe, appKey, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** VmRSS and VmHWM (peak) of a process, in MiB; null once it is gone. */
export async function memoryOf(pid: number): Promise<{ rssMiB: number; peakMiB: number } | null> {
  try {
    const status = await Bun.file(`/proc/${pid}/status`).text();
    const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+)`, "m").exec(status)?.[1] ?? 0);
    return { rssMiB: kib("VmRSS") / 1024, peakMiB: kib("VmHWM") / 1024 };
  } catch {
    return null;
  }
}
