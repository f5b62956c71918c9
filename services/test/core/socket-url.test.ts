import { afterAll, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import postgres from "postgres";
import { createSql } from "../../core/db/client.ts";
import { migrate } from "../../core/db/migrate.ts";
import { postgresTarget } from "../../core/db/socket-url.ts";
import { ADMIN_URL } from "../support/database.ts";

test("a URL naming a socket directory, libpq's way, becomes postgres.js's socket path", () => {
  expect(postgresTarget("postgres://evently@/evently?host=/var/run/postgresql")).toEqual({
    url: "postgres://evently@localhost/evently",
    path: "/var/run/postgresql/.s.PGSQL.5432",
  });
  expect(postgresTarget("postgresql://evently:pw@%2Fcloudsql%2Fproj%3Aregion%3Adb/evently?sslmode=disable")).toEqual({
    url: "postgresql://evently:pw@localhost/evently?sslmode=disable",
    path: "/cloudsql/proj:region:db/.s.PGSQL.5432",
  });
  // The port names the socket file; a trailing slash on the directory does not double.
  expect(postgresTarget("postgres://u@localhost:6543/db?host=/tmp/").path).toBe("/tmp/.s.PGSQL.6543");
  expect(postgresTarget("postgres:///db?host=/tmp&port=5433").path).toBe("/tmp/.s.PGSQL.5433");
  // A host name or address is left alone.
  expect(postgresTarget("postgres://u:p%40ss@db.internal:5432/evently")).toEqual({ url: "postgres://u:p%40ss@db.internal:5432/evently" });
});

// The local server's socket directory, asked over TCP; the test needs the server to have one.
const admin = postgres(ADMIN_URL, { max: 1, onnotice: () => {} });
const [setting] = await admin<{ unix_socket_directories: string }[]>`show unix_socket_directories`;
const socketDir = setting!.unix_socket_directories.split(",")[0]!.trim();
const database = `evently_socket_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
const adminPort = new URL(ADMIN_URL).port || "5432";

afterAll(async () => {
  await admin.unsafe(`drop database if exists "${database}" with (force)`);
  await admin.end();
});

test("migrate and a pool connect through the server's Unix socket when DATABASE_URL names it", async () => {
  expect(existsSync(`${socketDir}/.s.PGSQL.${adminPort}`)).toBe(true);
  const user = decodeURIComponent(new URL(ADMIN_URL).username || "postgres");
  const url = `postgres://${user}@/${database}?host=${socketDir}&port=${adminPort}`;
  const result = await migrate(url);
  expect(result.applied.length).toBeGreaterThan(0);
  const sql = createSql({ DATABASE_URL: url, DATABASE_POOL_MAX: 1 }, { pool: "api" });
  try {
    // No server address: the connection is a Unix socket, not TCP.
    const [row] = await sql`select inet_server_addr() as address, current_database() as name`;
    expect(row).toEqual({ address: null, name: database });
  } finally {
    await sql.end();
  }
});
