import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { TEST_ADMIN_KEY } from "../support/keys.ts";
import { hookUrl, startApi, type TestApi } from "./harness.ts";

/**
 * Pause, resume, disable and enable (the routes and PATCH): every transition, repeats, the held
 * jobs resume brings forward, what enable does and does not bring back, and 404 across applications.
 */

let api: TestApi;
let otherKey = "";
beforeAll(async () => {
  api = await startApi();
  const app = await api.request("POST", "/applications", { key: TEST_ADMIN_KEY, body: { name: "other" } });
  otherKey = (await api.request("POST", `/applications/${app.body.id}/api-keys`, { key: TEST_ADMIN_KEY, body: { name: "o" } })).body.key;
});
afterAll(async () => {
  await api.close();
});

async function endpoint(eventTypes: string[] = []): Promise<string> {
  const res = await api.request("POST", "/endpoints", { body: { url: hookUrl(), eventTypes } });
  expect(res.status).toBe(201);
  return res.body.id;
}

const post = (id: string, action: string, body?: unknown, key?: string) =>
  api.request("POST", `/endpoints/${id}/${action}`, { body, ...(key ? { key } : {}) });
const get = async (id: string) => (await api.request("GET", `/endpoints/${id}`)).body;

/** One job of `endpointId`, made to look held: scheduled, its `retry` outbox entry due in an hour. */
async function heldJob(endpointId: string, type: string): Promise<string> {
  const event = await api.request("POST", "/events", { body: { type, data: {} } });
  const job = event.body.jobs.find((j: { endpointId: string }) => j.endpointId === endpointId).id;
  await api.sql`update jobs set status = 'scheduled', next_attempt_at = now() + interval '1 hour' where id = ${job}`;
  await api.sql`update outbox set reason = 'retry', due_at = now() + interval '1 hour' where job_id = ${job}`;
  return job;
}

async function dueNow(jobId: string): Promise<boolean> {
  const [row] = await api.sql`
    select j.next_attempt_at <= now() and o.due_at <= now() and o.reason = 'retry' as due
    from jobs j join outbox o on o.job_id = j.id where j.id = ${jobId}`;
  return row!.due;
}

describe("pause and resume", () => {
  test("pause holds with a reason (default or given); a repeat keeps when, and the reason unless a new one is given", async () => {
    const id = await endpoint();
    const paused = await post(id, "pause");
    expect(paused.status).toBe(200);
    expect(paused.body).toMatchObject({ id, status: "paused", paused: true, enabled: true, statusReason: "paused by operator" });
    const since = paused.body.statusChangedAt;
    expect(new Date(since).toISOString()).toBe(since);

    const again = await post(id, "pause");
    expect(again.body).toMatchObject({ status: "paused", statusReason: "paused by operator", statusChangedAt: since, updatedAt: paused.body.updatedAt });
    const renamed = await post(id, "pause", { reason: "  receiver migrating " });
    expect(renamed.body).toMatchObject({ status: "paused", statusReason: "receiver migrating", statusChangedAt: since });
    expect(await get(id)).toMatchObject({ status: "paused", statusReason: "receiver migrating" });
  });

  test("resume clears the reason and brings the held jobs forward, only this endpoint's; a repeat changes nothing", async () => {
    const id = await endpoint(["res.*"]);
    const other = await endpoint(["res.*"]);
    await post(id, "pause", { reason: "maintenance" });
    const job = await heldJob(id, "res.a");
    const otherJob = await heldJob(other, "res.b");
    const resumed = await post(id, "resume");
    expect(resumed.status).toBe(200);
    expect(resumed.body).toMatchObject({ status: "active", paused: false, statusReason: null });
    expect(await dueNow(job)).toBe(true);
    expect(await dueNow(otherJob)).toBe(false);

    const when = resumed.body.statusChangedAt;
    const later = await heldJob(id, "res.c"); // a retry scheduled after the resume stays as scheduled
    const again = await post(id, "resume");
    expect(again.body).toMatchObject({ status: "active", statusReason: null, statusChangedAt: when });
    expect(await dueNow(later)).toBe(false);
  });

  test("a disabled endpoint cannot be paused (409, nothing changed); resume leaves it disabled", async () => {
    const id = await endpoint();
    const disabled = (await post(id, "disable")).body;
    const refused = await post(id, "pause");
    expect(refused.status).toBe(409);
    expect(refused.body.code).toBe("conflict");
    expect(await get(id)).toEqual(disabled);
    const resumed = await post(id, "resume");
    expect(resumed.status).toBe(200);
    expect(resumed.body).toEqual(disabled);
  });
});

