import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { DEFAULT_APPLICATION_ID } from "../../core/applications/sql.ts";
import { newId } from "../../core/ids.ts";
import { recordOutcomes, type JobOutcome } from "../../core/jobs/sql.ts";
import { silentLogger } from "../../core/log.ts";
import { OperationRunner } from "../../core/operations/runner.ts";
import { asAdminOf, TEST_ADMIN_KEY } from "../support/keys.ts";
import { pollUntil } from "../support/poll.ts";
import { hookUrl, startApi, type TestApi } from "./harness.ts";

/**
 * Replay and recovery through the API: one job at once (POST /jobs/:id/replay), an event's jobs or
 * an endpoint's window as operations, which a runner (core/operations/runner.ts) works through.
 * No worker runs here: a replayed job is one that is `scheduled` with a `retry` entry due now.
 */

let api: TestApi;
beforeAll(async () => {
  api = await startApi();
});
afterAll(async () => {
  await api.close();
});

const runner = (batchSize = 500, ratePerSecond = 1_000_000) => new OperationRunner(api.sql, { batchSize, ratePerSecond }, silentLogger);

async function endpoint(extra: Record<string, unknown> = {}): Promise<string> {
  const res = await api.request("POST", "/endpoints", { body: { url: hookUrl(), eventTypes: ["replay.*"], ...extra } });
  expect(res.status).toBe(201);
  return res.body.id;
}

/** An event fanned out to the given endpoints (all subscribed to replay.*); its job ids by endpoint. */
async function event(type = "replay.thing"): Promise<{ id: string; jobs: Record<string, string> }> {
  const res = await api.request("POST", "/events", { body: { type, data: { n: 1 } } });
  expect(res.status).toBe(202);
  return { id: res.body.id, jobs: Object.fromEntries(res.body.jobs.map((j: { id: string; endpointId: string }) => [j.endpointId, j.id])) };
}

/** Moves a job to `status` as a worker would, after `attempts` failed attempts (recorded as rows). */
async function end(jobId: string, status: JobOutcome["status"], attempts = 1, endReason: string | null = null): Promise<void> {
  const [job] = await api.sql<{ eventId: string; endpointId: string }[]>`select event_id, endpoint_id from jobs where id = ${jobId}`;
  const at = new Date();
  const rows = Array.from({ length: attempts }, (_, i) => ({
    id: newId("attempt", at.getTime() + i), appId: DEFAULT_APPLICATION_ID, jobId, eventId: job!.eventId, endpointId: job!.endpointId, attemptNumber: i + 1,
    url: "https://hooks.example.com/x", requestHeaders: {}, responseStatus: 500, responseBody: "no", durationMs: 1,
    errorClass: "http_status" as const, errorDetail: "HTTP 500", createdAt: at,
  }));
  const reason = endReason ?? { dead: "retries_exhausted", expired: "ttl", cancelled: "endpoint_disabled" }[status as "dead"] ?? null;
  await recordOutcomes(api.sql, rows, [{ jobId, status, endReason: reason, attemptNumber: attempts, nextAttemptAt: null, attemptedAt: at }]);
}

async function jobRow(id: string) {
  const [row] = await api.sql<{ status: string; attemptCount: number; attemptBase: number; replayedAt: Date | null; endReason: string | null; expiresAt: Date | null }[]>`
    select status, attempt_count, attempt_base, replayed_at, end_reason, expires_at from jobs where id = ${id}`;
  return row!;
}

async function entryOf(jobId: string) {
  const [row] = await api.sql<{ reason: string; dueAt: Date }[]>`select reason, due_at from outbox where job_id = ${jobId}`;
  return row ?? null;
}

const statusesOf = async (ids: string[]) => (await Promise.all(ids.map(jobRow))).map((r) => r.status);

