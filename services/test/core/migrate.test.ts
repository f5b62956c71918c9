import { afterAll, expect, test } from "bun:test";
import postgres from "postgres";
import { migrate } from "../../core/db/migrate.ts";

const name = `evently_migrate_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
const url = `postgres://postgres@127.0.0.1:5432/${name}`;

afterAll(async () => {
  const admin = postgres("postgres://postgres@127.0.0.1:5432/postgres", { max: 1, onnotice: () => {} });
  await admin.unsafe(`drop database if exists "${name}" with (force)`);
  await admin.end();
});

test("concurrent migrate runs create the database and apply each migration exactly once", async () => {
  const results = await Promise.all(Array.from({ length: 4 }, () => migrate(url)));
  const appliedCounts = results.map((r) => r.applied.length);
  // Exactly one run applied the files; the others found the schema current.
  expect(appliedCounts.filter((n) => n > 0)).toHaveLength(1);
  expect(results.every((r) => r.current === results[0]!.current)).toBe(true);

  const sql = postgres(url, { max: 1 });
  const rows = await sql`select version, name from evently_migrations order by version`;
  expect(rows.length).toBe(Math.max(...appliedCounts));
  const tables = await sql`select table_name from information_schema.tables where table_schema = 'public' order by 1`;
  expect(tables.map((t) => t.table_name).sort()).toEqual(["attempts", "endpoints", "evently_migrations", "events", "jobs", "outbox", "routes"]);
  await sql.end();

  const again = await migrate(url);
  expect(again.applied).toEqual([]);
});
