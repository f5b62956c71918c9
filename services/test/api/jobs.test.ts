import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { DEFAULT_APPLICATION_ID } from "../../core/applications/sql.ts";
import type { AttemptRow } from "../../core/attempts/sql.ts";
import { newId } from "../../core/ids.ts";
import { recordOutcomes } from "../../core/jobs/sql.ts";
import { hookUrl, startApi, type TestApi } from "./harness.ts";

let api: TestApi;
let endpointA: string;
let endpointB: string;
/** job ids by name, made in beforeAll through the API and moved along as a worker would. */
const jobs = { paidA: "", paidB: "", refundA: "" };

beforeAll(async () => {
  api = await startApi();
  endpointA = (await api.request("POST", "/endpoints", { body: { url: hookUrl(), eventTypes: ["shop.*"] } })).body.id;
  endpointB = (await api.request("POST", "/endpoints", { body: { url: hookUrl(), eventTypes: ["shop.order.paid"] } })).body.id;

  const paid = await api.request("POST", "/events", { body: { type: "shop.order.paid", data: {} } });
  const refunded = await api.request("POST", "/events", { body: { type: "shop.refund", data: {} } });
  const jobOf = (res: typeof paid, endpointId: string) =>
    res.body.jobs.find((j: { endpointId: string }) => j.endpointId === endpointId).id as string;
  jobs.paidA = jobOf(paid, endpointA);
  jobs.paidB = jobOf(paid, endpointB);
  jobs.refundA = jobOf(refunded, endpointA);

  // paidA: failed twice (timeout, then 500), then delivered. paidB: failed for good. refundA: pending.
  const t0 = Date.now();
  await recordAttempt(jobs.paidA, paid.body.id, endpointA, 0, { errorClass: "timeout", errorDetail: "no response in 15000 ms", at: t0 });
  await recordAttempt(jobs.paidA, paid.body.id, endpointA, 1, { status: 500, body: "oops", errorClass: "http_status", at: t0 + 1 });
  await recordAttempt(jobs.paidA, paid.body.id, endpointA, 2, { status: 204, body: "", at: t0 + 2 });
  await recordAttempt(jobs.paidB, paid.body.id, endpointB, 0, { status: 410, body: "gone", errorClass: "http_status", at: t0 + 3 });
  await recordOutcomes(api.sql, [], [
    { jobId: jobs.paidA, status: "scheduled", endReason: null, attemptNumber: 1, nextAttemptAt: new Date(t0 + 5000), attemptedAt: new Date(t0) },
  ]);
  await recordOutcomes(api.sql, [], [
    { jobId: jobs.paidA, status: "scheduled", endReason: null, attemptNumber: 2, nextAttemptAt: new Date(t0 + 5000), attemptedAt: new Date(t0 + 1) },
  ]);
  await recordOutcomes(api.sql, [], [
    { jobId: jobs.paidA, status: "delivered", endReason: null, attemptNumber: 3, nextAttemptAt: null, attemptedAt: new Date(t0 + 2) },
    { jobId: jobs.paidB, status: "dead", endReason: "final_status", attemptNumber: 1, nextAttemptAt: null, attemptedAt: new Date(t0 + 3) },
  ]);
});
afterAll(async () => {
  await api.close();
});

async function recordAttempt(
  jobId: string,
  eventId: string,
  endpointId: string,
  attemptNumber: number,
  o: { status?: number; body?: string; errorClass?: AttemptRow["errorClass"]; errorDetail?: string; at: number },
) {
  await recordOutcomes(api.sql, [
    {
      id: newId("attempt", o.at),
      appId: DEFAULT_APPLICATION_ID,
      jobId,
      eventId,
      endpointId,
      attemptNumber,
      url: "https://hooks.example.com/x",
      requestHeaders: { "webhook-id": eventId, "x_custom_key": "v" },
      responseStatus: o.status ?? null,
      responseBody: o.body ?? null,
      durationMs: 12,
      errorClass: o.errorClass ?? null,
      errorDetail: o.errorDetail ?? null,
      createdAt: new Date(o.at),
    },
  ], []);
}

