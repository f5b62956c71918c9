import { describe, expect, test } from "bun:test";
import type { Sql } from "../../core/db/client.ts";
import { IngestRateLimiter, type RateLimiterOptions, type TakeResult } from "../../core/ratelimit/limiter.ts";
import { countStatements, useDatabasePools } from "../support/pools.ts";
import { captureLog } from "../support/log.ts";

// The ingest rate limit against a real database: what one limiter admits, what two limiters with
// pools of their own (two API processes) admit together, and what a failing claim does.

const limiters: IngestRateLimiter[] = [];
const db = useDatabasePools(() => Promise.all(limiters.map((l) => l.stop())));

function limiter(over: Sql = db.sql, options: RateLimiterOptions = {}): IngestRateLimiter {
  const created = new IngestRateLimiter(over, { cleanupIntervalMs: 0, ...options });
  limiters.push(created);
  return created;
}

let apps = 0;
const newApp = () => `app_test${++apps}_${Math.random().toString(36).slice(2, 8)}`;

async function bucketOf(appId: string) {
  const [row] = await db.sql<{ emptyAt: number; granted: number }[]>`
    select empty_at, granted from ingest_rate_buckets where app_id = ${appId}`;
  return row ?? null;
}

/**
 * Sends `workers` concurrent loops of requests of 1-4 events through each limiter until `ms` have
 * passed, each loop pausing about `pauseMs` between requests (0: only to let I/O run); returns the
 * events each limiter admitted. Pauses vary, so the two limiters' loops do not take turns in lockstep
 * (one thread runs both here; two API processes would not).
 */
async function hammer(pair: IngestRateLimiter[], appId: string, limit: number, ms: number, workers = 16, pauseMs = 0) {
  const admitted = pair.map(() => 0);
  const end = performance.now() + ms;
  const loop = async (index: number) => {
    while (performance.now() < end) {
      const count = 1 + Math.floor(Math.random() * 4);
      const result = await pair[index]!.take(appId, limit, count);
      if (result.ok) admitted[index]! += count;
      await (pauseMs > 0 ? Bun.sleep(pauseMs * (0.5 + Math.random())) : new Promise((resolve) => setImmediate(resolve)));
    }
  };
  await Promise.all(pair.flatMap((_, index) => Array.from({ length: workers }, () => loop(index))));
  return admitted;
}

const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);

describe("one limiter", () => {
  test("hammered from idle, admits the limit per second within 10%, in few round trips", async () => {
    const { sql: countedSql, statements } = countStatements(db.sql);
    const l = limiter(countedSql);
    const admitted = sum(await hammer([l], newApp(), 500, 2000));
    expect(admitted).toBeLessThanOrEqual(500 * 2 * 1.1);
    expect(admitted).toBeGreaterThanOrEqual(500 * 2 * 0.9);
    console.log(`one limiter hammered, 500/s for 2 s: admitted ${admitted} in ${statements()} claims`);
    // Chunks are 25 events: a round trip per chunk or per refill, not per request.
    expect(statements()).toBeLessThan(admitted / 5);
  });

  test("refusals while the bucket refills are decided locally, with retryAfterSeconds of at least 1", async () => {
    const l = limiter();
    const app = newApp();
    expect(await l.take(app, 10, 10)).toEqual({ ok: true });
    const first = await l.take(app, 10, 1);
    expect(first).toMatchObject({ ok: false });
    expect((first as { retryAfterSeconds: number }).retryAfterSeconds).toBeGreaterThanOrEqual(1);
    const local = l.take(app, 10, 1);
    expect(local).not.toBeInstanceOf(Promise);
    expect(local).toMatchObject({ ok: false, retryAfterSeconds: 1 });
  });

  test("an idle application may send a batch of up to its limit; a larger one than the bucket holds is refused whole", async () => {
    const l = limiter();
    const app = newApp();
    expect(await l.take(app, 10, 10)).toEqual({ ok: true });
    const before = (await bucketOf(app))!;
    // 0.3 s on, the bucket holds 3: a batch of 5 gets nothing, and takes nothing from the bucket.
    await Bun.sleep(300);
    expect(await l.take(app, 10, 5)).toMatchObject({ ok: false });
    expect((await bucketOf(app))!.emptyAt).toBe(before.emptyAt);
    // Once it holds 5, the same batch goes through whole.
    await Bun.sleep(400);
    expect(await l.take(app, 10, 5)).toEqual({ ok: true });
  });

  test("refuses a batch larger than the limit without claiming anything", async () => {
    const l = limiter();
    const app = newApp();
    expect(await l.take(app, 10, 11)).toMatchObject({ ok: false, retryAfterSeconds: 1 });
    expect(await bucketOf(app)).toBeNull();
  });
});

