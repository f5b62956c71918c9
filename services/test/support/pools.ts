import { afterAll, beforeAll } from "bun:test";
import { createSql, type Sql } from "../../core/db/client.ts";
import { createTestDatabase, type TestDatabase } from "./database.ts";

/**
 * A test file's own database with connection pools of their own on it: two pools stand for two
 * processes (API or worker) sharing the database and nothing else. Made before the file's tests;
 * after them `beforeClose` runs (stop what still uses the pools), then every pool ends and the
 * database is dropped. Call at module or describe time; read its fields inside tests.
 */
export interface TestDatabasePools {
  readonly url: string;
  /** The first pool, made with the database. */
  readonly sql: Sql;
  /** One more pool, on this database or on `url` (an unreachable one, say); ended with the rest. */
  pool(url?: string): Sql;
}

export function useDatabasePools(beforeClose: () => Promise<unknown> = async () => {}): TestDatabasePools {
  let db: TestDatabase | undefined;
  let first: Sql | undefined;
  const pools: Sql[] = [];
  const made = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error("the test database is made in beforeAll: use it inside tests");
    return value;
  };
  const fixture: TestDatabasePools = {
    get url() {
      return made(db).url;
    },
    get sql() {
      return made(first);
    },
    pool(url = made(db).url) {
      const created = createSql({ DATABASE_URL: url, DATABASE_POOL_MAX: 4 }, { pool: "test", connect_timeout: 2 });
      pools.push(created);
      return created;
    },
  };
  beforeAll(async () => {
    db = await createTestDatabase();
    first = fixture.pool();
  });
  afterAll(async () => {
    await beforeClose();
    await Promise.all(pools.map((p) => p.end({ timeout: 1 })));
    await db?.drop();
  });
  return fixture;
}

/**
 * A pool that counts the statements sent through it: a limiter's round trips. Only tagged-template
 * calls are statements; `sql(…)` identifier and value helpers go through the same function.
 */
export function countStatements(over: Sql): { sql: Sql; statements: () => number } {
  let statements = 0;
  const proxy = new Proxy(over, {
    apply: (target, self, args) => {
      if (Array.isArray(args[0]) && "raw" in args[0]) statements++;
      return Reflect.apply(target, self, args);
    },
  });
  return { sql: proxy, statements: () => statements };
}
