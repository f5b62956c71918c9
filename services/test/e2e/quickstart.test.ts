import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { chmodSync, closeSync, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import amqp from "amqplib";
import { Webhook } from "standardwebhooks";
import { pollUntil } from "../support/poll.ts";
import { startReceiver, type Receiver } from "../support/receiver.ts";

/**
 * What a newcomer does: `npm start` in a fresh directory with no DATABASE_URL (nor AMQP_URL), so
 * Evently runs an embedded Postgres under ./.evently. Black box: the real entry point in a child
 * process, the HTTP API, a local receiver, and the processes themselves (exit codes, the server's
 * pid in postmaster.pid).
 */
const MAIN = join(import.meta.dir, "..", "..", "main.ts");
const PREFIX = `evently_quickstart_${process.pid}`;

let dir: string;
let lockFile: string;
let apiPort: number;
let pgPort: number;
let receiver: Receiver;
let running: Subprocess | undefined;
let runs = 0;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const { port } = server.address() as { port: number };
  await new Promise<void>((done) => server.close(() => done()));
  return port;
}

/** Exited processes may linger as zombies until init reaps them; those count as gone. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  const stat = existsSync(`/proc/${pid}/stat`) ? readFileSync(`/proc/${pid}/stat`, "utf8") : "";
  return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
}

/** A server that has removed its lock file may take a moment more to exit. */
const gone = (pid: number) => pollUntil(() => !alive(pid), { timeoutMs: 10_000, what: `process ${pid} to exit` });

const serverPid = () => Number(readFileSync(lockFile, "utf8").split("\n")[0]);
const output = () =>
  readdirSync(dir)
    .filter((f) => f.startsWith("run-"))
    .sort()
    .map((f) => `--- ${f}\n${readFileSync(join(dir, f), "utf8")}`)
    .join("\n");
const lastOutput = () => readFileSync(join(dir, `run-${runs}.log`), "utf8");

/** `npm start` runs `bun services/main.ts all`; the same, with the test's ports, in `dir`. */
async function start(): Promise<Subprocess> {
  const env: Record<string, string | undefined> = { ...process.env };
  for (const name of ["DATABASE_URL", "AMQP_URL", "QUEUE_TRANSPORT", "EVENTLY_DATA_DIR", "API_KEY", "ADMIN_API_KEY", "ENCRYPTION_KEY"]) delete env[name];
  const fd = openSync(join(dir, `run-${++runs}.log`), "w");
  const proc = Bun.spawn([process.execPath, MAIN, "all"], {
    cwd: dir,
    env: {
      ...env,
      HOST: "127.0.0.1",
      PORT: String(apiPort),
      EMBEDDED_POSTGRES_PORT: String(pgPort),
      DELIVERY_ALLOW_PRIVATE_NETWORKS: "true",
      AMQP_PREFIX: PREFIX, // only used while an unset AMQP_URL still means the local RabbitMQ
      LOG_LEVEL: "info",
    },
    stdout: fd,
    stderr: fd,
  });
  closeSync(fd);
  running = proc;
  const state = await pollUntil(
    async () => {
      if (proc.exitCode !== null) return "exited";
      const ready = await fetch(`http://127.0.0.1:${apiPort}/ready`).catch(() => undefined);
      return ready?.ok ? "ready" : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 50, what: "Evently to be ready" },
  ).catch((err) => `${err}`);
  if (state !== "ready") throw new Error(`Evently did not become ready (${state}, exit ${proc.exitCode}):\n${output()}`);
  return proc;
}

async function stop(proc: Subprocess, signal: "SIGTERM" | "SIGKILL"): Promise<number | null> {
  proc.kill(signal);
  const code = await Promise.race([proc.exited, Bun.sleep(30_000).then(() => "timeout" as const)]);
  if (code === "timeout") throw new Error(`Evently did not exit within 30 s of ${signal}:\n${output()}`);
  running = undefined;
  return code;
}

/** The application key the walkthrough makes with the admin key `npm start` printed. */
let appKey = "";

async function api(method: string, path: string, body?: unknown, key = appKey): Promise<{ status: number; body: any }> {
  const response = await fetch(`http://127.0.0.1:${apiPort}${path}`, {
    method,
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: await response.json().catch(() => null) };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "evently-quickstart-"));
  // mkdtemp makes it 0700; run as root, Evently runs Postgres as `nobody`, which must get through.
  chmodSync(dir, 0o755);
  lockFile = join(dir, ".evently", "postgres", "postmaster.pid");
  [apiPort, pgPort] = [await freePort(), await freePort()];
  receiver = startReceiver();
});

