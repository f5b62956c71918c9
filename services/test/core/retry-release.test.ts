import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { loadConfig } from "../../core/config/index.ts";
import type { Sql } from "../../core/db/client.ts";
import { claimJobs, recordOutcomes, replayJobs } from "../../core/jobs/sql.ts";
import { silentLogger } from "../../core/log.ts";
import { RetryBudget } from "../../core/outbox/retry-budget.ts";
import { messageForSwept, msUntilNextDue, takeDueJobs, type DeadLetter } from "../../core/outbox/sql.ts";
import type { JobMessage } from "../../core/queue/messages.ts";
import { OutboxSweeper } from "../../dispatcher/sweeper.ts";
import { DEFAULT_APPLICATION_ID } from "../../core/applications/sql.ts";
import { hookUrl, startApi, type TestApi } from "../api/harness.ts";

/**
 * What leaves the outbox and how fast: due retries at most DISPATCH_MAX_RETRIES_PER_SECOND (in the
 * dispatcher's sweep and the Postgres transport's take), first deliveries at full speed, dead-letter
 * notices only with the RabbitMQ transport and never to a worker. No delivery runs: the outbox is
 * filled and read by hand.
 */

let api: TestApi;
let endpointId: string;

beforeAll(async () => {
  api = await startApi();
  endpointId = (await api.request("POST", "/endpoints", { body: { url: hookUrl(), eventTypes: ["release.*"] } })).body.id;
});
afterAll(async () => {
  await api.close();
});

async function newJobs(n: number, type = "release.test"): Promise<string[]> {
  const res = await api.request("POST", "/events/batch", { body: { events: Array.from({ length: n }, () => ({ type, data: {} })) } });
  expect(res.status).toBe(202);
  const [rows] = [await api.sql<{ id: string }[]>`select id from jobs where event_id = any (${res.body.data.map((e: { id: string }) => e.id)}) order by id`];
  return rows.map((r) => r.id);
}

/** `n` jobs waiting as retries due a minute ago (a backlog after an outage). */
async function dueRetries(n: number): Promise<string[]> {
  const ids = await newJobs(n);
  await api.sql`update jobs set status = 'scheduled', attempt_count = 1 where id = any (${ids}::text[])`;
  await api.sql`update outbox set reason = 'retry', due_at = now() - interval '1 minute' where job_id = any (${ids}::text[])`;
  return ids;
}

/** `n` new jobs whose fast path never happened, due now. */
async function duePublishes(n: number): Promise<string[]> {
  const ids = await newJobs(n);
  await api.sql`update outbox set due_at = now() - interval '1 second' where job_id = any (${ids}::text[])`;
  return ids;
}

const dead = (jobId: string) => ({
  jobId, status: "dead" as const, endReason: "retries_exhausted", attemptNumber: 3, nextAttemptAt: null, attemptedAt: new Date(),
});

describe("the retry budget", () => {
  test("holds one second's worth, refills with time, never goes below nothing", () => {
    let clock = 0;
    const budget = new RetryBudget(100, () => clock);
    expect(budget.available(1000)).toBe(100);
    expect(budget.available(30)).toBe(30);
    budget.spend(100);
    expect(budget.available(1000)).toBe(0);
    expect(budget.msUntil(50)).toBe(500);
    clock += 250;
    expect(budget.available(1000)).toBe(25);
    clock += 60_000;
    expect(budget.available(1000)).toBe(100);
    expect(budget.msUntil(100)).toBe(0);
  });
});

