import { describe, expect, test } from "bun:test";
import type { Sql } from "../../core/db/client.ts";
import { DeliveryRateLimiter, type DeliveryRateLimiterOptions } from "../../core/ratelimit/delivery.ts";
import { countStatements, useDatabasePools } from "../support/pools.ts";

// The per-endpoint delivery limit against a real database: two limiters with pools of their own are
// two worker processes sharing one endpoint's bucket.

const limiters: DeliveryRateLimiter[] = [];
const db = useDatabasePools(() => Promise.all(limiters.map((l) => l.stop())));

function limiter(over: Sql = db.sql, options: DeliveryRateLimiterOptions = {}): DeliveryRateLimiter {
  const created = new DeliveryRateLimiter(over, { cleanupIntervalMs: 0, ...options });
  limiters.push(created);
  return created;
}

let endpoints = 0;
const newEndpoint = () => `ep_test${++endpoints}_${Math.random().toString(36).slice(2, 8)}`;
const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);
const yieldNow = () => new Promise((resolve) => setImmediate(resolve));

/** Concurrent loops taking one delivery at a time from each limiter, flat out, for `ms`; what each got. */
async function hammer(pair: DeliveryRateLimiter[], endpointId: string, limit: number, ms: number, loops = 16): Promise<number[]> {
  const granted = pair.map(() => 0);
  const end = performance.now() + ms;
  const loop = async (index: number) => {
    while (performance.now() < end) {
      if ((await pair[index]!.take(endpointId, limit)) === null) granted[index]!++;
      await yieldNow();
    }
  };
  await Promise.all(pair.flatMap((_, index) => Array.from({ length: loops }, () => loop(index))));
  return granted;
}

describe("two workers sharing an endpoint's limit", () => {
  for (const limit of [20, 200]) {
    test(`hammered together for 4 s at ${limit}/s, send at most 10% over the limit (plus the burst) and at least 85% of it`, async () => {
      const seconds = 4;
      const pair = [limiter(db.pool()), limiter(db.pool())];
      const granted = await hammer(pair, newEndpoint(), limit, seconds * 1000);
      console.log(`two delivery limiters hammered, ${limit}/s for ${seconds} s: granted ${granted.join(" + ")} = ${sum(granted)}`);
      const burst = Math.ceil(limit * 0.1);
      expect(sum(granted)).toBeLessThanOrEqual(limit * seconds * 1.1 + burst);
      expect(sum(granted)).toBeGreaterThanOrEqual(limit * seconds * 0.85);
      expect(Math.min(...granted)).toBeGreaterThan(0);
    });
  }

  test("jobs held for the wait they are told come back when tokens exist: ~2 holds each with two workers, never over the limit", async () => {
    // What the worker does: a refused job is handed back and offered again after its wait, to
    // either worker. 100 jobs to an endpoint limited to 20/s.
    const limit = 20;
    const pair = [limiter(db.pool()), limiter(db.pool())];
    const endpointId = newEndpoint();
    const sentAt: number[] = [];
    let holds = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: 100 }, async (_, i) => {
        for (let offer = 0; ; offer++) {
          const wait = await pair[(i + offer) % 2]!.take(endpointId, limit);
          if (wait === null) return void sentAt.push(performance.now() - started);
          holds++;
          expect(wait).toBeGreaterThan(0);
          await Bun.sleep(wait);
        }
      }),
    );
    const perSecond = new Map<number, number>();
    for (const at of sentAt) perSecond.set(Math.floor(at / 1000), (perSecond.get(Math.floor(at / 1000)) ?? 0) + 1);
    const elapsed = Math.max(...sentAt) / 1000;
    console.log(`100 jobs at ${limit}/s through two limiters: ${holds} holds, done in ${elapsed.toFixed(2)} s, per second ${[...perSecond.values()].join(",")}`);
    for (const [second, count] of perSecond) if (second > 0) expect(count).toBeLessThanOrEqual(limit * 1.1);
    expect(elapsed).toBeLessThan(100 / limit + 2);
    // Every refill does not bring the whole backlog back: about one hold per worker per job.
    expect(holds).toBeLessThan(100 * 3);
  });
});

describe("one worker", () => {
  test("a backlog refused at once is told to come back spread over its length, one slot per 1/limit s", async () => {
    const l = limiter();
    const endpointId = newEndpoint();
    const results = await Promise.all(Array.from({ length: 60 }, () => l.take(endpointId, 20)));
    const waits = results.filter((w): w is number => w !== null).sort((a, b) => a - b);
    // The bucket of an idle endpoint holds a tenth of a second's worth: 2 go at once.
    expect(results.filter((w) => w === null).length).toBe(2);
    expect(waits[0]!).toBeLessThan(200);
    // 58 slots of 50 ms: the last about 2.9 s away.
    expect(waits.at(-1)!).toBeGreaterThan(2500);
    expect(waits.at(-1)!).toBeLessThan(3500);
  });

  test("with a high limit, most deliveries take from the local chunk without a round trip", async () => {
    const { sql: countedSql, statements } = countStatements(db.sql);
    const l = limiter(countedSql);
    const endpointId = newEndpoint();
    // The first second sizes chunks by what is waiting; from the second on, by the demand seen.
    await hammer([l], endpointId, 2000, 1000, 8);
    const before = statements();
    const [granted] = await hammer([l], endpointId, 2000, 1000, 8);
    const claims = statements() - before;
    console.log(`one delivery limiter, 2000/s, second second: granted ${granted} in ${claims} claims`);
    expect(granted!).toBeGreaterThan(2000 * 0.85);
    // Chunks of up to 100 (a twentieth of the limit).
    expect(claims).toBeLessThan(granted! / 10);
  });

  test("cleanup deletes idle endpoints' bucket rows", async () => {
    const l = limiter(db.sql, { idleSeconds: 60 });
    const [idle, active] = [newEndpoint(), newEndpoint()];
    await db.sql`insert into delivery_rate_buckets (endpoint_id, empty_at, granted) values (${idle}, extract(epoch from clock_timestamp())::float8 - 61, 1)`;
    expect(await l.take(active, 100)).toBeNull();
    expect(await l.cleanup()).toBe(1);
    const rows = await db.sql<{ endpointId: string }[]>`select endpoint_id from delivery_rate_buckets where endpoint_id in (${idle}, ${active})`;
    expect(rows.map((r) => r.endpointId)).toEqual([active]);
  });
});
