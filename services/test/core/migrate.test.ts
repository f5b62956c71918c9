import { afterAll, expect, test } from "bun:test";
import { join } from "node:path";
import postgres from "postgres";
import { ensureDatabase, migrate } from "../../core/db/migrate.ts";

const scratch = (label: string) => `evently_${label}_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
const name = scratch("migrate");
const upgraded = scratch("upgrade");
const urlOf = (database: string) => `postgres://postgres@127.0.0.1:5432/${database}`;
const url = urlOf(name);

afterAll(async () => {
  const admin = postgres("postgres://postgres@127.0.0.1:5432/postgres", { max: 1, onnotice: () => {} });
  for (const database of [name, upgraded]) await admin.unsafe(`drop database if exists "${database}" with (force)`);
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

test("0002 carries the due work of a version-1 database into the outbox; 0003 leaves its endpoints unrotated", async () => {
  await ensureDatabase(urlOf(upgraded));
  const sql = postgres(urlOf(upgraded), { max: 1, onnotice: () => {} });
  try {
    // A database as version 1 left it, with a job in every state that was due or in flight.
    await sql.unsafe(await Bun.file(join(import.meta.dir, "../../core/migrations/0001_init.sql")).text());
    await sql`create table evently_migrations (version integer primary key, name text not null, applied_at timestamptz not null default now())`;
    await sql`insert into evently_migrations (version, name) values (1, '0001_init.sql')`;
    await sql`insert into endpoints (id, url, secret) values ('endpoint_1', 'https://example.com/hook', 'whsec_x')`;
    await sql`insert into events (id, type, payload, created_at) values ('evt_1', 'a.b', '{}', now())`;
    const due = new Date(Date.now() + 60_000);
    for (const [id, status, next] of [
      ["job_pending", "pending", due],
      ["job_queued", "queued", null],
      ["job_delivering", "delivering", due],
      ["job_scheduled", "scheduled", due],
      ["job_delivered", "delivered", null],
    ] as const)
      await sql`insert into jobs (id, event_id, endpoint_id, event_type, status, next_attempt_at, created_at)
                values (${id}, 'evt_1', 'endpoint_1', 'a.b', ${status}, ${next}, now())`;

    expect((await migrate(urlOf(upgraded))).applied).toEqual(["0002_outbox.sql", "0003_secret_rotation.sql"]);
    const entries = await sql<{ job_id: string; reason: string; due_at: Date }[]>`select job_id, reason, due_at from outbox order by job_id`;
    expect(entries.map((e) => [e.job_id, e.reason])).toEqual([
      ["job_delivering", "lease"],
      ["job_pending", "publish"],
      ["job_scheduled", "retry"],
    ]);
    expect(entries.every((e) => e.due_at.getTime() === due.getTime())).toBe(true);
    const jobs = await sql<{ id: string; status: string }[]>`select id, status from jobs order by id`;
    expect(Object.fromEntries(jobs.map((j) => [j.id, j.status]))).toMatchObject({ job_queued: "pending", job_pending: "pending" });
    await expect(sql`update jobs set status = 'queued' where id = 'job_queued'`).rejects.toThrow(/jobs_status_check/);

    // 0003: an existing endpoint keeps its secret and has no previous one; the pair is set together or not at all.
    const [endpoint] = await sql`select secret, previous_secret, previous_secret_expires_at from endpoints where id = 'endpoint_1'`;
    expect(endpoint).toEqual({ secret: "whsec_x", previous_secret: null, previous_secret_expires_at: null });
    await expect(sql`update endpoints set previous_secret = 'whsec_y' where id = 'endpoint_1'`).rejects.toThrow(
      /endpoints_previous_secret_check/,
    );
  } finally {
    await sql.end();
  }
});
