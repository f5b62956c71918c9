import postgres from "postgres";
import type { Config } from "../config/index.ts";
import { postgresTarget } from "./socket-url.ts";

export type Sql = postgres.Sql<{}>;
export type TxSql = postgres.TransactionSql<{}>;

/**
 * One pool per process. Column names come back camelCased so rows map straight onto API shapes;
 * only column names: keys inside json values (custom headers, metadata) stay as stored.
 * Reconnects are quick and bounded, so a database restart costs seconds, not minutes.
 * Statements are prepared, so Postgres plans them generically after a few runs and re-plans when a
 * table's statistics change: plans follow the tables as autovacuum analyzes them. (Forcing a fresh
 * plan per run cost up to 40% of a large-array statement; a server with autovacuum off needs
 * ANALYZE run by hand, or cached plans keep the shape they had when the tables were empty.)
 * (services/core/db/patch-postgres.mjs guards a postgres.js crash on cut connections.)
 *
 * JIT compilation is off on every connection (CONNECTION_SETTINGS): Postgres decides it from a
 * plan's estimated cost, and a cached generic plan over big tables is estimated as if it read a
 * tenth of them. With a backlog of a million jobs, the Postgres transport's take (a few
 * milliseconds of work) was compiled on every run: 0.8-0.9 s each, and the backlog drained at
 * about 340 deliveries/s. Every statement here is short, so compiling never pays.
 *
 * `pool` names what the pool is for; its connections carry it as their application_name,
 * `evently-<pool>` (PoolName), so `pg_stat_activity` (and a server log whose prefix has `%a`)
 * says which part of Evently a backend serves, and the bench splits Postgres's CPU by it.
 */
export function createSql(
  config: Pick<Config["database"], "DATABASE_URL" | "DATABASE_POOL_MAX">,
  { pool, ...overrides }: postgres.Options<{}> & { pool: PoolName },
): Sql {
  // Unset means "embedded", which the entry point resolves to a URL before anything connects.
  if (!config.DATABASE_URL) throw new Error("DATABASE_URL is not set: start through services/main.ts, or set it");
  const target = postgresTarget(config.DATABASE_URL);
  return postgres(target.url, {
    path: target.path,
    max: config.DATABASE_POOL_MAX,
    transform: { column: { from: postgres.toCamel, to: postgres.fromCamel } },
    onnotice: () => {},
    connect_timeout: 5,
    backoff: (retries) => Math.min(0.05 * 2 ** retries, 2) * (0.5 + Math.random() / 2),
    ...overrides,
    connection: { ...CONNECTION_SETTINGS, application_name: `evently-${pool}`, ...overrides.connection },
  });
}

/**
 * What a pool is for: a role's own pool (`api`, `worker`, `dispatcher`, or `all` for one process
 * running every role) with its LISTEN connection; `ingest` the group commits; `take` the Postgres
 * transport's takes; `outbox-clear` the RabbitMQ fast path's clears; `delivery` the worker's claims,
 * deferrals and attempt writes; `reencrypt` that command; `test` the test suites.
 */
export type PoolName = "api" | "worker" | "dispatcher" | "all" | "ingest" | "take" | "outbox-clear" | "delivery" | "reencrypt" | "test";

/** Session settings every connection starts with; `overrides.connection` adds to them. */
export const CONNECTION_SETTINGS: Record<string, string> = { jit: "off" };

/**
 * A CTE (`relaxed_commit`) that lets its statement's commit return before the WAL is flushed:
 * `set_config(…, true)` turns synchronous_commit off until the statement's own transaction ends, and
 * the commit reads it then. The statement must read `relaxed_commit` for it to run. For writes that
 * only say a job is being handled (a worker's claim, a take from the outbox): lost in a database
 * crash, the job is offered again, which at-least-once delivery allows. Any durable commit after it
 * flushes it too (the WAL is written in order), so an attempt recorded durably never outlives its
 * claim. Saves the flush wait on the path to every delivery (about 0.3 ms idle here, more under load).
 */
