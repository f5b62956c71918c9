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
      // Hot-path statements take arrays (unnest / any) whose sizes swing from 1 to thousands. A
      // generic plan cached while the tables were small keeps scanning them whole once they grow,
      // and stays cached wherever statistics lag (autovacuum off or slow). Planning each execution
      // costs far less than one such scan.
      plan_cache_mode: "force_custom_plan",
    },
    ...overrides,
  });
}