describe("disable and enable", () => {
  test("disable records the reason, ends a pause and stops new jobs; a repeat keeps when", async () => {
    const id = await endpoint(["dis.*"]);
    await post(id, "pause");
    const res = await post(id, "disable", { reason: "customer churned" });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ status: "disabled", enabled: false, paused: false, statusReason: "customer churned" });
    const event = await api.request("POST", "/events", { body: { type: "dis.x", data: {} } });
    expect(event.body.jobs).toEqual([]);

    const again = await post(id, "disable");
    expect(again.body).toMatchObject({ status: "disabled", statusReason: "customer churned", statusChangedAt: res.body.statusChangedAt });
    const byDefault = await post(await endpoint(), "disable");
    expect(byDefault.body.statusReason).toBe("disabled by operator");
  });

  test("enable clears the reason and the circuit's failure run, but does not bring back cancelled jobs", async () => {
    const id = await endpoint(["en.*"]);
    const event = await api.request("POST", "/events", { body: { type: "en.x", data: {} } });
    const job = event.body.jobs[0].id;
    await post(id, "disable", { reason: "failing since 2026-01-01T00:00:00.000Z: auto-disabled" });
    await api.sql`update jobs set status = 'cancelled', end_reason = 'endpoint_disabled' where id = ${job}`;
    await api.sql`
      insert into endpoint_health (endpoint_id, app_id, circuit, circuit_retry_at, consecutive_failures, failing_since, times_opened)
      select id, app_id, 'open', now() + interval '1 minute', 40, now() - interval '5 days', 3 from endpoints where id = ${id}`;
    expect((await get(id)).circuit).toMatchObject({ state: "open", consecutiveFailures: 40, timesOpened: 3 });

    const res = await post(id, "enable");
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ status: "active", enabled: true, paused: false, statusReason: null });
    expect(res.body.circuit).toEqual({ state: "closed", since: null, retryAt: null, consecutiveFailures: 0, timesOpened: 0, failingSince: null });
    const [row] = await api.sql`select status, end_reason from jobs where id = ${job}`;
    expect(row).toEqual({ status: "cancelled", endReason: "endpoint_disabled" });
    const next = await api.request("POST", "/events", { body: { type: "en.y", data: {} } });
    expect(next.body.jobs.map((j: { endpointId: string }) => j.endpointId)).toEqual([id]);

    const again = await post(id, "enable");
    expect(again.body).toMatchObject({ status: "active", statusChangedAt: res.body.statusChangedAt });
  });

  test("enable leaves a paused endpoint paused", async () => {
    const id = await endpoint();
    await post(id, "pause");
    expect((await post(id, "enable")).body).toMatchObject({ status: "paused", statusReason: "paused by operator" });
  });
});

describe("PATCH enabled and paused", () => {
  test("paused and enabled move the status as the routes do, with `… by update` reasons", async () => {
    const id = await endpoint(["patch.*"]);
    const patch = (body: unknown) => api.request("PATCH", `/endpoints/${id}`, { body });
    expect((await patch({ paused: true })).body).toMatchObject({ status: "paused", statusReason: "paused by update" });
    const job = await heldJob(id, "patch.a");
    const described = await patch({ description: "still paused" });
    expect(described.body).toMatchObject({ status: "paused", statusReason: "paused by update", description: "still paused" });
    expect((await patch({ paused: false })).body).toMatchObject({ status: "active", statusReason: null });
    expect(await dueNow(job)).toBe(true);
    await patch({ paused: true });
    expect((await patch({ enabled: false })).body).toMatchObject({ status: "disabled", paused: false, statusReason: "disabled by update" });
    expect((await patch({ paused: false })).body.status).toBe("disabled");
    const refused = await patch({ paused: true, description: "not written" });
    expect(refused.status).toBe(409);
    expect((await get(id)).description).toBe("still paused");
    expect((await patch({ enabled: false, paused: true })).status).toBe(409);
    expect((await patch({ enabled: true, paused: true })).body).toMatchObject({ status: "paused", enabled: true, statusReason: "paused by update" });
    expect((await patch({ enabled: true })).body.status).toBe("paused");
  });
});

describe("bad requests", () => {
  test("unknown, malformed and other applications' endpoints are 404 on every status route, changing nothing", async () => {
    const id = await endpoint();
    const before = await get(id);
    for (const action of ["pause", "resume", "disable", "enable"]) {
      expect((await post("ep_00000000000000000000000000000000", action)).status).toBe(404);
      expect((await post("nope", action)).status).toBe(404);
      const cross = await post(id, action, undefined, otherKey);
      expect([action, cross.status, cross.body.code]).toEqual([action, 404, "not_found"]);
    }
    expect(await get(id)).toEqual(before);
  });

  test("a reason must be 1 to 500 characters, and nothing else may be sent", async () => {
    const id = await endpoint();
    for (const body of [{ reason: "" }, { reason: "   " }, { reason: "x".repeat(501) }, { reason: 5 }, { why: "x" }]) {
      const res = await post(id, "pause", body);
      expect([JSON.stringify(body), res.status]).toEqual([JSON.stringify(body), 422]);
    }
    expect((await get(id)).status).toBe("active");
  });
});
