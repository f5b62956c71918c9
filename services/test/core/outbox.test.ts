import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { DEFAULT_APPLICATION_ID } from "../../core/applications/sql.ts";
import { deleteEndpoint } from "../../core/endpoints/sql.ts";
import { insertEventsWithJobs } from "../../core/events/sql.ts";
import { newId } from "../../core/ids.ts";
import { claimJobs, deferJobs, recordOutcomes, replayJobs } from "../../core/jobs/sql.ts";
import { clearPublished, sweepOutbox } from "../../core/outbox/sql.ts";
import { hookUrl, startApi, type TestApi } from "../api/harness.ts";
import { attemptAt } from "../support/attempts.ts";
import { asAdminOf, TEST_ADMIN_KEY } from "../support/keys.ts";
import { untilLockWaits } from "../support/locks.ts";

// The outbox's state machine against a real database: which statement adds, moves or removes a
// job's entry, and that no interleaving of fast path, worker and sweeper strands a job without one.

let api: TestApi;

beforeAll(async () => {
  api = await startApi();
  await api.request("POST", "/endpoints", { body: { url: hookUrl(), eventTypes: ["outbox.*"] } });
});
afterAll(async () => {
  await api.close();
});

/** Sends `count` events of `eventType`, one request each, and returns the ids of the jobs they made. */
async function jobsOf(eventType: string, count: number, headers: Record<string, string> = {}): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const res = await api.request("POST", "/events", { headers, body: { type: eventType, data: {} } });
    expect(res.status).toBe(202);
    ids.push(...res.body.jobs.map((job: { id: string }) => job.id));
  }
  return ids;
}

async function newJob(): Promise<string> {
  const [jobId] = await jobsOf("outbox.test", 1);
  expect(jobId).toBeDefined();
  return jobId!;
}

async function entryOf(jobId: string) {
  const [row] = await api.sql<{ reason: string; dueAt: Date }[]>`select reason, due_at from outbox where job_id = ${jobId}`;
  return row ?? null;
}

async function jobOf(jobId: string) {
  const [row] = await api.sql<{ status: string; attemptCount: number; nextAttemptAt: Date | null }[]>`
    select status, attempt_count, next_attempt_at from jobs where id = ${jobId}`;
  return row!;
}

async function outboxSize(): Promise<number> {
  const [row] = await api.sql<{ count: number }[]>`select count(*)::int as count from outbox`;
  return row!.count;
}

/** Jobs as a worker holds them: published (entries cleared) and claimed for their first attempt. */
async function publishAndClaim(jobIds: string[]): Promise<Set<string>> {
  await clearPublished(api.sql, jobIds);
  return claimJobs(api.sql, jobIds.map((jobId) => ({ jobId, attempt: 0, leaseMs: 30_000 })));
}

/** Makes every entry of these jobs due now, as if the grace or the retry delay had passed. */
async function makeDue(jobIds: string[]) {
  await api.sql`update outbox set due_at = now() - interval '1 second' where job_id = any (${jobIds}::text[])`;
}

const outcome = (jobId: string, status: "delivered" | "scheduled" | "dead", attemptNumber: number, nextAttemptAt: Date | null = null) => ({
  endReason: status === "dead" ? "retries_exhausted" : null,
  jobId,
  status,
  attemptNumber,
  nextAttemptAt,
  attemptedAt: new Date(),
});

