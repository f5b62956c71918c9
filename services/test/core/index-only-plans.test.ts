import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type postgres from "postgres";
import { DEFAULT_APPLICATION_ID } from "../../core/applications/sql.ts";
import type { AttemptRow } from "../../core/attempts/sql.ts";
import { BATCH_SESSION, createIndexOnlySql, type Sql } from "../../core/db/client.ts";
import { claimJobs, deferJobs, recordOutcomes, type JobOutcome } from "../../core/jobs/sql.ts";
import { clearPublished } from "../../core/outbox/sql.ts";
import { hookUrl, startApi, type TestApi } from "../api/harness.ts";

/**
 * How the delivery path's statements that run in INDEX_ONLY_SESSION are planned: the worker's claim,
 * attempt write and deferral (in BATCH_SESSION), and the fast path's outbox clear (the Postgres
 * transport's take has its own test, outbox-take.test.ts). Each runs from one generic plan per
 * connection, made at its first run, typically while `jobs` and `outbox` are small: it must not read
 * them, nor `attempts`, by a scan once they have grown, nor compare every job of a batch with every
 * other. The plans come from auto_explain, sent to this client as notices, so what is checked is
 * the plan that ran.
 */

interface PlanNode {
  "Node Type": string;
  "Relation Name"?: string;
  "Index Name"?: string;
  "Index Cond"?: string;
  "Parent Relationship"?: string;
  "CTE Name"?: string;
  Plans?: PlanNode[];
}

const nodes = (node: PlanNode): PlanNode[] => [node, ...(node.Plans ?? []).flatMap(nodes)];
const scans = (plan: PlanNode[]) => plan.filter((n) => n["Node Type"] === "Seq Scan").map((n) => n["Relation Name"]);
/** A nested loop's inner side, run once for every outer row. */
const inner = (n: PlanNode) => (n["Node Type"] === "Nested Loop" ? n.Plans?.find((p) => p["Parent Relationship"] === "Inner") : undefined);
/** A cross join with relaxed_commit's one row (db/client.ts RELAXED_COMMIT): the one nested loop that costs nothing. */
const oneRow = (n: PlanNode) => inner(n)?.["CTE Name"] === "relaxed_commit";
/**
 * Plan nodes whose work grows with the square of the batch: a nested loop that rescans a CTE for
 * every outer row, or an index probe by one row's key and the whole array of keys, which re-reads
 * the array on every probe.
 */
const quadratic = (plan: PlanNode[]) =>
  plan.filter((n) => (inner(n)?.["Node Type"] === "CTE Scan" && !oneRow(n)) || /\) AND \(.*= ANY/.test(n["Index Cond"] ?? ""));
const nestedLoops = (plan: PlanNode[]) => plan.filter((n) => n["Node Type"] === "Nested Loop" && !oneRow(n)).length;
/** Index scans without a condition: a walk of the whole index. */
const walks = (plan: PlanNode[]) => plan.filter((n) => n["Node Type"].startsWith("Index") && !n["Index Cond"]).map((n) => n["Index Name"]);
const shape = (plan: PlanNode[]) => plan.map((n) => [n["Node Type"], n["Relation Name"] ?? null, n["Index Name"] ?? null]);

let api: TestApi;
/** The clear's session, and the worker's. */
let indexOnly: Sql;
let batch: Sql;
let endpointId: string;
const plans: PlanNode[][] = [];

/** The plan `run` ran with: exactly one statement is expected. */
async function planOf(run: () => Promise<unknown>): Promise<PlanNode[]> {
  const seen = plans.length;
  await run();
  expect(plans.length).toBe(seen + 1);
  return plans[seen]!;
}

beforeAll(async () => {
  api = await startApi();
  const onnotice = (notice: postgres.Notice) => {
    const text = String(notice.message ?? "");
    if (text.includes("plan:")) plans.push(nodes((JSON.parse(text.slice(text.indexOf("{"))) as { Plan: PlanNode }).Plan));
  };
  // One connection (max 1) each, so each statement's plan is made once.
  indexOnly = createIndexOnlySql(api.config.database, 1, { onnotice, pool: "test" });
  batch = createIndexOnlySql(api.config.database, 1, { onnotice, session: BATCH_SESSION, pool: "test" });
  for (const sql of [indexOnly, batch]) {
    await sql.unsafe("load 'auto_explain'");
    await sql.unsafe("set auto_explain.log_min_duration = 0; set auto_explain.log_format = json; set auto_explain.log_level = notice");
  }
  endpointId = (await api.request("POST", "/endpoints", { body: { url: hookUrl(), eventTypes: ["plan.*"] } })).body.id;
});
afterAll(async () => {
  await indexOnly.end();
  await batch.end();
  await api.close();
});

/** `n` new jobs of `type`, pending, each with its `publish` outbox entry, as ingest leaves them. */
async function ingested(type: string, n: number): Promise<{ id: string; eventId: string }[]> {
  const res = await api.request("POST", "/events/batch", { body: { events: Array.from({ length: n }, () => ({ type, data: {} })) } });
  expect(res.status).toBe(202);
  return api.sql<{ id: string; eventId: string }[]>`select id, event_id from jobs where event_type = ${type} order by id`;
}

/** Jobs as a take or claim leaves them: delivering, each with its lease entry. */
async function leased(type: string, n: number): Promise<{ id: string; eventId: string }[]> {
  const jobs = await ingested(type, n);
  await api.sql`update jobs set status = 'delivering' where event_type = ${type}`;
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
      url: hookUrl(), requestHeaders: { "content-type": "application/json" }, responseStatus: 200,
      responseBody: i === 0 ? 'quoted "body", {braces}, \\ and NULL' : null,
      durationMs: 3, errorClass: null, errorDetail: null, createdAt: now,
    })),
    outcomes: jobs.map((job) => ({ jobId: job.id, status: "delivered", endReason: null, attemptNumber: 1, nextAttemptAt: null, attemptedAt: now })),
  };
}

