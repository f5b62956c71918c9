import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { DEFAULT_APPLICATION_ID } from "../../core/applications/sql.ts";
import type { AttemptRow } from "../../core/attempts/sql.ts";
import { createIndexOnlySql, type Sql } from "../../core/db/client.ts";
import { deferJobs, RECORD_SESSION, recordOutcomes, type JobOutcome } from "../../core/jobs/sql.ts";
import { hookUrl, startApi, type TestApi } from "../api/harness.ts";

/**
 * How the worker's attempt write is planned. It runs from one generic plan per connection of the
 * recorder's pool (RECORD_SESSION), made at the first write, typically while `jobs` and `outbox`
 * are small: it must not read them, nor `attempts`, by a scan once they have grown, nor compare
 * every job of a batch with every other. The plans come from auto_explain, sent to this client as
 * notices, so what is checked is the plan that ran.
 */

interface PlanNode {
  "Node Type": string;
  "Relation Name"?: string;
  "Index Name"?: string;
  Plans?: PlanNode[];
}

const nodes = (node: PlanNode): PlanNode[] => [node, ...(node.Plans ?? []).flatMap(nodes)];

let api: TestApi;
let record: Sql;
let endpointId: string;
const plans: PlanNode[][] = [];

beforeAll(async () => {
  api = await startApi();
  record = createIndexOnlySql(api.config.database, 1, RECORD_SESSION, {
    onnotice: (notice) => {
      const text = String(notice.message ?? "");
      if (text.includes("plan:")) plans.push(nodes((JSON.parse(text.slice(text.indexOf("{"))) as { Plan: PlanNode }).Plan));
    },
  });
  // The one connection (max 1) every write below goes through, as each of a recorder's does.
  await record.unsafe("load 'auto_explain'");
  await record.unsafe("set auto_explain.log_min_duration = 0; set auto_explain.log_format = json; set auto_explain.log_level = notice");
  endpointId = (await api.request("POST", "/endpoints", { body: { url: hookUrl(), eventTypes: ["record.*"] } })).body.id;
});
afterAll(async () => {
  await record.end();
  await api.close();
});

/** Jobs of `type` as the take leaves them: delivering, each with its lease entry. */
async function leased(type: string, n: number): Promise<{ id: string; eventId: string }[]> {
  const res = await api.request("POST", "/events/batch", { body: { events: Array.from({ length: n }, () => ({ type, data: {} })) } });
  expect(res.status).toBe(202);
  const jobs = await api.sql<{ id: string; eventId: string }[]>`
    update jobs set status = 'delivering' where event_type = ${type} returning id, event_id`;
  await api.sql`
    insert into outbox (job_id, due_at, reason) select id, now() + interval '1 minute', 'lease' from jobs where event_type = ${type}
    on conflict (job_id) do update set due_at = excluded.due_at, reason = excluded.reason`;
  return jobs;
}

function delivered(jobs: { id: string; eventId: string }[]): { attempts: AttemptRow[]; outcomes: JobOutcome[] } {
  const now = new Date();
  return {
    attempts: jobs.map((job, i) => ({
      id: `att_plan_${job.id}`, appId: DEFAULT_APPLICATION_ID, jobId: job.id, eventId: job.eventId, endpointId, attemptNumber: 1,
      url: hookUrl(), requestHeaders: { "content-type": "application/json" }, responseStatus: 200, responseBody: i === 0 ? 'quoted "body", {braces}' : null,
      durationMs: 3, errorClass: null, errorDetail: null, createdAt: now,
    })),
    outcomes: jobs.map((job) => ({ jobId: job.id, status: "delivered", endReason: null, attemptNumber: 1, nextAttemptAt: null, attemptedAt: now })),
  };
}

