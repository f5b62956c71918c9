import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { DEFAULT_APPLICATION_ID } from "../../core/applications/sql.ts";
import { createIndexOnlySql, createSql, type Sql } from "../../core/db/client.ts";
import { TAKE_DUE_JOBS, takeDueJobs } from "../../core/outbox/sql.ts";
import { hookUrl, startApi, type TestApi } from "../api/harness.ts";

/**
 * How the Postgres transport's take is planned. It runs from one cached generic plan on a connection
 * in INDEX_ONLY_SESSION, and that plan is made once, typically while the outbox is empty:
 * it must not read tables that only grow (jobs, events) nor the churning outbox by a scan, nor
 * compare every taken entry with every other, when a backlog comes later.
 */

let api: TestApi;
let take: Sql;
let endpointId: string;

beforeAll(async () => {
  api = await startApi();
  take = createIndexOnlySql(api.config.database, 1, { pool: "test" });
  endpointId = (await api.request("POST", "/endpoints", { body: { url: hookUrl(), eventTypes: ["take.*"] } })).body.id;
});
afterAll(async () => {
  await take.end();
  await api.close();
});

/**
 * `n` jobs of history, written directly: what jobs and events mostly hold. Half are delivered, half
 * wait as retries due in an hour, so the outbox is not small either.
 */
async function history(n: number): Promise<void> {
  await api.sql`
    insert into events (id, type, payload, created_at, app_id)
    select 'evt_hist_' || g, 'take.old', '{"n":1}', now(), ${DEFAULT_APPLICATION_ID} from generate_series(1, ${n}::int) g`;
  await api.sql`
    insert into jobs (id, event_id, endpoint_id, event_type, status, created_at, app_id)
    select 'job_hist_' || g, 'evt_hist_' || g, ${endpointId}, 'take.old', 'delivered', now(), ${DEFAULT_APPLICATION_ID}
    from generate_series(1, ${n}::int) g`;
  await api.sql`update jobs set status = 'scheduled', attempt_count = 1 where id in (select id from jobs where event_type = 'take.old' limit ${n / 2})`;
  await api.sql`insert into outbox (job_id, due_at, reason) select id, now() + interval '1 hour', 'retry' from jobs where status = 'scheduled'`;
}

interface PlanNode {
  "Node Type": string;
  "Relation Name"?: string;
  Plans?: PlanNode[];
}

function nodes(node: PlanNode): PlanNode[] {
  return [node, ...(node.Plans ?? []).flatMap(nodes)];
}

/** Plan nodes that rescan a CTE's rows for every outer row: a quadratic join of the taken entries. */
function quadratic(plan: PlanNode[]): PlanNode[] {
  return plan.filter((n) => n["Node Type"] === "Nested Loop" && (n.Plans ?? [])[1]?.["Node Type"] === "CTE Scan");
}

describe("the Postgres transport's take", () => {
  test("its plan, cached while the tables were empty, reads every table by index once a backlog comes", async () => {
    await api.sql`analyze jobs, events, outbox`;
    // The same connection the plan is cached on (max 1), as a worker's takes are.
    await take.unsafe(`prepare take_plan (int, int, int, boolean) as ${TAKE_DUE_JOBS}`);
    const explain = async () => {
      const rows = await take.unsafe("explain (format json) execute take_plan (256, 10000, 256, true)");
      return nodes((rows[0]!["QUERY PLAN"] as { Plan: PlanNode }[])[0]!.Plan);
    };
    const cached = await explain();
    expect(cached.filter((n) => n["Node Type"] === "Seq Scan").map((n) => n["Relation Name"])).toEqual([]);
    expect(quadratic(cached)).toEqual([]);

    await history(10_000);
    const res = await api.request("POST", "/events/batch", { body: { events: Array.from({ length: 30 }, () => ({ type: "take.new", data: {} })) } });
    expect(res.status).toBe(202);
    // Due now whatever the transport's publish grace (the history's retries stay an hour away).
    await api.sql`update outbox set due_at = now() - interval '1 second' where reason = 'publish'`;
    // Not analyzed: the cached plan is what runs, and it is the one made on the empty tables.
    expect(JSON.stringify(await explain())).toBe(JSON.stringify(cached));
    const taken = await takeDueJobs(take, { limit: 256, leaseMs: 10_000 });
    expect(taken.jobs.map((job) => job.eventType)).toEqual(Array(30).fill("take.new"));
    // What is left is the history's retries, an hour away: the entries just taken do not count.
    expect(taken.nextDueMs).toBeGreaterThan(3_500_000);
    expect(taken.nextDueMs).toBeLessThanOrEqual(3_600_000);
    // Nothing due: the empty take says so and when the next entry is, from the same cached plan.
    const empty = await takeDueJobs(take, { limit: 256, leaseMs: 10_000 });
    expect(empty.jobs).toEqual([]);
    expect(empty.nextDueMs).toBeGreaterThan(3_500_000);
    const [leases] = await api.sql<{ n: number }[]>`select count(*)::int as n from outbox where reason = 'lease'`;
    expect(leases!.n).toBe(30);
  });

  test("a full take answers that more is due now without looking for the next entry", async () => {
    const res = await api.request("POST", "/events/batch", { body: { events: Array.from({ length: 5 }, () => ({ type: "take.full", data: {} })) } });
    expect(res.status).toBe(202);
    await api.sql`update outbox set due_at = now() - interval '1 second' where reason = 'publish'`;
    // Exactly the limit taken: the consumer takes again at once, so the answer is 0 (due now)
    // though what is left (the history's retries) is an hour away.
    const full = await takeDueJobs(take, { limit: 5, leaseMs: 10_000 });
    expect(full.jobs.map((job) => job.eventType)).toEqual(Array(5).fill("take.full"));
    expect(full.nextDueMs).toBe(0);
    const after = await takeDueJobs(take, { limit: 5, leaseMs: 10_000 });
    expect(after.jobs).toEqual([]);
    expect(after.nextDueMs).toBeGreaterThan(3_500_000);
  });

  test("it is never JIT-compiled, nor is anything else: JIT is off on every connection", async () => {
    // The server's default is on. A cached generic plan over a backlog of a million entries was
    // estimated above JIT's cost thresholds and compiled on every take (0.8-0.9 s each).
    const setting = async (sql: Sql) => (await sql<{ jit: string }[]>`show jit`)[0]!.jit;
    expect(await setting(take)).toBe("off");
    expect(await setting(api.sql)).toBe("off");
    const admin = createSql(api.config.database, { pool: "test", max: 1, connection: { application_name: "evently-test-default" } });
    try {
      expect(await setting(admin)).toBe("off"); // a caller's own connection settings add to it
    } finally {
      await admin.end();
    }
  });
});