describe("outbox entries", () => {
  test("a new job has a publish entry due after the grace; the fast path clears it", async () => {
    const before = Date.now();
    const jobId = await newJob();
    const entry = await entryOf(jobId);
    expect(entry?.reason).toBe("publish");
    // The harness's grace is 5 s.
    expect(entry!.dueAt.getTime()).toBeGreaterThanOrEqual(before + 4000);
    expect(await jobOf(jobId)).toMatchObject({ status: "pending", nextAttemptAt: null });
    await clearPublished(api.sql, [jobId]);
    expect(await entryOf(jobId)).toBeNull();
  });

  test("a retry recorded before the fast path clears its entry is not cleared with it", async () => {
    const jobId = await newJob();
    expect(await claimJobs(api.sql, [{ jobId, attempt: 0, leaseMs: 30_000 }])).toEqual(new Set([jobId]));
    const retryAt = new Date(Date.now() + 60_000);
    await recordOutcomes(api.sql, [], [outcome(jobId, "scheduled", 1, retryAt)]);
    await clearPublished(api.sql, [jobId]);
    const entry = await entryOf(jobId);
    expect(entry?.reason).toBe("retry");
    expect(entry!.dueAt.getTime()).toBe(retryAt.getTime());
    expect(await jobOf(jobId)).toMatchObject({ status: "scheduled", attemptCount: 1 });
  });

  test("delivered and dead outcomes add no entry", async () => {
    const [a, b] = [await newJob(), await newJob()];
    await publishAndClaim([a, b]);
    await recordOutcomes(api.sql, [], [outcome(a, "delivered", 1), outcome(b, "dead", 1)]);
    expect([await entryOf(a), await entryOf(b)]).toEqual([null, null]);
  });

  test("a claim that meets a live claim leaves a lease entry due when that claim lapses", async () => {
    const jobId = await newJob();
    expect((await publishAndClaim([jobId])).size).toBe(1);
    // The message again (RabbitMQ redelivered it after its worker died), twice in one batch.
    const again = await claimJobs(api.sql, [
      { jobId, attempt: 0, leaseMs: 30_000 },
      { jobId, attempt: 0, leaseMs: 30_000 },
    ]);
    expect(again.size).toBe(0);
    const entry = await entryOf(jobId);
    expect(entry?.reason).toBe("lease");
    expect(entry!.dueAt.getTime()).toBe((await jobOf(jobId)).nextAttemptAt!.getTime());
  });

  test("deferring and retrying by hand schedule a retry entry", async () => {
    const [deferred, failed] = [await newJob(), await newJob()];
    await publishAndClaim([deferred, failed]);
    await deferJobs(api.sql, [{ jobId: deferred, delayMs: 2000 }]);
    expect(await entryOf(deferred)).toMatchObject({ reason: "retry" });
    expect(await jobOf(deferred)).toMatchObject({ status: "scheduled", attemptCount: 0 });

    await recordOutcomes(api.sql, [], [outcome(failed, "dead", 1)]);
    expect(await replayJobs(api.sql, DEFAULT_APPLICATION_ID, [failed])).toMatchObject([{ status: "scheduled" }]);
    expect(await entryOf(failed)).toMatchObject({ reason: "retry" });
  });
});

describe("sweeping", () => {
  test("publishes due jobs that still need a message, removes their entries, and moves a live claim's to its expiry", async () => {
    await api.sql`delete from outbox`;
    const [unpublished, retry, lapsed, finished, live] = [await newJob(), await newJob(), await newJob(), await newJob(), await newJob()];
    // retry: failed once, due again. lapsed: claimed with a claim that ran out. finished: delivered
    // while its lease entry waited. live: a lease entry whose claim is still held (renewed since).
    await publishAndClaim([retry, lapsed, finished, live]);
    await recordOutcomes(api.sql, [], [outcome(retry, "scheduled", 1, new Date()), outcome(finished, "delivered", 1)]);
    await api.sql`update jobs set next_attempt_at = now() - interval '1 second' where id = ${lapsed}`;
    await api.sql`insert into outbox (job_id, due_at, reason) values (${lapsed}, now(), 'lease'), (${finished}, now(), 'lease'), (${live}, now(), 'lease')`;
    await makeDue([unpublished, retry]);

    const published: string[] = [];
    const swept = await sweepOutbox(api.sql, 100, async (jobs) => {
      published.push(...jobs.map((j) => j.id));
    });
    expect(swept.map((j) => j.id).sort()).toEqual([unpublished, retry, lapsed, finished, live].sort());
    expect(published.sort()).toEqual([unpublished, retry, lapsed].sort());
    expect(swept.find((j) => j.id === retry)).toMatchObject({ attemptCount: 1, reason: "retry", eventType: "outbox.test" });
    // The live claim's worker may still die: its entry waits for the claim to lapse.
    expect(await outboxSize()).toBe(1);
    const [claim] = await api.sql<{ nextAttemptAt: Date }[]>`select next_attempt_at from jobs where id = ${live}`;
    expect(await entryOf(live)).toMatchObject({ reason: "lease", dueAt: claim!.nextAttemptAt });
  });

  test("a sweep whose publish fails leaves its entries for the next one", async () => {
    await api.sql`delete from outbox`;
    const jobId = await newJob();
    await makeDue([jobId]);
    const failing = sweepOutbox(api.sql, 100, async () => {
      throw new Error("broker gone");
    });
    await expect(failing).rejects.toThrow("broker gone");
    expect(await entryOf(jobId)).toMatchObject({ reason: "publish" });
    const again = await sweepOutbox(api.sql, 100, async () => {});
    expect(again.map((j) => j.id)).toEqual([jobId]);
  });

  test("concurrent sweeps never take the same entry, and the fast path skips what a sweep holds", async () => {
    await api.sql`delete from outbox`;
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push(await newJob());
    await makeDue(ids);
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const first = sweepOutbox(api.sql, 3, () => held);
    await Bun.sleep(100);
    const second = await sweepOutbox(api.sql, 100, async () => {});
    // The fast path finishing late for every job: it must not wait for, or remove, the held ones.
    await clearPublished(api.sql, ids);
    release();
    const firstIds = (await first).map((j) => j.id);
    expect(firstIds).toHaveLength(3);
    expect([...firstIds, ...second.map((j) => j.id)].sort()).toEqual([...ids].sort());
    expect(await outboxSize()).toBe(0);
  });
});