/** `n` jobs of history with their attempts, and as many outbox entries (retries an hour away). */
async function history(n: number): Promise<void> {
  await api.sql`
    insert into events (id, type, payload, created_at, app_id)
    select 'evt_hist_' || g, 'plan.old', '{"n":1}', now(), ${DEFAULT_APPLICATION_ID} from generate_series(1, ${n}::int) g`;
  await api.sql`
    insert into jobs (id, event_id, endpoint_id, event_type, status, attempt_count, created_at, app_id)
    select 'job_hist_' || g, 'evt_hist_' || g, ${endpointId}, 'plan.old', 'scheduled', 1, now(), ${DEFAULT_APPLICATION_ID}
    from generate_series(1, ${n}::int) g`;
  await api.sql`
    insert into attempts (id, app_id, job_id, event_id, endpoint_id, attempt_number, url, request_headers, duration_ms, created_at)
    select 'att_hist_' || g, ${DEFAULT_APPLICATION_ID}, 'job_hist_' || g, 'evt_hist_' || g, ${endpointId}, 1, 'https://example.test', '{}', 1, now()
    from generate_series(1, ${n}::int) g`;
  await api.sql`insert into outbox (job_id, due_at, reason) select 'job_hist_' || g, now() + interval '1 hour', 'retry' from generate_series(1, ${n}::int) g`;
}

const claims = (jobs: { id: string }[]) => jobs.map((job) => ({ jobId: job.id, attempt: 0, leaseMs: 30_000 }));

describe("statements in INDEX_ONLY_SESSION", () => {
  test("plans made while the tables were small read every table by index once they have grown, and do their work", async () => {
    // Statistics of a young installation, as after autovacuum's first ANALYZE: a few rows each.
    await ingested("plan.seed", 20);
    await api.sql`analyze jobs, events, outbox, attempts`;
    // Each statement's plan is made now, on small analyzed tables.
    const first = {
      claim: await planOf(async () => claimJobs(batch, claims(await ingested("plan.claim1", 3)))),
      clear: await planOf(async () => clearPublished(indexOnly, (await ingested("plan.clear1", 3)).map((j) => j.id))),
      write: await planOf(async () => {
        const { attempts, outcomes } = delivered(await leased("plan.write1", 3));
        await recordOutcomes(batch, attempts, outcomes);
      }),
      defer: await planOf(async () => deferJobs(batch, (await leased("plan.defer1", 3)).map((j) => ({ jobId: j.id, delayMs: 60_000 })))),
    };
    for (const [name, plan] of Object.entries(first)) expect([name, scans(plan), walks(plan)]).toEqual([name, [], []]);

    await history(10_000);
    // Not analyzed: the plans made on the small tables are the ones that run.
    const toClaim = await ingested("plan.claim2", 40);
    const toClear = await ingested("plan.clear2", 40);
    const toWrite = delivered(await leased("plan.write2", 40));
    const toDefer = await leased("plan.defer2", 40);
    const grown = {
      claim: await planOf(async () => expect((await claimJobs(batch, claims(toClaim))).size).toBe(40)),
      clear: await planOf(() => clearPublished(indexOnly, toClear.map((j) => j.id))),
      write: await planOf(() => recordOutcomes(batch, toWrite.attempts, toWrite.outcomes)),
      defer: await planOf(() => deferJobs(batch, toDefer.map((j) => ({ jobId: j.id, delayMs: 60_000 })))),
    };
    for (const [name, plan] of Object.entries(grown)) {
      expect([name, scans(plan), walks(plan)]).toEqual([name, [], []]);
      expect([name, quadratic(plan)]).toEqual([name, []]);
      // The worker's statements join by hash: each table read once, whatever the batch.
      if (name !== "clear") expect([name, nestedLoops(plan)]).toEqual([name, 0]);
      expect([name, shape(plan)]).toEqual([name, shape(first[name as keyof typeof first])]);
    }
    // The write and the clear find each entry they delete by its key, not by walking a partial index
    // of every lease in flight or every fresh entry.
    const outboxReads = (plan: PlanNode[]) => plan.filter((n) => n["Relation Name"] === "outbox" && n["Node Type"] !== "ModifyTable").map((n) => n["Index Name"]);
    expect(outboxReads(grown.write)).toEqual(["outbox_pkey"]);
    expect(outboxReads(grown.clear)).toEqual(["outbox_pkey", "outbox_pkey"]);

    // And each did its work, through the array parameters this pool writes itself.
    const state = await api.sql<{ type: string; status: string; reason: string | null; n: number }[]>`
      select j.event_type as type, j.status, o.reason, count(*)::int as n from jobs j left join outbox o on o.job_id = j.id
      where j.event_type like 'plan._____2' group by 1, 2, 3 order by 1`;
    expect([...state]).toEqual([
      { type: "plan.claim2", status: "delivering", reason: "publish", n: 40 },
      { type: "plan.clear2", status: "pending", reason: null, n: 40 },
      { type: "plan.defer2", status: "scheduled", reason: "retry", n: 40 },
      { type: "plan.write2", status: "delivered", reason: null, n: 40 },
    ]);
    const [body] = await api.sql<{ responseBody: string }[]>`select response_body from attempts where id = ${toWrite.attempts[0]!.id}`;
    expect(body!.responseBody).toBe('quoted "body", {braces}, \\ and NULL');
  });
});
