import { afterAll, expect, test } from "bun:test";
import { join } from "node:path";
import postgres from "postgres";
import { ensureDatabase, migrate } from "../../core/db/migrate.ts";
import { DEFAULT_APPLICATION_ID } from "../../core/applications/sql.ts";
import { createSql } from "../../core/db/client.ts";
import { insertEventsWithJobs } from "../../core/events/sql.ts";
import { isId, newId } from "../../core/ids.ts";

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
  expect(tables.map((t) => t.table_name).sort()).toEqual([
    "api_keys", "applications", "attempts", "delivery_rate_buckets", "endpoint_health", "endpoints", "evently_migrations", "events",
    "ingest_rate_buckets", "jobs", "operations", "outbox", "routes",
  ]);
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

    expect((await migrate(urlOf(upgraded))).applied.slice(0, 2)).toEqual(["0002_outbox.sql", "0003_secret_rotation.sql"]);
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

test("0004 moves a filled database into the default application, where everything keeps working", async () => {
  const database = scratch("tenancy");
  await ensureDatabase(urlOf(database));
  const sql = postgres(urlOf(database), { max: 1, onnotice: () => {} });
  try {
    // The schema as version 3 left it, with one of everything.
    await sql`create table evently_migrations (version integer primary key, name text not null, applied_at timestamptz not null default now())`;
    for (const [version, file] of [[1, "0001_init.sql"], [2, "0002_outbox.sql"], [3, "0003_secret_rotation.sql"]] as const) {
      await sql.unsafe(await Bun.file(join(import.meta.dir, "../../core/migrations", file)).text());
      await sql`insert into evently_migrations (version, name) values (${version}, ${file})`;
    }
    await sql`insert into endpoints (id, url, secret) values ('ep_old', 'https://example.com/hook', 'whsec_x')`;
    await sql`insert into routes (id, endpoint_id, event_type) values ('rt_old', 'ep_old', 'order.*')`;
    await sql`insert into events (id, type, payload, idempotency_key, created_at) values ('evt_old', 'order.paid', '{"a":1}', 'key-1', now())`;
    await sql`insert into jobs (id, event_id, endpoint_id, event_type, status, created_at) values ('job_old', 'evt_old', 'ep_old', 'order.paid', 'pending', now())`;
    await sql`insert into outbox (job_id, due_at, reason) values ('job_old', now(), 'publish')`;
    await sql`insert into attempts (id, job_id, event_id, endpoint_id, attempt_number, url, request_headers, duration_ms, created_at)
              values ('att_old', 'job_old', 'evt_old', 'ep_old', 1, 'https://example.com/hook', '{}', 5, now())`;

    const applied = (await migrate(urlOf(database))).applied;
    expect(applied[0]).toBe("0004_applications.sql");

    for (const table of ["endpoints", "routes", "events", "jobs", "attempts"]) {
      const rows = await sql`select distinct app_id from ${sql(table)}`;
      expect([table, rows.map((r) => r.app_id)]).toEqual([table, [DEFAULT_APPLICATION_ID]]);
    }
    const [app] = await sql`select id, uid from applications`;
    expect(app).toEqual({ id: DEFAULT_APPLICATION_ID, uid: "default" });
    expect([...(await sql`select job_id from outbox`)]).toEqual([{ job_id: "job_old" }]);

    // Fan-out still finds the old route; the old idempotency key still replays in its application
    // and is free in another one.
    const client = createSql({ DATABASE_URL: urlOf(database), DATABASE_POOL_MAX: 1 }, { pool: "test" });
    try {
      const now = new Date();
      const row = (id: string, appId: string, key: string | null) => ({ id, appId, type: "order.paid", dataJson: "{}", idempotencyKey: key, createdAt: now, ttlSeconds: null });
      await client`insert into applications (id, name) values ('app_11111111111111111111111111111111', 'Other')`;
      const batch = await insertEventsWithJobs(
        client,
        [row(newId("event"), DEFAULT_APPLICATION_ID, null), row(newId("event"), DEFAULT_APPLICATION_ID, "key-1"), row(newId("event"), "app_11111111111111111111111111111111", "key-1")],
        1000,
      );
      expect(batch.insertedEventIds.size).toBe(2); // the default application's key-1 is a replay
      expect(batch.jobs.map((j) => j.endpointId)).toEqual(["ep_old"]); // the other application has no routes
      // A route cannot link an endpoint of another application, whatever the caller says.
      await expect(
        client`insert into routes (id, app_id, endpoint_id, event_type) values ('rt_x', 'app_11111111111111111111111111111111', 'ep_old', '*')`,
      ).rejects.toThrow(/routes_endpoint_fkey/);
    } finally {
      await client.end();
    }
  } finally {
    await sql.end();
    const admin = postgres("postgres://postgres@127.0.0.1:5432/postgres", { max: 1, onnotice: () => {} });
    await admin.unsafe(`drop database if exists "${database}" with (force)`);
    await admin.end();
  }
});

test("job ids made in Postgres have the API's shape, carry their creation time and do not repeat", async () => {
  const sql = postgres(url, { max: 2, onnotice: () => {} });
  try {
    const before = Date.now();
    // Two sessions at once: each backend draws from its own seed.
    const made = await Promise.all([0, 1].map(() => sql<{ id: string }[]>`select evently_id('job') as id from generate_series(1, 20000)`));
    const after = Date.now();
    const ids = made.flat().map((r) => r.id);
    expect(ids.filter((id) => !isId("job", id))).toEqual([]);
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of [ids[0]!, ids.at(-1)!]) {
      const ms = Number.parseInt(id.slice(4, 16), 16);
      expect(ms).toBeGreaterThanOrEqual(before - 1);
      expect(ms).toBeLessThanOrEqual(after + 1);
    }
    // Random digits, not a constant or a counter: each of the 20 positions takes many values.
    for (let i = 16; i < 36; i++) expect(new Set(ids.map((id) => id[i])).size).toBeGreaterThan(12);
  } finally {
    await sql.end();
  }
});
