import type { Config } from "./core/config/index.ts";
import type { Database } from "./core/db/embedded.ts";

/**
 * The few plain lines `npm start` prints once every role runs: what runs where, and how to use
 * it. Plain text on stdout, unlike the JSON log lines, because a person reads it, not a collector.
 * Never prints a password or the API key.
 */
export function startupBanner(config: Config, database: Database, apiPort: number): string {
  const host = ["0.0.0.0", "::", ""].includes(config.http.HOST) ? "localhost" : config.http.HOST;
  const api = `http://${host.includes(":") ? `[${host}]` : host}:${apiPort}`;
  const pg = database.embedded;
  const db = pg
    ? `embedded Postgres ${pg.major} on 127.0.0.1:${pg.port}, data in ${pg.dataDir} (delete it to start afresh)`
    : `Postgres at ${withoutPassword(database.url)} (DATABASE_URL)`;
  const key = config.http.API_KEY
    ? "required: send Authorization: Bearer <the API_KEY you set>"
    : "none required; set API_KEY to require a bearer token (API keys per application come later)";
  return [
    `Evently is running: ${config.queue.QUEUE_TRANSPORT === "rabbitmq" ? "API, dispatcher and worker" : "API and worker"} in one process.`,
    `  API       ${api}  (check: curl ${api}/ready; usage: README, "Using the API")`,
    `  Database  ${db}`,
    `  Queue     ${queueLine(config)}`,
    `  API key   ${key}`,
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