describe("recording outcomes", () => {
  test("an attempt whose job was deleted meanwhile is dropped, and the rest of its batch is written", async () => {
    const [kept, gone] = [await newJob(), await newJob()];
    await publishAndClaim([kept, gone]);
    const attempts = [await attemptAt(api.sql, kept), await attemptAt(api.sql, gone)];
    // What deleting its endpoint does to a job while its request is out (deleteEndpoint).
    await api.sql`delete from outbox where job_id = ${gone}`;
    await api.sql`delete from jobs where id = ${gone}`;
    await recordOutcomes(api.sql, attempts, [outcome(kept, "delivered", 1), outcome(gone, "delivered", 1)]);
    const written = await api.sql<{ jobId: string }[]>`select job_id from attempts where job_id = any (${[kept, gone]}::text[])`;
    expect(written.map((r) => r.jobId)).toEqual([kept]);
    expect(await jobOf(kept)).toMatchObject({ status: "delivered", attemptCount: 1 });
  });
});

// Neither jobs, attempts nor outbox entries keep a foreign key to their parent (migrations 0014,
// 0016, 0017): deleting an endpoint or an application deletes them itself, and takes turns with ingest.
describe("deleting jobs with their endpoint or application", () => {
  async function endpointFor(eventType: string, headers: Record<string, string> = {}): Promise<string> {
    const res = await api.request("POST", "/endpoints", { headers, body: { url: hookUrl(), eventTypes: [eventType] } });
    expect(res.status).toBe(201);
    return res.body.id;
  }

  const entriesOf = async (jobIds: string[]) =>
    (await api.sql<{ count: number }[]>`select count(*)::int as count from outbox where job_id = any (${jobIds}::text[])`)[0]!.count;
  const attemptsOf = async (jobIds: string[]) =>
    (await api.sql<{ count: number }[]>`select count(*)::int as count from attempts where job_id = any (${jobIds}::text[])`)[0]!.count;
  /** One attempt written for each job, as the worker's recorder writes them; the jobs' states are left as they are. */
  const attemptOn = async (jobIds: string[]) => recordOutcomes(api.sql, await Promise.all(jobIds.map((id) => attemptAt(api.sql, id))), []);

  test("an endpoint's delete takes its jobs' entries and attempts, and leaves other endpoints' alone", async () => {
    const doomed = await endpointFor("doomed.*");
    const doomedJobs = await jobsOf("doomed.x", 3);
    const keptJobs = await jobsOf("outbox.kept", 2);
    await attemptOn([doomedJobs[0]!, keptJobs[0]!]);
    expect(await entriesOf(doomedJobs)).toBe(3);
    expect(await attemptsOf(doomedJobs)).toBe(1);
    expect(await deleteEndpoint(api.sql, DEFAULT_APPLICATION_ID, doomed)).toBe(true);
    expect(await entriesOf(doomedJobs)).toBe(0);
    expect(await attemptsOf(doomedJobs)).toBe(0);
    expect(await entriesOf(keptJobs)).toBe(2);
    expect(await attemptsOf(keptJobs)).toBe(1);
    const [left] = await api.sql<{ count: number }[]>`select count(*)::int as count from jobs where id = any (${doomedJobs}::text[])`;
    expect(left!.count).toBe(0);
    expect(await deleteEndpoint(api.sql, DEFAULT_APPLICATION_ID, doomed)).toBe(false);
  });

  test("an entry written while the delete waits for its job's lock goes with the job", async () => {
    const doomed = await endpointFor("raced.*");
    const [jobId] = await jobsOf("raced.x", 1);
    expect(await publishAndClaim([jobId!])).toEqual(new Set([jobId!]));
    expect(await entryOf(jobId!)).toBeNull();
    // An outcome being recorded: it holds the job's lock, then writes the retry's entry.
    let deleted!: Promise<boolean>;
    await api.sql.begin(async (tx) => {
      await tx`select id from jobs where id = ${jobId!} for update`;
      deleted = deleteEndpoint(api.sql, DEFAULT_APPLICATION_ID, doomed);
      await untilLockWaits(api.sql, 1);
      await tx`insert into outbox (job_id, due_at, reason) values (${jobId!}, now() + interval '1 minute', 'retry')`;
    });
    expect(await deleted).toBe(true);
    expect(await entryOf(jobId!)).toBeNull();
  });

  const jobsFor = async (endpointId: string) =>
    (await api.sql<{ count: number }[]>`select count(*)::int as count from jobs where endpoint_id = ${endpointId}`)[0]!.count;

  test("an ingest that routes to an endpoint being deleted waits for the delete, and makes no job for it", async () => {
    const doomed = await endpointFor("racing.*");
    let ingested!: Promise<{ status: number; body: any }>;
    await api.sql.begin(async (tx) => {
      // What deleteEndpoint does: the endpoint locked first, deleted at the end of the transaction.
      await tx`select id from endpoints where id = ${doomed} for update`;
      ingested = api.request("POST", "/events", { body: { type: "racing.x", data: {} } });
      await untilLockWaits(api.sql, 1);
      await tx`delete from endpoints where id = ${doomed}`;
    });
    const res = await ingested;
    expect(res.status).toBe(202);
    expect(res.body.jobs).toEqual([]);
    expect(await jobsFor(doomed)).toBe(0);
  });

  test("a delete waits for an ingest that routed to the endpoint, and deletes the jobs it made", async () => {
    const doomed = await endpointFor("awaited.*");
    let deleted!: Promise<boolean>;
    await api.sql.begin(async (tx) => {
      const row = { id: newId("event"), appId: DEFAULT_APPLICATION_ID, type: "awaited.x", dataJson: "{}", idempotencyKey: null, createdAt: new Date(), ttlSeconds: null };
      const made = await insertEventsWithJobs(tx, [row], 0);
      expect(made.jobs.map((job) => job.endpointId)).toEqual([doomed]);
      deleted = deleteEndpoint(api.sql, DEFAULT_APPLICATION_ID, doomed);
      await untilLockWaits(api.sql, 1);
    });
    expect(await deleted).toBe(true);
    expect(await jobsFor(doomed)).toBe(0);
  });

  test("an application's delete racing an ingest that fans out to two of its endpoints: both succeed, nothing is left", async () => {
    const created = await api.request("POST", "/applications", { key: TEST_ADMIN_KEY, body: { name: "Fanned" } });
    expect(created.status).toBe(201);
    const app = asAdminOf(created.body.id);
    // Ids grow with time, so the delete locks `prefixed` first; the ingest locks `exact` first,
    // since it probes an event's own type before its prefixes.
    const prefixed = await endpointFor("fan.*", app);
    const exact = await endpointFor("fan.x", app);
    expect(prefixed < exact).toBe(true);
    let deleted!: Promise<{ status: number }>;
    let ingested!: Promise<{ status: number; body: any }>;
    // A third transaction holds `prefixed` so that the delete queues for it first and the ingest,
    // holding `exact` already, behind it: released, the delete gets `prefixed` and then waits for
    // `exact`, while the ingest waits for `prefixed`. Postgres breaks such a cycle by failing one side.
    await api.sql.begin(async (tx) => {
      await tx`select id from endpoints where id = ${prefixed} for update`;
      deleted = api.request("DELETE", `/applications/${created.body.id}`, { key: TEST_ADMIN_KEY });
      await untilLockWaits(api.sql, 1);
      ingested = api.request("POST", "/events", { headers: app, body: { type: "fan.x", data: {} } });
      await untilLockWaits(api.sql, 2);
    });
    const res = await ingested;
    expect(res.status).toBe(202);
    expect(res.body.jobs).toHaveLength(2);
    expect((await deleted).status).toBe(204);
    const [left] = await api.sql<{ jobs: number; events: number }[]>`
      select (select count(*)::int from jobs where app_id = ${created.body.id}) as jobs,
             (select count(*)::int from events where app_id = ${created.body.id}) as events`;
    expect(left).toEqual({ jobs: 0, events: 0 });
  });

  test("an application's delete takes its jobs' entries and attempts, and leaves other applications' alone", async () => {
    const created = await api.request("POST", "/applications", { key: TEST_ADMIN_KEY, body: { name: "Doomed" } });
    expect(created.status).toBe(201);
    const app = asAdminOf(created.body.id);
    await endpointFor("gone.*", app);
    await endpointFor("gone.*", app);
    const doomedJobs = await jobsOf("gone.x", 2, app);
    expect(doomedJobs).toHaveLength(4);
    const keptJobs = await jobsOf("outbox.kept", 1);
    await attemptOn([doomedJobs[0]!, doomedJobs[3]!, keptJobs[0]!]);
    expect((await api.request("DELETE", `/applications/${created.body.id}`, { key: TEST_ADMIN_KEY })).status).toBe(204);
    expect(await entriesOf(doomedJobs)).toBe(0);
    expect(await attemptsOf(doomedJobs)).toBe(0);
    expect(await entriesOf(keptJobs)).toBe(1);
    expect(await attemptsOf(keptJobs)).toBe(1);
  });
});