/** `n` jobs of history with their attempts, and as many outbox entries (retries an hour away). */
async function history(n: number): Promise<void> {
  await api.sql`
    insert into events (id, type, payload, created_at, app_id)
    select 'evt_hist_' || g, 'record.old', '{"n":1}', now(), ${DEFAULT_APPLICATION_ID} from generate_series(1, ${n}::int) g`;
  await api.sql`
    insert into jobs (id, event_id, endpoint_id, event_type, status, attempt_count, created_at, app_id)
    select 'job_hist_' || g, 'evt_hist_' || g, ${endpointId}, 'record.old', 'scheduled', 1, now(), ${DEFAULT_APPLICATION_ID}
    from generate_series(1, ${n}::int) g`;
  await api.sql`
    insert into attempts (id, app_id, job_id, event_id, endpoint_id, attempt_number, url, request_headers, duration_ms, created_at)
    select 'att_hist_' || g, ${DEFAULT_APPLICATION_ID}, 'job_hist_' || g, 'evt_hist_' || g, ${endpointId}, 1, 'https://example.test', '{}', 1, now()
    from generate_series(1, ${n}::int) g`;
  await api.sql`insert into outbox (job_id, due_at, reason) select 'job_hist_' || g, now() + interval '1 hour', 'retry' from generate_series(1, ${n}::int) g`;
}

describe("the worker's attempt write", () => {
  test("its plan, made while the tables were small, reads every table by index once they have grown", async () => {
    await api.sql`analyze jobs, events, outbox, attempts`;
    const first = await leased("record.first", 3);
    const before = delivered(first);
    await recordOutcomes(record, before.attempts, before.outcomes);
    expect(plans.length).toBe(1);
    const cached = plans[0]!;
    const scans = (plan: PlanNode[]) => plan.filter((n) => n["Node Type"] === "Seq Scan").map((n) => n["Relation Name"]);
    expect(scans(cached)).toEqual([]);

    await history(10_000);
    const jobs = await leased("record.new", 40);
    const after = delivered(jobs);
    // Not analyzed: the plan made on the small tables is the one that runs.
    await recordOutcomes(record, after.attempts, after.outcomes);
    expect(plans.length).toBe(2);
    expect(scans(plans[1]!)).toEqual([]);
    expect(plans[1]!.map((n) => [n["Node Type"], n["Relation Name"]])).toEqual(cached.map((n) => [n["Node Type"], n["Relation Name"]]));
    // Each entry deleted is found by its key, not by walking every lease entry of the jobs in flight.
    expect(plans[1]!.filter((n) => n["Relation Name"] === "outbox" && n["Node Type"] !== "ModifyTable").map((n) => n["Index Name"])).toEqual(["outbox_pkey"]);
    // No nested loop rescans a CTE's rows for every outer row: a batch's cost stays linear in its size.
    expect(plans[1]!.filter((n) => n["Node Type"] === "Nested Loop" && n.Plans?.[1]?.["Node Type"] === "CTE Scan")).toEqual([]);

    // And the write did its work through the array parameters this pool writes itself.
    const rows = await api.sql<{ status: string; n: number }[]>`
      select status, count(*)::int as n from jobs where event_type in ('record.first', 'record.new') group by status`;
    expect([...rows]).toEqual([{ status: "delivered", n: 43 }]);
    const [left] = await api.sql<{ n: number }[]>`
      select count(*)::int as n from outbox o join jobs j on j.id = o.job_id where j.event_type in ('record.first', 'record.new')`;
    expect(left!.n).toBe(0);
    const [body] = await api.sql<{ responseBody: string }[]>`select response_body from attempts where id = ${`att_plan_${jobs[0]!.id}`}`;
    expect(body!.responseBody).toBe('quoted "body", {braces}');
  });

  test("a deferral through the same pool reads every table by index too, and takes effect", async () => {
    // The history of the test above is in place; a deferral's plan is made now, on grown tables
    // the statistics still call small.
    const jobs = await leased("record.deferred", 5);
    const seen = plans.length;
    await deferJobs(record, jobs.map((job) => ({ jobId: job.id, delayMs: 60_000 })));
    expect(plans.length).toBe(seen + 1);
    expect(plans[seen]!.filter((n) => n["Node Type"] === "Seq Scan").map((n) => n["Relation Name"])).toEqual([]);
    const rows = await api.sql<{ status: string; reason: string; n: number }[]>`
      select j.status, o.reason, count(*)::int as n from jobs j join outbox o on o.job_id = j.id
      where j.event_type = 'record.deferred' group by 1, 2`;
    expect([...rows]).toEqual([{ status: "scheduled", reason: "retry", n: 5 }]);
  });
});