export const RELAXED_COMMIT = "relaxed_commit as (select set_config('synchronous_commit', 'off', true) as setting)";

/**
 * The session of the pools the delivery path's statements run in (createIndexOnlySql): the
 * Postgres transport's take, the fast path's outbox clear, the worker's claims and attempt writes
 * (in BATCH_SESSION, which adds to it). Each runs hundreds of times a second from a cached plan,
 * and a plan is made once, from the statistics of that moment, typically while `outbox` is empty
 * and `jobs` small; both then grow or churn (tens of thousands of dead outbox entries between two
 * ANALYZEs at 1,000 events/s, a million in a backlog). Made that way, their plans scanned the whole
 * outbox or `jobs`, in some runs or in every one (the statements' comments say what each did).
 * With sequential scans disabled, a plan reads every table through the index its statement was
 * written for, whatever the statistics said; forcing the generic plan makes it once per
 * connection instead of planning every call.
 */
export const INDEX_ONLY_SESSION: Record<string, string> = { enable_seqscan: "off", plan_cache_mode: "force_generic_plan" };

/**
 * INDEX_ONLY_SESSION without nested loops, for statements that read every table only through the
 * array of keys they were given (the worker's claims, attempt writes and deferrals). A generic plan
 * takes each array for 10 elements, so it joined a batch's rows by nested loops: rescanning a CTE
 * for every row, or probing `jobs` for every row by the row's key and the whole array again, which
 * the index re-reads and sorts on each probe. Both grow with the square of the batch; logged in a
 * backlog's drain, a claim of 500 jobs took 147 ms, 137 of them in that loop. Joined by hash, each
 * table is read once.
 */
export const BATCH_SESSION: Record<string, string> = { ...INDEX_ONLY_SESSION, enable_nestloop: "off" };

/**
 * A small pool in INDEX_ONLY_SESSION, or a session with more settings off (BATCH_SESSION). Such a
 * session turned postgres.js's type lookup at connect, a catalog join, into 270-415 ms per
 * connection, so the pool skips it; the lookup is how postgres.js learns to write array parameters,
 * so the arrays these statements send (text, int and timestamptz) get serializers of their own.
 */
export function createIndexOnlySql(
  config: Pick<Config["database"], "DATABASE_URL" | "DATABASE_POOL_MAX">,
  max: number,
  { session = INDEX_ONLY_SESSION, ...overrides }: Pick<postgres.Options<{}>, "onnotice"> & { session?: Record<string, string>; pool: PoolName },
): Sql {
  const array = (oid: number) => ({ to: oid, from: [] as number[], serialize: arrayLiteral, parse: (x: string) => x });
  return createSql(config, {
    ...overrides,
    max,
    fetch_types: false,
    types: { textArray: array(1009), intArray: array(1007), timestamptzArray: array(1185) },
    connection: session,
  }) as unknown as Sql;
}

const QUOTE_OR_BACKSLASH = /[\\"]/;
const QUOTES_AND_BACKSLASHES = /[\\"]/g;

/**
 * A one-dimensional Postgres array literal; every element quoted, so any text is safe. Elements are
 * scanned once for a quote or backslash and only those with one are rewritten: an attempt's headers
 * are JSON, full of quotes, and escaping each through a callback cost 3.5 µs per attempt row in the
 * worker's writes against 1.5 µs this way.
 */
export function arrayLiteral(values: unknown[]): string {
  let literal = "{";
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (i > 0) literal += ",";
    if (v === null || v === undefined) {
      literal += "NULL";
      continue;
    }
    const text = String(v);
    literal += QUOTE_OR_BACKSLASH.test(text) ? `"${text.replace(QUOTES_AND_BACKSLASHES, "\\$&")}"` : `"${text}"`;
  }
  return literal + "}";
}
