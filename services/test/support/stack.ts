import { afterAll, beforeAll, describe } from "bun:test";
import amqp from "amqplib";
import { loadConfig, type Config } from "../../core/config/index.ts";
import { createSql, type Sql } from "../../core/db/client.ts";
import type { Logger } from "../../core/log.ts";
import { deleteTopology } from "../../core/queue/rabbitmq/topology.ts";
import { TRANSPORT_KINDS, type TransportKind } from "../../core/queue/transport.ts";
import { startRoles, type Role, type RunningRoles } from "../../runtime.ts";
import { createTestDatabase, type TestDatabase } from "./database.ts";
import { createKey, TEST_SECRETS_ENV } from "./keys.ts";
import { startReceiver, type Receiver } from "./receiver.ts";

/**
 * A whole Evently installation for one test file: its own database, its own AMQP prefix (so its
 * exchanges and queues are its own), any roles started in-process on port 0.
 */
/** The local RabbitMQ the tests use; the RabbitMQ transport's stacks set it as AMQP_URL. */
export const TEST_AMQP_URL = process.env.TEST_AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672";

/**
 * The transports the end-to-end suite runs against: both by default. TEST_TRANSPORTS=postgres
 * (say) narrows a local run to one.
 */
export const TEST_TRANSPORTS: TransportKind[] = (process.env.TEST_TRANSPORTS ?? TRANSPORT_KINDS.join(","))
  .split(",")
  .filter((t): t is TransportKind => (TRANSPORT_KINDS as readonly string[]).includes(t));

/** Runs `suite` once per transport, each in a describe block named after it. */
export function describeEachTransport(title: string, suite: (transport: TransportKind) => void): void {
  for (const transport of TEST_TRANSPORTS) describe(`${title} [${transport}]`, () => suite(transport));
}

export interface TestStack {
  transport: TransportKind;
  db: TestDatabase;
  sql: Sql;
  env: Record<string, string>;
  /** A key of the default application; `api` sends it unless the call gives an authorization header. */
  appKey: string;
  config(overrides?: Record<string, string>): Config;
  /** Starts `role` in-process; `log` receives its log lines (default: errors to stderr). */
  start(role: Role, overrides?: Record<string, string>, log?: Logger): Promise<RunningRoles>;
  /** Creates an endpoint for `url` with a route for `eventType`; returns the endpoint. */
  subscribe(running: RunningRoles, url: string, eventType: string, endpoint?: Record<string, unknown>): Promise<{ id: string; secret: string }>;
  /** Sends a JSON request to a running API. */
  api(running: RunningRoles, method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: any; headers: Headers }>;
  stop(): Promise<void>;
}

export async function createTestStack(env: Record<string, string> = {}, transport: TransportKind = "rabbitmq"): Promise<TestStack> {
  const db = await createTestDatabase();
  const prefix = `evently_test_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  const baseEnv: Record<string, string> = {
    DATABASE_URL: db.url,
    DATABASE_POOL_MAX: "5",
    AMQP_PREFIX: prefix,
    HOST: "127.0.0.1",
    PORT: "0",
    DELIVERY_ALLOW_PRIVATE_NETWORKS: "true",
    DISPATCH_INTERVAL_MS: "100",
    QUEUE_POLL_INTERVAL_MS: "100",
    QUEUE_TRANSPORT: transport,
    AMQP_URL: TEST_AMQP_URL,
    LOG_LEVEL: "error",
    ...TEST_SECRETS_ENV,
    ...env,
  };
  const sql = createSql({ DATABASE_URL: db.url, DATABASE_POOL_MAX: 2 }, { pool: "test" });
  const running: RunningRoles[] = [];
  const appKey = await createKey(sql);
  const config = (overrides: Record<string, string> = {}) => loadConfig({ ...baseEnv, ...overrides });
  const api: TestStack["api"] = async (r, method, path, body, headers = {}) => {
    const response = await fetch(`${r.url}${path}`, {
      method,
      headers: { "content-type": "application/json", authorization: `Bearer ${appKey}`, ...headers },
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : null, headers: response.headers };
  };
  return {
    transport,
    db,
    sql,
    env: baseEnv,
    appKey,
    config,
    async start(role, overrides, log) {
      const r = await startRoles(config(overrides), role, { log });
      running.push(r);
      return r;
    },
    async subscribe(r, url, eventType, endpoint = {}) {
      const created = await api(r, "POST", "/endpoints", { url, ...endpoint });
      if (created.status !== 201) throw new Error(`POST /endpoints: ${created.status} ${JSON.stringify(created.body)}`);
      const route = await api(r, "POST", "/routes", { endpointId: created.body.id, eventType });
      if (route.status !== 201) throw new Error(`POST /routes: ${route.status} ${JSON.stringify(route.body)}`);
      return created.body;
    },
    api,
    async stop() {
      for (const r of running.reverse()) await r.stop();
      await sql.end();
      if (transport === "rabbitmq") {
        const connection = await amqp.connect(TEST_AMQP_URL);
        const channel = await connection.createChannel();
        await deleteTopology(channel, config().queue).catch(() => {});
        await channel.close();
        await connection.close();
      }
      await db.drop();
    },
  };
}

/** What {@link useTestStack} makes: a stack, its roles and a receiver, with calls through the first role. */
export interface StackFixture {
  readonly stack: TestStack;
  /** The first role started: the API that `api` and `subscribe` go to. */
  readonly app: RunningRoles;
  readonly roles: RunningRoles[];
  readonly receiver: Receiver;
  readonly sql: Sql;
  /** A JSON request to `app`, with the application's key unless `headers` give another. */
  api(method: string, path: string, body?: unknown, headers?: Record<string, string>): ReturnType<TestStack["api"]>;
  /** An endpoint for `url` with a route for `eventType`, made through `app`. */
  subscribe(url: string, eventType: string, endpoint?: Record<string, unknown>): ReturnType<TestStack["subscribe"]>;
}

/**
 * The frame most end-to-end files share: a receiver, a stack on `transport` with `env`, and its
 * roles (default one `all` process) made before the tests of the enclosing describe block (or
 * file) and removed after them. Call it at describe time; its fields are set in beforeAll, so read
 * them inside tests and hooks.
 */
export function useTestStack(transport: TransportKind, env: Record<string, string> = {}, roles: Role[] = ["all"]): StackFixture {
  let stack: TestStack | undefined;
  let receiver: Receiver | undefined;
  const running: RunningRoles[] = [];
  const made = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error("the test stack is made in beforeAll: use it inside tests and hooks");
    return value;
  };
  const fixture: StackFixture = {
    get stack() {
      return made(stack);
    },
    get app() {
      return made(running[0]);
    },
    roles: running,
    get receiver() {
      return made(receiver);
    },
    get sql() {
      return made(stack).sql;
    },
    api: (method, path, body, headers) => made(stack).api(made(running[0]), method, path, body, headers),
    subscribe: (url, eventType, endpoint) => made(stack).subscribe(made(running[0]), url, eventType, endpoint),
  };
  beforeAll(async () => {
    receiver = startReceiver();
    stack = await createTestStack(env, transport);
    // One at a time, in order: the first is the API the fixture's calls go to.
    for (const role of roles) running.push(await stack.start(role));
  });
  // Stopping takes longer than a test's budget after a test cut every database connection: each
  // pool left with a query the cut never settled waits out its 5 s end timeout (seen 10 s for one
  // `all` process; more with RabbitMQ's pools, and past 30 s in a slow hour).
  afterAll(async () => {
    await stack?.stop();
    await receiver?.stop();
  }, 90_000);
  return fixture;
}
