import postgres from "postgres";
import { isAlive } from "../../../loadtest/processes.ts";
import { migrate } from "../../core/db/migrate.ts";

/**
 * Test databases: one template migrated per run, then one clone per test file (CREATE DATABASE …
 * TEMPLATE is a file copy, far faster than migrating each time).
 */
export const ADMIN_URL = process.env.TEST_DATABASE_ADMIN_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const TEMPLATE = `evently_template_${process.pid}`;

function urlFor(database: string): string {
  const url = new URL(ADMIN_URL);
  url.pathname = `/${database}`;
  return url.toString();
}

async function withAdmin<T>(fn: (sql: postgres.Sql) => Promise<T>): Promise<T> {
  const sql = postgres(ADMIN_URL, { max: 1, onnotice: () => {} });
  try {
    return await fn(sql);
  } finally {
    await sql.end();
  }
}

export async function prepareTemplate(): Promise<void> {
  await withAdmin(async (sql) => {
    // Templates left by crashed runs of earlier processes.
    const stale = await sql<{ datname: string }[]>`
      select datname from pg_database where datname like 'evently\_template\_%' or datname like 'evently\_test\_%'`;
    for (const { datname } of stale) {
      // evently_template_<pid> and evently_test_<pid>_<n>_<random>: the pid is the third part of both.
      const pid = Number(datname.split("_")[2]);
      if (pid !== process.pid && !isAlive(pid)) await sql.unsafe(`drop database if exists "${datname}" with (force)`);
    }
  });
  await migrate(urlFor(TEMPLATE));
}

/** Drops this run's template, after the last test file (the preload's afterAll: `bun test` fires no process "exit"). */
export async function dropTemplate(): Promise<void> {
  await withAdmin((sql) => sql.unsafe(`drop database if exists "${TEMPLATE}" with (force)`));
}

export interface TestDatabase {
  url: string;
  name: string;
  drop(): Promise<void>;
}

let counter = 0;

/** A fresh, migrated database of its own for one test file. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `evently_test_${process.pid}_${++counter}_${Math.random().toString(36).slice(2, 8)}`;
  await withAdmin((sql) => sql.unsafe(`create database "${name}" template "${TEMPLATE}"`));
  return {
    url: urlFor(name),
    name,
    drop: () => withAdmin((sql) => sql.unsafe(`drop database if exists "${name}" with (force)`)).then(() => {}),
  };
}
