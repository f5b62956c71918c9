import { afterAll, beforeAll, expect, test } from "bun:test";
import postgres from "postgres";
import { sampleWaitEvents, waitEventLines } from "../../../loadtest/bench/wait-events.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";

/**
 * The bench's wait-event sampler (loadtest/bench/wait-events.ts) on the real server: a backend of
 * the sampled database is counted under its pool and what it waits on; other databases' are not;
 * a cut starts a new window.
 */

let db: TestDatabase;
let other: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
  other = await createTestDatabase();
});
afterAll(async () => {
  await db.drop();
  await other.drop();
});

test("a sleeping backend is counted under its pool as waiting on the sleep, a busy one on CPU, another database's not at all", async () => {
  const connect = (url: string, pool: string) => postgres(url, { max: 1, onnotice: () => {}, connection: { application_name: pool } });
  const sleeper = connect(db.url, "evently-sleeper");
  const busy = connect(db.url, "evently-busy");
  const elsewhere = connect(other.url, "evently-elsewhere");
  try {
    await Promise.all([sleeper`select 1`, busy`select 1`, elsewhere`select 1`]);
    const sampler = sampleWaitEvents(db.url, 5);
    await Promise.all([
      sleeper`select pg_sleep(0.4)`,
      // About 0.4 s of work with no wait: a count over a generated series.
      busy`select count(*) from generate_series(1, 4000000)`,
      elsewhere`select pg_sleep(0.4)`,
    ]);
    const profile = sampler.cut();
    // After the cut, a window of its own: the sleeper's last sleep only.
    await sleeper`select pg_sleep(0.2)`;
    const after = await sampler.stop();
    expect(after.byPool["evently-sleeper"]?.["Timeout:PgSleep"] ?? 0).toBeGreaterThan(after.samples / 4);
    expect(after.byPool["evently-busy"]).toBeUndefined();
    expect(profile.samples).toBeGreaterThan(10);
    expect(profile.byPool["evently-sleeper"]?.["Timeout:PgSleep"] ?? 0).toBeGreaterThan(profile.samples / 4);
    expect(profile.byPool["evently-busy"]?.CPU ?? 0).toBeGreaterThan(0);
    expect(profile.byPool["evently-elsewhere"]).toBeUndefined();

    const lines = waitEventLines([{ transport: "postgres", phases: [{ spec: { name: "probe" }, waits: { publish: profile } }] }]);
    const row = lines.find((l) => l.startsWith("| probe | publishing | sleeper |"));
    expect(row).toContain("Timeout:PgSleep");
  } finally {
    await Promise.all([sleeper.end(), busy.end(), elsewhere.end()]);
  }
});