describe("POST /jobs/:id/replay", () => {
  test("every end state becomes scheduled, due now, its history kept and its policy run afresh", async () => {
    const ep = await endpoint();
    for (const status of ["delivered", "dead", "expired", "cancelled"] as const) {
      const job = (await event()).jobs[ep]!;
      await end(job, status, 2);
      await api.sql`update jobs set expires_at = now() + interval '1 hour' where id = ${job}`;
      const before = Date.now();
      const res = await api.request("POST", `/jobs/${job}/replay`);
      expect([status, res.status]).toEqual([status, 202]);
      expect(res.body).toMatchObject({ id: job, status: "scheduled", attemptCount: 2, endReason: null, expiresAt: null });
      expect(Date.parse(res.body.nextAttemptAt)).toBeGreaterThanOrEqual(before - 1000);
      expect(Date.parse(res.body.nextAttemptAt)).toBeLessThanOrEqual(Date.now() + 1000);
      expect(await jobRow(job)).toMatchObject({ status: "scheduled", attemptCount: 2, attemptBase: 2, endReason: null, expiresAt: null });
      expect((await jobRow(job)).replayedAt).not.toBeNull();
      const entry = await entryOf(job);
      expect(entry?.reason).toBe("retry");
      expect(entry!.dueAt.getTime()).toBeLessThanOrEqual(Date.now() + 1000);
      // The attempts already made are all still there.
      const detail = await api.request("GET", `/jobs/${job}`);
      expect(detail.body.attempts.map((a: { attemptNumber: number }) => a.attemptNumber)).toEqual([1, 2]);
    }
  });

  test("a job that has not ended is a 409, and nothing changes", async () => {
    const ep = await endpoint();
    const pending = (await event()).jobs[ep]!;
    const scheduled = (await event()).jobs[ep]!;
    await recordOutcomes(api.sql, [], [
      { jobId: scheduled, status: "scheduled", endReason: null, attemptNumber: 1, nextAttemptAt: new Date(Date.now() + 60_000), attemptedAt: new Date() },
    ]);
    const delivering = (await event()).jobs[ep]!;
    await api.sql`update jobs set status = 'delivering', next_attempt_at = now() + interval '1 minute' where id = ${delivering}`;
    for (const id of [pending, scheduled, delivering]) {
      const fingerprint = await api.fingerprint();
      const res = await api.request("POST", `/jobs/${id}/replay`);
      expect([id, res.status, res.body.code]).toEqual([id, 409, "conflict"]);
      expect(res.body.detail).toContain("can be replayed");
      expect(await api.fingerprint()).toBe(fingerprint);
    }
    // Replayed once, it is live: a second replay is refused until it ends again.
    await end(pending, "dead");
    expect((await api.request("POST", `/jobs/${pending}/replay`)).status).toBe(202);
    expect((await api.request("POST", `/jobs/${pending}/replay`)).status).toBe(409);
  });

  test("unknown and malformed ids are 404", async () => {
    for (const id of ["job_00000000000000000000000000000000", "nope", "evt_00000000000000000000000000000000"])
      expect((await api.request("POST", `/jobs/${id}/replay`)).status).toBe(404);
  });

  test("the deprecated POST /jobs/:id/retry replays dead jobs only", async () => {
    const ep = await endpoint();
    const dead = (await event()).jobs[ep]!;
    const expired = (await event()).jobs[ep]!;
    await end(dead, "dead");
    await end(expired, "expired");
    expect((await api.request("POST", `/jobs/${dead}/retry`)).body).toMatchObject({ status: "scheduled", attemptCount: 1 });
    expect(await jobRow(dead)).toMatchObject({ attemptBase: 1 });
    const refused = await api.request("POST", `/jobs/${expired}/retry`);
    expect(refused.status).toBe(409);
    expect((await jobRow(expired)).status).toBe("expired");
  });
});

describe("GET /jobs?status=dead", () => {
  test("lists an application's dead jobs, also for the admin naming the application", async () => {
    const ep = await endpoint();
    const dead = (await event()).jobs[ep]!;
    await end(dead, "dead", 3, "final_status");
    const own = await api.request("GET", `/jobs?status=dead&endpointId=${ep}`);
    expect(own.body.data.map((j: { id: string }) => j.id)).toEqual([dead]);
    expect(own.body.data[0]).toMatchObject({ status: "dead", endReason: "final_status", attemptCount: 3 });
    const asAdmin = await api.request("GET", `/jobs?status=dead&endpointId=${ep}`, { key: null, headers: asAdminOf("default") });
    expect(asAdmin.body.data.map((j: { id: string }) => j.id)).toEqual([dead]);
    // Another application sees none of them.
    const other = await api.request("POST", "/applications", { key: TEST_ADMIN_KEY, body: { name: "other" } });
    const elsewhere = await api.request("GET", "/jobs?status=dead", { key: null, headers: asAdminOf(other.body.id) });
    expect(elsewhere.status).toBe(200);
    expect(elsewhere.body.data).toEqual([]);
  });
});

