import postgres from "postgres";
import type { Config } from "../config/index.ts";

export type Sql = postgres.Sql<{}>;
export type TxSql = postgres.TransactionSql<{}>;

/**
 * One pool per process. Column names come back camelCased so rows map straight onto API shapes;
 * only column names: keys inside json values (custom headers, metadata) stay as stored.
 * Reconnects are quick and bounded, so a database restart costs seconds, not minutes.
 * (services/core/db/patch-postgres.mjs guards a postgres.js crash on cut connections.)
 */
export function createSql(config: Config["database"], overrides: postgres.Options<{}> = {}): Sql {
  return postgres(config.DATABASE_URL, {
    max: config.DATABASE_POOL_MAX,
    transform: { column: { from: postgres.toCamel, to: postgres.fromCamel } },
    onnotice: () => {},
    connect_timeout: 5,
    backoff: (retries) => Math.min(0.05 * 2 ** retries, 2) * (0.5 + Math.random() / 2),
    connection: {
      application_name: "evently",
      // Every statement on the delivery path finds its rows through an index. Prepared statements
      // get generic plans after a few runs (planning each run of a large-array statement cost up to
      // 40% of it), and a generic plan made while a table was still small may choose a sequential
      // scan and keep it once the table is large, until statistics change (never, where
      // autovacuum is off). Ruling out sequential scans wherever an index applies prevents that.
      enable_seqscan: "off",
    },
    ...overrides,
  });
}