describe("the dispatcher's sweep", () => {
  test("takes every due first delivery, and due retries only as the budget allows", async () => {
    await api.sql`delete from outbox`;
    const retries = await dueRetries(60);
    const publishes = await duePublishes(15);
    let clock = 1_000_000;
    const sent: JobMessage[] = [];
    const publisher = { ready: true, send: async (jobs: JobMessage[]) => void sent.push(...jobs), sendDeadLetters: async () => {} };
    const config = loadConfig({ DISPATCH_BATCH_SIZE: "100", DISPATCH_MAX_RETRIES_PER_SECOND: "20" });
    const sweeper = new OutboxSweeper(api.sql, publisher, config, silentLogger, () => clock);

    expect(await sweeper.sweep()).toEqual({ taken: 35, retries: 20, retryLimit: 20 });
    expect(sent.filter((m) => publishes.includes(m.jobId))).toHaveLength(15);
    // The budget is spent: new jobs still go at once, retries wait.
    const later = await duePublishes(3);
    expect(await sweeper.sweep()).toEqual({ taken: 3, retries: 0, retryLimit: 0 });
    expect(sent.map((m) => m.jobId)).toEqual(expect.arrayContaining(later));
    clock += 500;
    expect(await sweeper.sweep()).toMatchObject({ retries: 10 });
    clock += 10_000;
    expect(await sweeper.sweep()).toMatchObject({ retries: 20 });
    // Oldest retries first; the rest still waiting in the outbox.
    const [left] = await api.sql<{ n: number }[]>`select count(*)::int as n from outbox where reason = 'retry'`;
    expect(left!.n).toBe(10);
    expect(new Set(sent.map((m) => m.jobId)).size).toBe(sent.length);
    expect(sent.filter((m) => retries.includes(m.jobId))).toHaveLength(50);
  });

  test("never more than DISPATCH_BATCH_SIZE in one sweep, first deliveries before retries", async () => {
    await api.sql`delete from outbox`;
    await dueRetries(20);
    await duePublishes(8);
    const publisher = { ready: true, send: async () => {}, sendDeadLetters: async () => {} };
    const sweeper = new OutboxSweeper(api.sql, publisher, loadConfig({ DISPATCH_BATCH_SIZE: "10" }), silentLogger);
    expect(await sweeper.sweep()).toEqual({ taken: 10, retries: 2, retryLimit: 10 });
  });
});

