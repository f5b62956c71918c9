import { readdir } from "node:fs/promises";
import { join } from "node:path";
import postgres from "postgres";
import { postgresTarget, type PostgresTarget } from "./socket-url.ts";

const MIGRATIONS_DIR = join(import.meta.dir, "..", "migrations");
// Any constant works; it only has to be the same for every process running migrate.
const MIGRATE_LOCK = 7_311_401;

export interface MigrateResult {
  applied: string[];
  current: number;
}

function migrateSql(target: PostgresTarget) {
  return postgres(target.url, { path: target.path, max: 1, onnotice: () => {}, connection: { application_name: "evently-migrate" } });
}

/** Creates the database named in `url` if it does not exist (concurrent callers are fine). */
export async function ensureDatabase(url: string): Promise<void> {
  const target = postgresTarget(url);
  const name = decodeURIComponent(new URL(target.url).pathname.slice(1));
  if (!name) return;
  const admin = new URL(target.url);
  admin.pathname = "/postgres";
  const sql = migrateSql({ url: admin.toString(), path: target.path });
  try {
    const [row] = await sql`select 1 as ok from pg_database where datname = ${name}`;
    if (!row) {
      await sql.unsafe(`create database "${name.replaceAll('"', '""')}"`).catch((err) => {
        // 42P04 duplicate_database, or 23505 when the concurrent create is still committing.
        if (err?.code !== "42P04" && err?.code !== "23505") throw err;
      });
    }
  } finally {
    await sql.end();
  }
}

/**
 * Applies numbered `NNNN_name.sql` files in order, each in its own transaction, under an advisory
 * lock so concurrent runs (several replicas starting at once) apply each file exactly once.
 */
export async function migrate(url: string, log: (line: string) => void = () => {}): Promise<MigrateResult> {
  await ensureDatabase(url);
  const sql = migrateSql(postgresTarget(url));
  try {
    return await sql.begin(async (tx) => {
      await tx`select pg_advisory_xact_lock(${MIGRATE_LOCK})`;
      await tx`create table if not exists evently_migrations (
        version integer primary key, name text not null, applied_at timestamptz not null default now())`;
      const done = new Set((await tx<{ version: number }[]>`select version from evently_migrations`).map((r) => r.version));
      const files = (await readdir(MIGRATIONS_DIR)).filter((f) => /^\d{4}_.+\.sql$/.test(f)).sort();
      const applied: string[] = [];
      let current = 0;
      for (const file of files) {
        const version = Number(file.slice(0, 4));
        current = Math.max(current, version);
        if (done.has(version)) continue;
        await tx.savepoint(async (sp) => {
          await sp.unsafe(await Bun.file(join(MIGRATIONS_DIR, file)).text());
          await sp`insert into evently_migrations (version, name) values (${version}, ${file})`;
        });
        applied.push(file);
        log(`applied ${file}`);
      }
      return { applied, current };
    });
  } finally {
    await sql.end();
  }
}