describe("two limiters with pools of their own", () => {
  test("hammered together for 3 s, admit at most the limit within 10% and at least 90% of it", async () => {
    const limit = 500;
    const pair = [limiter(db.pool()), limiter(db.pool())];
    const admitted = await hammer(pair, newApp(), limit, 3000);
    console.log(`two limiters hammered, ${limit}/s for 3 s: admitted ${admitted.join(" + ")} = ${sum(admitted)}`);
    expect(sum(admitted)).toBeLessThanOrEqual(limit * 3 * 1.1);
    expect(sum(admitted)).toBeGreaterThanOrEqual(limit * 3 * 0.9);
    expect(Math.min(...admitted)).toBeGreaterThan(limit * 3 * 0.2);
  });

  test("asked for a little more than the limit, paced, lose little to chunks left unused", async () => {
    const limit = 500;
    const pair = [limiter(db.pool()), limiter(db.pool())];
    // 16 loops per limiter, one request of 2.5 events on average every 50 ms: about 800 events/s each.
    const admitted = await hammer(pair, newApp(), limit, 3000, 16, 50);
    console.log(`two limiters paced, ${limit}/s for 3 s: admitted ${admitted.join(" + ")} = ${sum(admitted)}`);
    expect(sum(admitted)).toBeLessThanOrEqual(limit * 3 * 1.1);
    expect(sum(admitted)).toBeGreaterThanOrEqual(limit * 3 * 0.9);
  });
});

describe("cleanup", () => {
  test("deletes the rows of buckets idle for idleSeconds and keeps active ones", async () => {
    const l = limiter(db.sql, { idleSeconds: 60 });
    const [idle, active] = [newApp(), newApp()];
    await db.sql`
      insert into ingest_rate_buckets (app_id, empty_at, granted)
      values (${idle}, extract(epoch from clock_timestamp())::float8 - 61, 5)`;
    expect(await l.take(active, 100, 1)).toEqual({ ok: true });
    expect(await l.cleanup()).toBe(1);
    expect(await bucketOf(idle)).toBeNull();
    expect(await bucketOf(active)).not.toBeNull();
  });
});

describe("when claims fail", () => {
  test("with the database unreachable, admits up to the limit per process for a second, then refuses locally", async () => {
    const { log, lines } = captureLog();
    const down = new URL(db.url);
    down.port = "1"; // nothing listens there: connections are refused
    const l = limiter(db.pool(down.toString()), { logger: log });
    const app = newApp();
    const results: TakeResult[] = [];
    for (let i = 0; i < 8; i++) results.push(await l.take(app, 5, 1));
    expect(results.map((r) => r.ok)).toEqual([true, true, true, true, true, false, false, false]);
    expect(results[5]).toMatchObject({ retryAfterSeconds: 1 });
    // One failed claim, then none for a second: a down database is not asked once per request.
    expect(lines.filter((line) => line.msg.startsWith("rate limit claim failed"))).toHaveLength(1);
  });

  test("a claim stuck on a lock times out into the fallback, and claims resume a second later", async () => {
    const l = limiter(db.sql, { claimTimeoutMs: 200 });
    const app = newApp();
    expect(await l.take(app, 1000, 1)).toEqual({ ok: true });
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const holding = db.sql.begin(async (tx) => {
      await tx`select 1 from ingest_rate_buckets where app_id = ${app} for update`;
      await released;
    });
    await Bun.sleep(150); // the chunk claimed above has expired: the next take must claim
    const started = performance.now();
    expect(await l.take(app, 1000, 1)).toEqual({ ok: true });
    expect(performance.now() - started).toBeGreaterThanOrEqual(190);
    release();
    await holding;

    const before = (await bucketOf(app))!;
    await Bun.sleep(1000);
    expect(await l.take(app, 1000, 1)).toEqual({ ok: true });
    expect((await bucketOf(app))!.emptyAt).toBeGreaterThan(before.emptyAt);
  });
});
