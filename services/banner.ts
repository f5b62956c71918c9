import type { Config } from "./core/config/index.ts";
import type { Database } from "./core/db/embedded.ts";
import type { GeneratedSecret } from "./local-secrets.ts";

/**
 * The few plain lines `npm start` prints once every role runs: what runs where, and how to use
 * it. Plain text on stdout, unlike the JSON log lines, because a person reads it, not a collector.
 * Never prints a password; prints the admin key only when this start generated it, since nobody
 * else could tell it to the user.
 */
export function startupBanner(config: Config, database: Database, apiPort: number, generated: GeneratedSecret[] = []): string {
  const host = ["0.0.0.0", "::", ""].includes(config.http.HOST) ? "localhost" : config.http.HOST;
  const api = `http://${host.includes(":") ? `[${host}]` : host}:${apiPort}`;
  const pg = database.embedded;
  const db = pg
    ? `embedded Postgres ${pg.major} on 127.0.0.1:${pg.port}, data in ${pg.dataDir} (delete it to start afresh)`
    : `Postgres at ${withoutPassword(database.url)} (DATABASE_URL)`;
  const made = new Map(generated.map((g) => [g.variable, g]));
  const admin = made.get("ADMIN_API_KEY");
  const key = !admin
    ? "the ADMIN_API_KEY you set: send Authorization: Bearer <it>"
    : admin.created
      ? `${config.http.ADMIN_API_KEY}  (generated, kept in ${admin.file}; set ADMIN_API_KEY to choose your own)`
      : `kept in ${admin.file} (generated on the first start; cat it, or set ADMIN_API_KEY)`;
  const encryption = made.get("ENCRYPTION_KEY");
  return [
    `Evently is running: ${config.queue.QUEUE_TRANSPORT === "rabbitmq" ? "API, dispatcher and worker" : "API and worker"} in one process.`,
    `  API       ${api}  (check: curl ${api}/ready; usage: README, "Using the API")`,
    `  Database  ${db}`,
    `  Queue     ${queueLine(config)}`,
    `  Admin key ${key}`,
    ...(encryption
      ? [`  Secrets   encrypted with the key in ${encryption.file}: keep it with the database, or set ENCRYPTION_KEY`]
      : []),
    "  Stop      Ctrl-C (or SIGTERM)",
  ].join("\n");
}

function queueLine(config: Config): string {
  const { QUEUE_TRANSPORT, AMQP_URL } = config.queue;
  if (QUEUE_TRANSPORT === "postgres") return "Postgres (jobs wait in the outbox table; no broker)";
  return `RabbitMQ at ${withoutPassword(AMQP_URL!)} (AMQP_URL)`;
}

function withoutPassword(raw: string): string {
  try {
    const url = new URL(raw);
    url.password = "";
    return url.toString();
  } catch {
    return "(unparsable URL)";
  }
}
