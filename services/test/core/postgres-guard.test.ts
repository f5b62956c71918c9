import { afterAll, beforeAll, expect, test } from "bun:test";
import postgres from "postgres";
import { withDeadline } from "../../core/db/errors.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(() => db.drop());

// Without services/core/db/patch-postgres.mjs (applied at install), cutting connections under
// concurrent transactions makes postgres.js write to a null socket from setImmediate: an uncaught
// TypeError that ends the process (and fails this test). With it, the transactions fail with
// connection errors, callers retry, and the pool recovers.
test("transactions on connections cut mid-flight fail cleanly and the pool recovers", async () => {
  const sql = postgres(db.url, { max: 4, onnotice: () => {} });
  const killer = postgres(db.url, { max: 1, onnotice: () => {} });
  const outcomes = new Map<string, number>();
  const loop = async (id: number) => {
    for (let i = 0; i < 40; i++) {
      const outcome = await withDeadline(
        sql.begin(async (tx) => {
          await tx`select pg_sleep(0.005)`;
          await tx`select ${id}::int as id, ${"x".repeat(id * 300)} as pad`;
          return "ok";
        }),
        5000,
        "transaction",
      ).catch((err) => String(err.code ?? err.message));
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    }
  };
  try {
    const loops = [1, 2, 3, 4, 5, 6].map(loop);
    for (let k = 0; k < 4; k++) {
      await Bun.sleep(60);
      await killer`select pg_terminate_backend(pid) from pg_stat_activity
                   where datname = ${db.name} and pid <> pg_backend_pid()`;
    }
    await Promise.all(loops);
    expect(outcomes.get("ok") ?? 0).toBeGreaterThan(150);
    for (const code of outcomes.keys()) expect(code).toMatch(/^(ok|CONNECTION_CLOSED|CONNECTION_DESTROYED|ECONNRESET|57P01|DEADLINE_EXCEEDED)$/);
    expect((await sql`select 1 as one`)[0]).toEqual({ one: 1 });
  } finally {
    await killer.end();
    await sql.end({ timeout: 1 });
  }
});
