import { readdirSync } from "node:fs";
import { connect } from "node:net";

/**
 * The local Postgres and RabbitMQ the suite breaks on purpose, and what heals them. Every break is
 * paired with its heal, registered before the break, and run by the scenario's `finally` and by the
 * suite's signal and watchdog handlers, so the shared servers are never left stopped.
 */
type Heal = () => Promise<void>;
const pendingHeals = new Set<Heal>();

/** Registers `heal` until `work` ends, then runs it (whatever `work` did). */
export async function withHeal<T>(heal: Heal, work: () => Promise<T>): Promise<T> {
  pendingHeals.add(heal);
  try {
    return await work();
  } finally {
    pendingHeals.delete(heal);
    await heal();
  }
}

/** Runs every heal still registered: for the suite's emergency exits. */
export async function healAll(): Promise<void> {
  for (const heal of [...pendingHeals]) {
    pendingHeals.delete(heal);
    await heal().catch(() => {});
  }
}

async function run(cmd: string[], timeoutMs = 60_000): Promise<{ code: number; output: string }> {
  const proc = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { code, output: (out + err).trim() };
}

async function must(cmd: string[], timeoutMs?: number): Promise<void> {
  const { code, output } = await run(cmd, timeoutMs);
  if (code !== 0) throw new Error(`${cmd.join(" ")} exited ${code}: ${output.split("\n").slice(-3).join(" ")}`);
}

export function portOpen(port: number, host = "127.0.0.1"): Promise<boolean> {
  return new Promise((done) => {
    const socket = connect({ host, port });
    const finish = (ok: boolean) => (socket.destroy(), done(ok));
    socket.setTimeout(1000, () => finish(false));
    socket.once("connect", () => finish(true));
    socket.once("error", () => finish(false));
  });
}

async function waitFor(what: string, probe: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`${what} within ${timeoutMs / 1000} s`);
    await Bun.sleep(200);
  }
}

// ---- Postgres (the Debian cluster CI and this box run; .ci/services.sh starts it the same way) ----

const PG_VERSION = process.env.FAULTS_PG_VERSION ?? readdirSync("/etc/postgresql").sort().at(-1) ?? "15";
const PG_CLUSTER = process.env.FAULTS_PG_CLUSTER ?? "main";
const pgctl = (action: string) => ["pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, PG_CLUSTER, action];

export const postgresReady = async () => (await run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"], 5000)).code === 0;

export async function stopPostgres(): Promise<void> {
  await must(pgctl("stop"));
}

/** Starts Postgres if it is not answering, and waits until it accepts connections. */
export async function startPostgres(): Promise<void> {
  if (!(await postgresReady())) await run(pgctl("start"));
  await waitFor("postgres did not come back", postgresReady, 60_000);
}

// ---- RabbitMQ ----

export const rabbitReady = () => portOpen(5672);

export async function closeRabbitConnections(reason: string): Promise<void> {
  await must(["rabbitmqctl", "close_all_connections", reason]);
}

export async function stopRabbitApp(): Promise<void> {
  await must(["rabbitmqctl", "stop_app"]);
}

/** Starts the RabbitMQ application if its port is closed, and waits until it takes connections. */
export async function startRabbitApp(): Promise<void> {
  if (!(await rabbitReady())) {
    await run(["rabbitmqctl", "start_app"]);
    await run(["rabbitmqctl", "await_startup"]);
  }
  await waitFor("rabbitmq did not come back", rabbitReady, 60_000);
}