const ids = (body: { data: { id: string }[] }) => body.data.map((x) => x.id);

describe("GET /jobs/:id", () => {
  test("returns the job with its attempts in order, headers verbatim", async () => {
    const res = await api.request("GET", `/jobs/${jobs.paidA}`);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ id: jobs.paidA, endpointId: endpointA, eventType: "shop.order.paid", status: "delivered", attemptCount: 3 });
    expect(res.body.deliveredAt).not.toBeNull();
    expect(res.body.attempts.map((a: { attemptNumber: number }) => a.attemptNumber)).toEqual([0, 1, 2]);
    expect(res.body.attempts[0]).toMatchObject({ responseStatus: null, errorClass: "timeout", errorDetail: "no response in 15000 ms", durationMs: 12 });
    expect(res.body.attempts[1]).toMatchObject({ responseStatus: 500, responseBody: "oops", errorClass: "http_status" });
    expect(res.body.attempts[2]).toMatchObject({ responseStatus: 204, errorClass: null });
    expect(res.body.attempts[0].requestHeaders).toEqual({ "webhook-id": res.body.eventId, "x_custom_key": "v" });
  });

  test("a job with no attempts has an empty list; unknown ids are 404", async () => {
    const res = await api.request("GET", `/jobs/${jobs.refundA}`);
    expect(res.body.status).toBe("pending");
    expect(res.body.attempts).toEqual([]);
    for (const id of ["job_00000000000000000000000000000000", "job_", "evt_00000000000000000000000000000000"]) {
      expect((await api.request("GET", `/jobs/${id}`)).status).toBe(404);
    }
  });
});