describe("POST /events/:id/replay", () => {
  test("only undelivered (the default) replays the event's dead, expired and cancelled jobs, not the delivered one", async () => {
    const [a, b, c, d, e] = [await endpoint(), await endpoint(), await endpoint(), await endpoint(), await endpoint()];
    const evt = await event();
    await end(evt.jobs[a]!, "delivered");
    await end(evt.jobs[b]!, "dead");
    await end(evt.jobs[c]!, "expired");
    await end(evt.jobs[d]!, "cancelled");
    // e's job is still pending: live jobs are never touched.
    const res = await api.request("POST", `/events/${evt.id}/replay`);
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ kind: "replay_event", state: "queued", params: { eventId: evt.id, only: "undelivered" }, total: null, done: 0, failed: 0 });
    expect(res.body.id).toStartWith("op_");

    const step = await runner().step();
    expect(step).toMatchObject({ operationId: res.body.id, replayed: 3, finished: true });
    const op = await api.request("GET", `/operations/${res.body.id}`);
    expect(op.body).toMatchObject({ state: "completed", total: 3, done: 3, failed: 0, error: null });
    expect(op.body.finishedAt).not.toBeNull();
    expect(await statusesOf([a, b, c, d, e].map((ep) => evt.jobs[ep]!))).toEqual(["delivered", "scheduled", "scheduled", "scheduled", "pending"]);
  });

  test("all replays delivered jobs too; a disabled endpoint's job is counted failed, not replayed", async () => {
    const [a, b, off] = [await endpoint(), await endpoint(), await endpoint()];
    const evt = await event();
    await end(evt.jobs[a]!, "delivered");
    await end(evt.jobs[b]!, "dead");
    await end(evt.jobs[off]!, "cancelled");
    await api.request("PATCH", `/endpoints/${off}`, { body: { enabled: false } });
    const res = await api.request("POST", `/events/${evt.id}/replay`, { body: { only: "all" } });
    expect(res.body.params).toEqual({ eventId: evt.id, only: "all" });
    await runner().step();
    expect((await api.request("GET", `/operations/${res.body.id}`)).body).toMatchObject({ state: "completed", total: 3, done: 2, failed: 1 });
    expect(await statusesOf([a, b, off].map((ep) => evt.jobs[ep]!))).toEqual(["scheduled", "scheduled", "cancelled"]);
  });

  test("unknown events are 404; a bad scope is 422", async () => {
    expect((await api.request("POST", "/events/evt_00000000000000000000000000000000/replay")).status).toBe(404);
    const evt = await event();
    const bad = await api.request("POST", `/events/${evt.id}/replay`, { body: { only: "some" } });
    expect(bad.status).toBe(422);
    expect(bad.body.errors[0].field).toBe("only");
    expect((await api.request("POST", `/events/${evt.id}/replay`, { body: { only: "all", extra: 1 } })).status).toBe(422);
  });
});