describe("the Postgres transport's take", () => {
  test("takes retries after everything else, at most retryLimit", async () => {
    await api.sql`delete from outbox`;
    const retries = await dueRetries(30);
    const publishes = await duePublishes(5);
    const taken = (await takeDueJobs(api.sql, { limit: 10, leaseMs: 30_000, retryLimit: 3 })).jobs;
    expect(taken.filter((j) => publishes.includes(j.id))).toHaveLength(5);
    expect(taken.filter((j) => retries.includes(j.id))).toHaveLength(3);
    expect(taken.every((j) => j.reason !== "dead_letter")).toBe(true);
    // Unbounded, the rest of the batch is filled with retries.
    expect((await takeDueJobs(api.sql, { limit: 10, leaseMs: 30_000 })).jobs).toHaveLength(10);
  });

  test("never hands a dead_letter entry to a worker", async () => {
    await api.sql`delete from outbox`;
    const [job] = await newJobs(1);
    await recordOutcomes(api.sql, [], [dead(job!)], { deadLetters: true });
    expect([...(await api.sql`select reason from outbox where job_id = ${job!}`)]).toEqual([{ reason: "dead_letter" }]);
    expect((await takeDueJobs(api.sql, { limit: 100, leaseMs: 30_000 })).jobs).toEqual([]);
    expect([...(await api.sql`select reason from outbox where job_id = ${job!}`)]).toEqual([{ reason: "dead_letter" }]);
  });

  test("claims what it takes, under the lease it is given, with the entry due when the claim lapses", async () => {
    await api.sql`delete from outbox`;
    const ids = await duePublishes(3);
    const taken = (await takeDueJobs(api.sql, { limit: 10, leaseMs: 30_000 })).jobs;
    expect(taken.map((j) => j.id).sort()).toEqual([...ids].sort());
    const rows = await api.sql<{ status: string; claimMs: number; entry: string; entryMs: number }[]>`
      select j.status, (extract(epoch from j.next_attempt_at - now()) * 1000)::float8 as claim_ms, o.reason as entry,
             (extract(epoch from o.due_at - j.next_attempt_at) * 1000)::float8 as entry_ms
      from jobs j join outbox o on o.job_id = j.id where j.id = any (${ids}::text[])`;
    expect(rows).toHaveLength(3);
    for (const row of rows) {
      expect(row).toMatchObject({ status: "delivering", entry: "lease", entryMs: 0 });
      expect(row.claimMs).toBeGreaterThan(25_000);
      expect(row.claimMs).toBeLessThanOrEqual(30_000);
    }
    // Another worker's claim, or a second take of a lapsed entry, finds the jobs held.
    expect(await claimJobs(api.sql, ids.map((jobId) => ({ jobId, attempt: 0, leaseMs: 30_000 })))).toEqual(new Set());
    await api.sql`update outbox set due_at = now() - interval '1 second' where job_id = any (${ids}::text[])`;
    expect((await takeDueJobs(api.sql, { limit: 10, leaseMs: 30_000 })).jobs).toEqual([]);
  });

  test("skips a job whose row another transaction holds, without waiting for it, and says it is due now", async () => {
    await api.sql`delete from outbox`;
    const [held, free] = await duePublishes(2);
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let locked!: () => void;
    const isLocked = new Promise<void>((resolve) => (locked = resolve));
    const holder = api.sql.begin(async (tx) => {
      await tx`select id from jobs where id = ${held!} for update`;
      locked();
      await released;
    });
    try {
      await isLocked;
      const taken = await Promise.race([
        takeDueJobs(api.sql, { limit: 10, leaseMs: 30_000 }),
        Bun.sleep(5000).then(() => Promise.reject(new Error("the take waited for the lock"))),
      ]);
      expect(taken.jobs.map((j) => j.id)).toEqual([free!]);
      expect(taken.nextDueMs).toBe(0);
      expect([...(await api.sql`select j.status, o.reason from jobs j join outbox o on o.job_id = j.id where j.id = ${held!}`)]).toEqual([
        { status: "pending", reason: "publish" },
      ]);
    } finally {
      release();
      await holder;
    }
    expect((await takeDueJobs(api.sql, { limit: 10, leaseMs: 30_000 })).jobs.map((j) => j.id)).toEqual([held!]);
  });

  test("lapsed leases are taken only when asked for, and the next-due time does not count them", async () => {
    await api.sql`delete from outbox`;
    const [lapsed] = await duePublishes(1);
    const fresh = await duePublishes(2);
    // Taken by a worker that died: its lease lapsed a second ago.
    await api.sql`update outbox set reason = 'lease', due_at = now() - interval '1 second' where job_id = ${lapsed!}`;
    const first = (await takeDueJobs(api.sql, { limit: 10, leaseMs: 30_000, lapsedLeases: false })).jobs;
    expect(first.map((j) => j.id).sort()).toEqual([...fresh].sort());
    // Only the lapsed lease is due now, and it is not what an idle taker wakes for: nothing is.
    expect(await msUntilNextDue(api.sql)).toBeNull();
    // A take that finds nothing still says when to look again: nothing is due.
    expect(await takeDueJobs(api.sql, { limit: 10, leaseMs: 30_000, lapsedLeases: false })).toEqual({ jobs: [], nextDueMs: null });
    const second = (await takeDueJobs(api.sql, { limit: 10, leaseMs: 30_000, lapsedLeases: true })).jobs;
    expect(second.map((j) => j.id)).toEqual([lapsed!]);
    expect([...(await api.sql`select reason from outbox where job_id = ${lapsed!} and due_at > now()`)]).toEqual([{ reason: "lease" }]);
  });
});

describe("leases commit without waiting for the WAL flush", () => {
  const setting = async (sql: Sql) => (await sql<{ synchronousCommit: string }[]>`show synchronous_commit`)[0]!.synchronousCommit;

  // Run inside a transaction block, so the setting the statement made can be read before it ends.
  test("a take turns synchronous_commit off for its own transaction only", async () => {
    await api.sql`delete from outbox`;
    await duePublishes(1);
    const during = await api.sql.begin(async (tx) => {
      expect((await takeDueJobs(tx as unknown as Sql, { limit: 10, leaseMs: 30_000 })).jobs).toHaveLength(1);
      return setting(tx as unknown as Sql);
    });
    expect(during).toBe("off");
    expect(await setting(api.sql)).toBe("on");
  });

  test("so does a worker's claim", async () => {
    const [job] = await newJobs(1);
    const during = await api.sql.begin(async (tx) => {
      expect([...(await claimJobs(tx as unknown as Sql, [{ jobId: job!, attempt: 0, leaseMs: 30_000 }]))]).toEqual([job!]);
      return setting(tx as unknown as Sql);
    });
    expect(during).toBe("off");
    expect(await setting(api.sql)).toBe("on");
  });
});

