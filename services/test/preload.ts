import { connect } from "node:net";
import { afterAll } from "bun:test";
import { dropTemplate, prepareTemplate } from "./support/database.ts";

/**
 * Runs once per `bun test` process. The tests use the real local Postgres and RabbitMQ; when one
 * is not there, say so in one line and stop at once, instead of every test timing out on it.
 */
const postgresUrl = process.env.TEST_DATABASE_ADMIN_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const amqpVariable = process.env.TEST_AMQP_URL ? "TEST_AMQP_URL" : "AMQP_URL";
const amqpUrl = process.env.TEST_AMQP_URL ?? process.env.AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672";
// A run narrowed to the Postgres transport (TEST_TRANSPORTS=postgres) has no use for RabbitMQ.
const needsRabbit = (process.env.TEST_TRANSPORTS ?? "rabbitmq").split(",").includes("rabbitmq");

function reachable(raw: string, defaultPort: number): Promise<string | undefined> {
  const url = new URL(raw);
  const host = url.hostname.replace(/^\[|\]$/g, "") || "127.0.0.1";
  const port = Number(url.port) || defaultPort;
  return new Promise((done) => {
    const socket = connect({ host, port });
    const finish = (problem?: string) => (socket.destroy(), done(problem && `${host}:${port} (${problem})`));
    socket.setTimeout(2000, () => finish("no answer in 2 s"));
    socket.once("connect", () => finish());
    socket.once("error", (err: NodeJS.ErrnoException) => finish(err.code ?? err.message));
  });
}

const [postgres, rabbit] = await Promise.all([
  reachable(postgresUrl, 5432),
  needsRabbit ? reachable(amqpUrl, amqpUrl.startsWith("amqps:") ? 5671 : 5672) : undefined,
]);
const missing = [
  postgres &&
    `Postgres is not reachable at ${postgres}: start it (e.g. \`pg_ctlcluster <version> main start\`) or set TEST_DATABASE_ADMIN_URL`,
  rabbit && `RabbitMQ is not reachable at ${rabbit}: start it (e.g. \`rabbitmq-server -detached\`) or set ${amqpVariable}`,
].filter(Boolean);
if (missing.length > 0) {
  console.error(`tests need the local servers: ${missing.join("; ")}`);
  process.exit(1);
}

// Migrates the template every test file clones; a hook declared here runs once, after every file.
await prepareTemplate();
afterAll(dropTemplate);