describe("job lists", () => {
  test("GET /jobs filters by status, endpoint and event type pattern", async () => {
    expect(ids((await api.request("GET", "/jobs?status=dead")).body)).toEqual([jobs.paidB]);
    expect(ids((await api.request("GET", "/jobs?status=delivered")).body)).toEqual([jobs.paidA]);
    expect(ids((await api.request("GET", `/jobs?endpointId=${endpointA}`)).body)).toEqual([jobs.refundA, jobs.paidA]);
    expect(ids((await api.request("GET", "/jobs?eventType=shop.order.*")).body).sort()).toEqual([jobs.paidA, jobs.paidB].sort());
    expect(ids((await api.request("GET", "/jobs?eventType=shop.refund")).body)).toEqual([jobs.refundA]);
    expect(ids((await api.request("GET", "/jobs?eventType=*")).body)).toHaveLength(3);
    expect(ids((await api.request("GET", `/jobs?status=pending&endpointId=${endpointB}`)).body)).toEqual([]);
  });

  test("GET /jobs pages with cursors and bounds by time", async () => {
    const first = await api.request("GET", "/jobs?limit=2");
    expect(first.body.data).toHaveLength(2);
    const second = await api.request("GET", `/jobs?limit=2&cursor=${first.body.nextCursor}`);
    expect(second.body.data).toHaveLength(1);
    expect(second.body.nextCursor).toBeNull();
    expect(new Set([...ids(first.body), ...ids(second.body)]).size).toBe(3);

    const future = encodeURIComponent(new Date(Date.now() + 60_000).toISOString());
    const past = encodeURIComponent(new Date(Date.now() - 3_600_000).toISOString());
    expect((await api.request("GET", `/jobs?since=${future}`)).body.data).toEqual([]);
    expect((await api.request("GET", `/jobs?until=${past}`)).body.data).toEqual([]);
    expect((await api.request("GET", `/jobs?since=${past}&until=${future}`)).body.data).toHaveLength(3);
  });

  test("bad filters are 422 naming the field", async () => {
    for (const [query, field] of [
      ["status=lost", "status"],
      ["endpointId=ep_1", "endpointId"],
      ["eventType=a..b", "eventType"],
      ["since=2024-01-01", "since"],
    ]) {
      const res = await api.request("GET", `/jobs?${query}`);
      expect(res.status).toBe(422);
      expect(res.body.errors.map((e: { field: string }) => e.field)).toEqual([field]);
    }
  });

  test("GET /endpoints/:id/jobs lists that endpoint's jobs with the same filters", async () => {
    expect(ids((await api.request("GET", `/endpoints/${endpointA}/jobs`)).body)).toEqual([jobs.refundA, jobs.paidA]);
    expect(ids((await api.request("GET", `/endpoints/${endpointA}/jobs?status=pending`)).body)).toEqual([jobs.refundA]);
    expect(ids((await api.request("GET", `/endpoints/${endpointB}/jobs?eventType=shop.*`)).body)).toEqual([jobs.paidB]);
    const unknown = await api.request("GET", "/endpoints/ep_00000000000000000000000000000000/jobs");
    expect(unknown.status).toBe(404);
    expect(unknown.body.code).toBe("not_found");
  });

  test("GET /endpoints/:id/attempts filters by outcome and event type, newest first", async () => {
    const all = await api.request("GET", `/endpoints/${endpointA}/attempts`);
    expect(all.status).toBe(200);
    expect(all.body.data.map((a: { attemptNumber: number }) => a.attemptNumber)).toEqual([2, 1, 0]);
    const ok = await api.request("GET", `/endpoints/${endpointA}/attempts?status=succeeded`);
    expect(ok.body.data.map((a: { attemptNumber: number }) => a.attemptNumber)).toEqual([2]);
    const failed = await api.request("GET", `/endpoints/${endpointA}/attempts?status=failed&limit=1`);
    expect(failed.body.data.map((a: { attemptNumber: number }) => a.attemptNumber)).toEqual([1]);
    const older = await api.request("GET", `/endpoints/${endpointA}/attempts?status=failed&limit=1&cursor=${failed.body.nextCursor}`);
    expect(older.body.data.map((a: { attemptNumber: number }) => a.attemptNumber)).toEqual([0]);
    expect((await api.request("GET", `/endpoints/${endpointA}/attempts?eventType=shop.refund`)).body.data).toEqual([]);
    expect((await api.request("GET", `/endpoints/${endpointA}/attempts?eventType=shop.order.*`)).body.data).toHaveLength(3);
    expect((await api.request("GET", `/endpoints/${endpointB}/attempts`)).body.data).toHaveLength(1);
    expect((await api.request("GET", "/endpoints/nope/attempts")).status).toBe(404);
    expect((await api.request("GET", `/endpoints/${endpointA}/attempts?status=delivered`)).status).toBe(422);
  });
});

describe("POST /jobs/:id/retry", () => {
  test("schedules a failed job now; anything else is a 409 and unchanged", async () => {
    const before = Date.now();
    const res = await api.request("POST", `/jobs/${jobs.paidB}/retry`);
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ id: jobs.paidB, status: "scheduled", attemptCount: 1 });
    expect(Date.parse(res.body.nextAttemptAt)).toBeGreaterThanOrEqual(before - 1000);
    expect(Date.parse(res.body.nextAttemptAt)).toBeLessThanOrEqual(Date.now() + 1000);
    const [row] = await api.sql`select status from jobs where id = ${jobs.paidB}`;
    expect(row!.status).toBe("scheduled");

    for (const id of [jobs.paidB, jobs.paidA, jobs.refundA]) {
      const fingerprint = await api.fingerprint();
      const again = await api.request("POST", `/jobs/${id}/retry`);
      expect(again.status).toBe(409);
      expect(again.body.code).toBe("conflict");
      expect(await api.fingerprint()).toBe(fingerprint);
    }
  });
});