describe("dead letters", () => {
  test("a job that dies gets a notice entry only with deadLetters, once, and the sweep publishes it", async () => {
    await api.sql`delete from outbox`;
    const [quiet, announced, replayed] = await newJobs(3, "release.dead");
    await api.sql`delete from outbox`; // their fast path happened
    await recordOutcomes(api.sql, [], [dead(quiet!)]);
    await recordOutcomes(api.sql, [], [dead(announced!), dead(replayed!)], { deadLetters: true });
    expect([...(await api.sql`select job_id, reason from outbox order by job_id`)]).toEqual([
      { jobId: announced!, reason: "dead_letter" },
      { jobId: replayed!, reason: "dead_letter" },
    ]);
    // A notice owed for a job replayed before it went out is dropped: the job is not dead any more.
    await replayJobs(api.sql, DEFAULT_APPLICATION_ID, [replayed!]);

    const letters: DeadLetter[] = [];
    const messages: JobMessage[] = [];
    const publisher = {
      ready: true,
      send: async (jobs: JobMessage[]) => void messages.push(...jobs),
      sendDeadLetters: async (l: DeadLetter[]) => void letters.push(...l),
    };
    const sweeper = new OutboxSweeper(api.sql, publisher, loadConfig({}), silentLogger);
    await sweeper.sweep();
    const [eventRow] = await api.sql<{ eventId: string }[]>`select event_id from jobs where id = ${announced!}`;
    expect(letters).toEqual([{
      jobId: announced!, eventId: eventRow!.eventId, endpointId, appId: DEFAULT_APPLICATION_ID, eventType: "release.dead",
      endReason: "retries_exhausted", attemptCount: 3, deadAt: expect.any(String),
    }]);
    expect(Math.abs(Date.parse(letters[0]!.deadAt) - Date.now())).toBeLessThan(10_000);
    // The replayed job goes out as a job message carrying its replay.
    expect(messages.map((m) => m.jobId)).toEqual([replayed!]);
    expect(messages[0]).toMatchObject({ attempt: 3, attemptBase: 3, replayedAt: expect.any(Number) });
    const [left] = await api.sql<{ n: number }[]>`select count(*)::int as n from outbox`;
    expect(left!.n).toBe(0);

    // The same outcome written again (a lost acknowledgement) announces nothing more.
    await recordOutcomes(api.sql, [], [dead(announced!)], { deadLetters: true });
    const [after] = await api.sql<{ n: number }[]>`select count(*)::int as n from outbox`;
    expect(after!.n).toBe(0);
  });

  test("a sweep whose notices are not confirmed keeps them for the next", async () => {
    await api.sql`delete from outbox`;
    const [job] = await newJobs(1, "release.dead");
    await recordOutcomes(api.sql, [], [dead(job!)], { deadLetters: true });
    const failing = { ready: true, send: async () => {}, sendDeadLetters: async () => Promise.reject(new Error("nack")) };
    await expect(new OutboxSweeper(api.sql, failing, loadConfig({}), silentLogger).sweep()).rejects.toThrow("nack");
    expect([...(await api.sql`select reason from outbox where job_id = ${job!}`)]).toEqual([{ reason: "dead_letter" }]);
  });

  test("a message without replay fields is what it always was", async () => {
    const [job] = await newJobs(1);
    await api.sql`update outbox set due_at = now() - interval '1 second' where job_id = ${job!}`;
    const [taken] = (await takeDueJobs(api.sql, { limit: 1, leaseMs: 30_000 })).jobs;
    const message = messageForSwept(taken!);
    expect(Object.keys(message).sort()).toEqual(["attempt", "body", "createdAt", "endpointId", "eventId", "expiresAt", "jobId"]);
  });
});