describe("POST /endpoints/:id/recover", () => {
  test("replays the endpoint's ended jobs created in the window, in the given statuses", async () => {
    const [ep, other] = [await endpoint(), await endpoint()];
    const jobs: string[] = [];
    for (let i = 0; i < 6; i++) jobs.push((await event()).jobs[ep]!);
    const otherJob = (await event()).jobs[other]!;
    // Six jobs created an hour, then minutes apart: 0 is before the window, 5 after it.
    const base = Date.now() - 3_600_000;
    for (const [i, id] of jobs.entries()) await api.sql`update jobs set created_at = ${new Date(base + i * 60_000)} where id = ${id}`;
    await end(jobs[0]!, "dead");
    await end(jobs[1]!, "dead");
    await end(jobs[2]!, "expired");
    await end(jobs[3]!, "delivered");
    await end(jobs[4]!, "cancelled");
    await end(jobs[5]!, "dead");
    await end(otherJob, "dead");
    const since = new Date(base + 60_000).toISOString();
    const until = new Date(base + 5 * 60_000).toISOString();

    const res = await api.request("POST", `/endpoints/${ep}/recover`, { body: { since, until, statuses: ["dead", "expired"] } });
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ kind: "recover_endpoint", state: "queued", params: { endpointId: ep, since, until, statuses: ["dead", "expired"] } });
    await runner().step();
    expect((await api.request("GET", `/operations/${res.body.id}`)).body).toMatchObject({ state: "completed", total: 2, done: 2, failed: 0 });
    expect(await statusesOf([...jobs, otherJob])).toEqual(["dead", "scheduled", "scheduled", "delivered", "cancelled", "dead", "dead"]);

    // Defaults: dead, expired and cancelled, until now.
    const all = await api.request("POST", `/endpoints/${ep}/recover`, { body: { since: new Date(base - 1000).toISOString() } });
    expect(all.body.params.statuses).toEqual(["dead", "expired", "cancelled"]);
    expect(Date.parse(all.body.params.until)).toBeLessThanOrEqual(Date.now());
    await runner().step();
    expect((await api.request("GET", `/operations/${all.body.id}`)).body).toMatchObject({ total: 3, done: 3 });
    expect(await statusesOf(jobs)).toEqual(["scheduled", "scheduled", "scheduled", "delivered", "scheduled", "scheduled"]);
  });

  test("bad windows are 422, unknown endpoints 404, a disabled endpoint 409", async () => {
    const ep = await endpoint();
    const now = new Date().toISOString();
    const cases: [unknown, string][] = [
      [{}, "since"],
      [{ since: "yesterday" }, "since"],
      [{ since: now, until: new Date(Date.now() - 1000).toISOString() }, "until"],
      [{ since: now, statuses: [] }, "statuses"],
      [{ since: now, statuses: ["pending"] }, "statuses.0"],
    ];
    for (const [body, field] of cases) {
      const res = await api.request("POST", `/endpoints/${ep}/recover`, { body });
      expect([field, res.status]).toEqual([field, 422]);
      expect(res.body.errors[0].field).toBe(field);
    }
    expect((await api.request("POST", "/endpoints/ep_00000000000000000000000000000000/recover", { body: { since: now } })).status).toBe(404);
    const off = await endpoint({ enabled: false });
    const refused = await api.request("POST", `/endpoints/${off}/recover`, { body: { since: now } });
    expect(refused.status).toBe(409);
    expect(refused.body.detail).toContain("disabled");
  });
});

