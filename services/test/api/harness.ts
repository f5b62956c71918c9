import { apiOperations, createApp } from "../../api/app.ts";
import type { ApiOperation } from "../../http/operation.ts";
import { Ingest, type JobHandoff } from "../../core/ingest/index.ts";
import { loadConfig, type Config } from "../../core/config/index.ts";
import { memoryTarget } from "../../core/config/schema.ts";
import { MemoryGuard } from "../../core/memory-guard.ts";
import { createSql, type Sql } from "../../core/db/client.ts";
import type { Logger } from "../../core/log.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { createKey, TEST_SECRETS_ENV } from "../support/keys.ts";
import { Authenticator } from "../../api/auth/authenticator.ts";
import { IngestRateLimiter } from "../../core/ratelimit/limiter.ts";
import { silentLogger } from "../../core/log.ts";

/** An API over a database of its own, driven through `app.handle` (no port). */
export interface TestApi {
  app: ReturnType<typeof createApp>;
  sql: Sql;
  db: TestDatabase;
  config: Config;
  /** A key of the default application; requests carry it unless they say otherwise. */
  appKey: string;
  request(method: string, path: string, options?: RequestOptions): Promise<TestResponse>;
  /** Row counts of every table: "nothing was written" is these being unchanged. */
  counts(): Promise<Record<Table, number>>;
  /** A digest of every row of every table, to catch updates as well as inserts and deletes. */
  fingerprint(): Promise<string>;
  close(): Promise<void>;
}

export interface RequestOptions {
  /** Sent as JSON unless it is a string (sent verbatim). */
  body?: unknown;
  headers?: Record<string, string>;
  /** Sent as the bearer token: the default application's key unless given; null sends none. */
  key?: string | null;
}

export interface TestResponse {
  status: number;
  headers: Headers;
  // The API's bodies are JSON of many shapes; tests assert on them field by field.
  body: any;
  text: string;
}

export interface StartOptions {
  env?: Record<string, string>;
  readiness?: (sql: Sql) => Promise<Record<string, boolean>>;
  renderMetrics?: () => Promise<string>;
  log?: Logger;
}

/**
 * API tests deliver nothing: committed jobs stay due in the outbox, as with a RabbitMQ that is
 * down, which is what these tests look at.
 */
export const noHandoff: JobHandoff = { publishGraceMs: 5000, commitNotify: null, publish: () => {}, commitConsumer: () => null };

// api_keys is left out: its last_used_at changes with every flush of key uses.
const TABLES = ["applications", "endpoints", "routes", "events", "jobs", "outbox", "attempts"] as const;
type Table = (typeof TABLES)[number];

export async function startApi(options: StartOptions = {}): Promise<TestApi> {
  const db = await createTestDatabase();
  const config = loadConfig({
    DATABASE_URL: db.url,
    DATABASE_POOL_MAX: "4",
    // API tests deliver nothing and should not wait on DNS for their made-up hosts; the tests of
    // the SSRF check on endpoint URLs set this to "false".
    DELIVERY_ALLOW_PRIVATE_NETWORKS: "true",
    ...TEST_SECRETS_ENV,
    ...options.env,
  });
  const sql = createSql({ DATABASE_URL: db.url, DATABASE_POOL_MAX: 4 }, { pool: "test" });
  const ingest = new Ingest(sql, noHandoff, config.ingest);
  const readiness = options.readiness ?? postgresReadiness;
  const authenticator = new Authenticator(sql, config.http.ADMIN_API_KEY!, silentLogger);
  await authenticator.start();
  const rateLimit = new IngestRateLimiter(sql, { cleanupIntervalMs: 0 });
  const app = createApp({
    config,
    sql,
    ingest,
    readiness: () => readiness(sql),
    renderMetrics: options.renderMetrics,
    log: options.log,
    authenticate: authenticator.authenticate,
    rateLimit,
    memory: new MemoryGuard({ limitBytes: memoryTarget(config.process, undefined) }),
  });
  const appKey = await createKey(sql);
  return {
    app,
    sql,
    db,
    config,
    appKey,
    request: (method, path, opts = {}) => send(app, method, path, { ...opts, key: opts.key === undefined ? appKey : opts.key }),
    async counts() {
      const out = {} as Record<Table, number>;
      for (const table of TABLES) {
        const [row] = await sql<{ n: number }[]>`select count(*)::int as n from ${sql(table)}`;
        out[table] = row!.n;
      }
      return out;
    },
    async fingerprint() {
      const parts: string[] = [];
      for (const table of TABLES) {
        const [row] = await sql<{ digest: string | null }[]>`
          select md5(string_agg(t::text, '|' order by t::text)) as digest from ${sql(table)} t`;
        parts.push(`${table}:${row!.digest}`);
      }
      return parts.join(" ");
    },
    async close() {
      await authenticator.stop();
      await rateLimit.stop();
      await sql.end();
      await db.drop();
    },
  };
}

export async function send(
  app: { handle(request: Request): Promise<Response> },
  method: string,
  path: string,
  opts: RequestOptions = {},
): Promise<TestResponse> {
  const headers: Record<string, string> = { ...(opts.key ? { authorization: `Bearer ${opts.key}` } : {}), ...opts.headers };
  let body: string | undefined;
  if (opts.body !== undefined) {
    body = typeof opts.body === "string" ? opts.body : JSON.stringify(opts.body);
    if (!Object.keys(headers).some((h) => h.toLowerCase() === "content-type")) headers["content-type"] = "application/json";
  }
  const response = await app.handle(new Request(`http://localhost${path}`, { method, headers, body }));
  const text = await response.text();
  let parsed: unknown = undefined;
  try {
    parsed = text === "" ? undefined : JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: response.status, headers: response.headers, body: parsed, text };
}

/** A real check: Postgres answers a query. */
export async function postgresReadiness(sql: Sql): Promise<Record<string, boolean>> {
  return { postgres: await sql`select 1`.then(() => true, () => false) };
}

let counter = 0;
/** A distinct, valid https URL per call, so endpoints are told apart in assertions. */
export const hookUrl = () => `https://hooks.example.com/${++counter}`;

/**
 * The route table as createApp builds it (with /metrics), for tests that walk every route. Building
 * it runs no query and checks no key: the services only keep what they are given.
 */
export function routeTable(config: Config = loadConfig(TEST_SECRETS_ENV)): ApiOperation[] {
  return apiOperations({
    config,
    sql: null as never,
    ingest: null as never,
    readiness: async () => ({}),
    renderMetrics: async () => "",
    authenticate: async () => null,
    rateLimit: { take: () => ({ ok: true }) },
  });
}
