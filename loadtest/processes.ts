import { randomBytes } from "node:crypto";
import { closeSync, openSync, writeSync } from "node:fs";

/**
 * What the load tools (bench, faults) and the tests' database sweep need to know about processes:
 * a role's output copied to its log file while its port is learnt from it, whether a role answers
 * /ready, and whether the process that named a scratch database still runs.
 */

export interface InstallationEnvOptions {
  transport: "rabbitmq" | "postgres";
  databaseUrl: string;
  /** RabbitMQ transport only: the broker, and the prefix that makes its exchanges and queues this installation's. */
  amqp?: { url: string; prefix: string };
  /** The caller's settings (RETRY_SCHEDULE…); they cannot override what makes the installation its own. */
  settings?: Record<string, string>;
}

/**
 * The environment of a scratch installation's roles: `env`, what the tool set (also what it parses
 * config from), and `childEnv`, the whole environment a role process gets.
 */
export function installationEnv(options: InstallationEnvOptions): { env: Record<string, string>; childEnv: Record<string, string | undefined> } {
  const { transport, settings } = options;
  // The caller's settings first; then what makes this installation its own, which must not be
  // overridden (a DATABASE_URL from the environment would point the stack at a real database).
  // The transport is always named, and the database and broker always given: the product's
  // defaults for them (chosen by which URLs are set, an embedded database) are not what we measure.
  const env: Record<string, string> = {
    DELIVERY_ALLOW_PRIVATE_NETWORKS: "true",
    // Keys of this run only: the installation is made and dropped with it.
    ADMIN_API_KEY: randomBytes(32).toString("hex"),
    ENCRYPTION_KEY: randomBytes(32).toString("base64"),
    ...settings,
    QUEUE_TRANSPORT: transport,
    DATABASE_URL: options.databaseUrl,
    ...(transport === "rabbitmq" && options.amqp ? { AMQP_URL: options.amqp.url, AMQP_PREFIX: options.amqp.prefix } : {}),
    HOST: "127.0.0.1",
    PORT: "0",
    // info at least: the "evently started" line is how a role's port is learnt.
    LOG_LEVEL: settings?.LOG_LEVEL === "debug" ? "debug" : "info",
  };
  // Ours plus the installation's. A Postgres installation gets no AMQP_URL from us either.
  const childEnv: Record<string, string | undefined> = { ...process.env, ...env };
  if (transport !== "rabbitmq") for (const k of ["AMQP_URL", "AMQP_PREFIX"]) delete childEnv[k];
  return { env, childEnv };
}

/**
 * Copies a role's stdout and stderr to `file` (appending: a restarted role keeps one log) and
 * resolves with the port of its "evently started" line (or, for another program, of the JSON line
 * whose msg is `startedMessage`). The line is the only place a role started on port 0 says which
 * port it got. Never rejects: a caller races it against the process's exit.
 */
export function pipeRoleOutput(proc: ReturnType<typeof Bun.spawn>, file: string, startedMessage = "evently started"): Promise<number> {
  const fd = openSync(file, "a");
  let resolvePort: (port: number) => void = () => {};
  const port = new Promise<number>((resolve) => (resolvePort = resolve));
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    let buffered = "";
    for await (const chunk of stream) {
      const text = decoder.decode(chunk, { stream: true });
      writeSync(fd, text);
      buffered += text;
      let nl: number;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (line.includes(`"${startedMessage}"`)) {
          const started = (JSON.parse(line) as { port?: number }).port;
          if (started) resolvePort(started);
        }
      }
    }
  };
  void Promise.all([pump(proc.stdout as ReadableStream<Uint8Array>), pump(proc.stderr as ReadableStream<Uint8Array>)]).finally(() => closeSync(fd));
  return port;
}

/** Resolves once `url`/ready answers 200; a role is listening before its dependencies are up. */
export async function waitReady(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await fetch(`${url}/ready`).then((r) => r.ok, () => false);
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${url}/ready did not answer 200 within ${timeoutMs} ms`);
    await Bun.sleep(100);
  }
}

/**
 * Whether `pid` runs. Scratch databases carry the pid of the run that made them, so a later run
 * can drop those whose run is gone (crashed, killed) and leave a concurrent run's alone.
 */
export function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