describe("operations", () => {
  /** An endpoint with `n` dead jobs and a recovery of them, queued. */
  async function recovery(n: number): Promise<{ op: string; jobs: string[] }> {
    const ep = await endpoint();
    const jobs: string[] = [];
    for (let i = 0; i < n; i++) jobs.push((await event()).jobs[ep]!);
    for (const job of jobs) await end(job, "dead");
    const res = await api.request("POST", `/endpoints/${ep}/recover`, { body: { since: new Date(Date.now() - 60_000).toISOString() } });
    return { op: res.body.id, jobs };
  }
  const opOf = async (id: string) => (await api.request("GET", `/operations/${id}`)).body;

  test("steps go in id order from the cursor, progress written with each step, paced per operation", async () => {
    const { op, jobs } = await recovery(5);
    const paced = runner(2, 4); // 2 jobs per step, 4 a second: a step every 500 ms
    expect(await paced.step()).toMatchObject({ operationId: op, replayed: 2, finished: false });
    expect(await opOf(op)).toMatchObject({ state: "running", total: 5, done: 2, failed: 0, finishedAt: null });
    expect(await statusesOf(jobs)).toEqual(["scheduled", "scheduled", "dead", "dead", "dead"]);
    // The next step is not due yet, for this runner or any other.
    expect(await paced.step()).toBeNull();
    expect(await runner(2, 4).step()).toBeNull();
    await Bun.sleep(550);
    expect(await paced.step()).toMatchObject({ replayed: 2, finished: false });
    expect(await statusesOf(jobs)).toEqual(["scheduled", "scheduled", "scheduled", "scheduled", "dead"]);
    await Bun.sleep(550);
    expect(await paced.step()).toMatchObject({ replayed: 1, finished: true });
    expect(await opOf(op)).toMatchObject({ state: "completed", total: 5, done: 5, failed: 0 });
  });

  test("survives a runner restart: a second runner resumes from the cursor, and the counts are exact", async () => {
    const { op, jobs } = await recovery(12);
    const first = runner(2, 20); // a step every 100 ms
    first.start();
    await pollUntil(async () => (await opOf(op)).done >= 4, { what: "first steps" });
    await first.stop();
    const halfway = await opOf(op);
    expect(halfway.state).toBe("running");
    expect(halfway.done).toBeLessThan(12);
    expect(halfway.total).toBe(12);

    const second = runner(2, 20);
    second.start();
    const finished = await pollUntil(async () => {
      const body = await opOf(op);
      return body.state === "completed" && body;
    }, { what: "operation completed", timeoutMs: 15_000 });
    await second.stop();
    expect(finished).toMatchObject({ total: 12, done: 12, failed: 0 });
    // Each job replayed exactly once: scheduled, one retry entry, its base the one attempt it had.
    for (const job of jobs) {
      expect(await jobRow(job)).toMatchObject({ status: "scheduled", attemptCount: 1, attemptBase: 1 });
      expect((await entryOf(job))?.reason).toBe("retry");
    }
  });

  test("a step that fails midway leaves nothing behind: the next runner redoes it", async () => {
    const { op, jobs } = await recovery(3);
    // A trigger makes the progress write fail once (a sequence, because it is not rolled back with
    // the step): the replays of that step must roll back with it.
    await api.sql.unsafe(`
      create sequence progress_writes;
      create function fail_progress_once() returns trigger language plpgsql as $$
      begin
        if nextval('progress_writes') = 1 then raise exception 'injected failure'; end if;
        return new;
      end $$;
      create trigger fail_progress before update on operations for each row execute function fail_progress_once();`);
    try {
      await expect(runner().step()).rejects.toThrow("injected failure");
      expect(await statusesOf(jobs)).toEqual(["dead", "dead", "dead"]);
      expect(await opOf(op)).toMatchObject({ state: "queued", done: 0 });
      await runner().step();
      expect(await opOf(op)).toMatchObject({ state: "completed", total: 3, done: 3 });
    } finally {
      await api.sql.unsafe(`drop trigger fail_progress on operations; drop function fail_progress_once(); drop sequence progress_writes;`);
    }
  });

  test("cancel stops an operation between steps; jobs already replayed stay replayed; a finished one is 409", async () => {
    const { op, jobs } = await recovery(4);
    await runner(2, 1_000_000).step();
    const cancelled = await api.request("POST", `/operations/${op}/cancel`);
    expect(cancelled.status).toBe(200);
    expect(cancelled.body).toMatchObject({ state: "cancelled", done: 2 });
    expect(cancelled.body.finishedAt).not.toBeNull();
    await Bun.sleep(5);
    expect(await runner(2, 1_000_000).step()).toBeNull();
    expect(await statusesOf(jobs)).toEqual(["scheduled", "scheduled", "dead", "dead"]);
    const again = await api.request("POST", `/operations/${op}/cancel`);
    expect(again.status).toBe(409);
    expect(again.body.detail).toContain("cancelled");
  });

  test("an operation whose params this version cannot read fails, saying why", async () => {
    const { op } = await recovery(1);
    await api.sql`update operations set params = '{"endpointId": 5}' where id = ${op}`;
    await runner().step();
    const failed = await opOf(op);
    expect(failed.state).toBe("failed");
    expect(failed.error).toContain("params not understood");
  });

  test("lists newest first, filtered by kind and state, with cursors; other applications' are 404", async () => {
    const { op: recover } = await recovery(1);
    const replay = (await api.request("POST", `/events/${(await event()).id}/replay`)).body.id;
    const first = await api.request("GET", "/operations?limit=1");
    expect(first.body.data.map((o: { id: string }) => o.id)).toEqual([replay]);
    const next = await api.request("GET", `/operations?limit=1&cursor=${first.body.nextCursor}`);
    expect(next.body.data.map((o: { id: string }) => o.id)).toEqual([recover]);
    const kinds = await api.request("GET", "/operations?kind=recover_endpoint&state=queued");
    expect(kinds.body.data.map((o: { id: string }) => o.id)).toContain(recover);
    expect(kinds.body.data.every((o: { kind: string; state: string }) => o.kind === "recover_endpoint" && o.state === "queued")).toBe(true);
    expect((await api.request("GET", "/operations?state=lost")).status).toBe(422);
    expect((await api.request("GET", "/operations?cursor=job_00000000000000000000000000000000")).status).toBe(422);

    const other = await api.request("POST", "/applications", { key: TEST_ADMIN_KEY, body: { name: "elsewhere" } });
    const asOther = { key: null, headers: asAdminOf(other.body.id) };
    expect((await api.request("GET", `/operations/${recover}`, asOther)).status).toBe(404);
    expect((await api.request("POST", `/operations/${recover}/cancel`, asOther)).status).toBe(404);
    expect((await api.request("GET", "/operations", asOther)).body.data).toEqual([]);
    expect((await api.request("GET", "/operations/op_00000000000000000000000000000000")).status).toBe(404);
  });
});
