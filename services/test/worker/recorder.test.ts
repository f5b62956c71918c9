import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { claimJobs } from "../../core/jobs/sql.ts";
import { clearPublished } from "../../core/outbox/sql.ts";
import { AttemptRecorder, type RecordedAttempt } from "../../worker/delivery/recorder.ts";
import { hookUrl, startApi, type TestApi } from "../api/harness.ts";
import { attemptAt } from "../support/attempts.ts";
import { captureLog } from "../support/log.ts";

/**
 * The worker's attempt writes against a real database: a batch the database refuses for one item's
 * content must not hold up or lose the others, and the refused item must fail its delivery (so the
 * job is offered again) rather than be acknowledged unrecorded.
 */

let api: TestApi;

beforeAll(async () => {
  api = await startApi();
  await api.request("POST", "/endpoints", { body: { url: hookUrl(), eventTypes: ["recorder.*"] } });
});
afterAll(async () => {
  await api.close();
});

/** A job as a worker holds it: published and claimed for its first attempt. */
async function claimedJob(): Promise<string> {
  const res = await api.request("POST", "/events", { body: { type: "recorder.test", data: {} } });
  const jobId: string = res.body.jobs[0].id;
  await clearPublished(api.sql, [jobId]);
  await claimJobs(api.sql, [{ jobId, attempt: 0, leaseMs: 30_000 }]);
  return jobId;
}

async function delivered(jobId: string, url?: string): Promise<RecordedAttempt> {
  const attempt = await attemptAt(api.sql, jobId, url === undefined ? {} : { url });
  return { attempt, outcome: { jobId, status: "delivered", endReason: null, attemptNumber: 1, nextAttemptAt: null, attemptedAt: new Date() } };
}

describe("attempt recorder", () => {
  test("one item the database refuses fails alone; its batch's others are written, and later writes go on", async () => {
    const { log, lines } = captureLog();
    const recorder = new AttemptRecorder(api.sql, log, { maxBatch: 100 });
    const [a, bad, b] = [await claimedJob(), await claimedJob(), await claimedJob()];
    // attempts.url is not null: the database refuses this one on every try.
    const items = [await delivered(a), await delivered(bad, null as unknown as string), await delivered(b)];
    // Recorded together, as concurrent deliveries are: the first goes at once, the other two as one batch.
    const settled = await Promise.allSettled(items.map((item) => recorder.record(item)));
    expect(settled.map((s) => s.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    const later = await claimedJob();
    await recorder.record(await delivered(later));
    const rows = await api.sql<{ id: string; status: string }[]>`select id, status from jobs where id = any (${[a, bad, b, later]}::text[]) order by id`;
    const status = Object.fromEntries(rows.map((r) => [r.id, r.status]));
    expect(status).toEqual({ [a]: "delivered", [bad]: "delivering", [b]: "delivered", [later]: "delivered" });
    expect(lines.filter((l) => l.msg === "attempt write refused by the database").map((l) => l.jobId)).toEqual([bad]);
    recorder.stop();
  });
});