afterAll(async () => {
  if (running) await stop(running, "SIGKILL").catch(() => {});
  // Whatever happened above, no Postgres of ours outlives the test.
  if (existsSync(lockFile)) {
    const pid = serverPid();
    if (pid > 0 && alive(pid)) {
      process.kill(pid, "SIGINT");
      await pollUntil(() => !alive(pid), { timeoutMs: 15_000, what: "the embedded Postgres to stop" }).catch(() => process.kill(pid, "SIGKILL"));
    }
  }
  await receiver.stop();
  if (/Queue\s+RabbitMQ/.test(output())) await deleteRabbitObjects();
  rmSync(dir, { recursive: true, force: true });
});

/** The broker objects of our prefix, in case this tree still defaults to the local RabbitMQ. */
async function deleteRabbitObjects(): Promise<void> {
  const connection = await amqp.connect("amqp://guest:guest@127.0.0.1:5672").catch(() => undefined);
  if (!connection) return;
  const channel = await connection.createChannel();
  for (const queue of [`${PREFIX}.deliveries.0`, `${PREFIX}.deliveries.1`, `${PREFIX}.dead`]) await channel.deleteQueue(queue).catch(() => {});
  for (const exchange of [`${PREFIX}.deliveries`, `${PREFIX}.dead`]) await channel.deleteExchange(exchange).catch(() => {});
  await connection.close().catch(() => {});
}

let eventId: string;

test("npm start with no DATABASE_URL runs an embedded Postgres and delivers a signed webhook", async () => {
  const proc = await start();
  expect(lastOutput()).toContain('"initialised":true');
  // The admin key was made for this installation, printed once and kept (0600) in the data directory.
  const adminKey = readFileSync(join(dir, ".evently", "admin-api-key"), "utf8").trim();
  expect(adminKey).toMatch(/^[0-9a-f]{64}$/);
  expect(statSync(join(dir, ".evently", "admin-api-key")).mode & 0o777).toBe(0o600);
  expect(lastOutput()).toContain(`Admin key ${adminKey}`);
  expect((await api("GET", "/endpoints", undefined, "")).status).toBe(401);
  const key = await api("POST", "/applications/default/api-keys", { name: "quickstart" }, adminKey);
  expect(key.status).toBe(201);
  appKey = key.body.key;

  const endpoint = await api("POST", "/endpoints", { url: `${receiver.url}/quickstart` });
  expect(endpoint.status).toBe(201);
  const route = await api("POST", "/routes", { endpointId: endpoint.body.id, eventType: "order.*" });
  expect(route.status).toBe(201);
  const event = await api("POST", "/events", { type: "order.paid", data: { orderId: 42 } });
  expect(event.status).toBe(202);
  eventId = event.body.id;

  const [delivery] = await pollUntil(() => receiver.on("/quickstart").length > 0 && receiver.on("/quickstart"), {
    timeoutMs: 20_000,
    what: "the delivery",
  });
  const payload = new Webhook(endpoint.body.secret).verify(delivery!.body, delivery!.headers) as { id: string; data: unknown };
  expect(payload.id).toBe(eventId);
  expect(payload.data).toEqual({ orderId: 42 });

  expect(lastOutput()).toContain(`data in ${join(dir, ".evently")}`);
  expect(lastOutput()).toContain(`http://127.0.0.1:${apiPort}`);
  expect(running).toBe(proc);
}, 90_000);

test("SIGTERM stops the roles, then the embedded Postgres, and exits 0", async () => {
  const pid = serverPid();
  expect(alive(pid)).toBe(true);
  expect(await stop(running!, "SIGTERM")).toBe(0);
  await gone(pid);
  expect(existsSync(lockFile)).toBe(false);
}, 45_000);

test("a restart opens the same data", async () => {
  await start();
  expect(lastOutput()).toContain('"initialised":false');
  // Same keys as before: the admin key is read back (and not printed again), the application key still works.
  expect(lastOutput()).toContain("kept in");
  expect(lastOutput()).not.toMatch(/Admin key [0-9a-f]{64}/);
  const event = await api("GET", `/events/${eventId}`);
  expect(event.status).toBe(200);
  expect(event.body.id).toBe(eventId);
}, 90_000);

test("after a SIGKILL the orphaned Postgres is stopped by the next start, and the data is still there", async () => {
  const orphan = serverPid();
  expect(await stop(running!, "SIGKILL")).not.toBe(0);
  expect(alive(orphan)).toBe(true); // still holds postmaster.pid and the port

  await start();
  expect(lastOutput()).toContain("stopping an embedded Postgres left running");
  await gone(orphan);
  expect(serverPid()).not.toBe(orphan);
  const event = await api("GET", `/events/${eventId}`);
  expect(event.status).toBe(200);

  expect(await stop(running!, "SIGTERM")).toBe(0);
  expect(existsSync(lockFile)).toBe(false);
}, 90_000);
