import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { DEFAULT_APPLICATION_ID } from "../../core/applications/sql.ts";
import { TAKE_DUE_JOBS } from "../../core/outbox/sql.ts";
import { hookUrl, startApi, type TestApi } from "../api/harness.ts";

/**
 * How the Postgres transport's take is planned. It is planned afresh on every call, and the planner
 * takes its limit for the number of entries taken; the statement must not let that turn into a scan
 * of tables that only grow (jobs, events), nor of the churning outbox, for a take of a few jobs.
 */

let api: TestApi;
let endpointId: string;

beforeAll(async () => {
  api = await startApi();
  endpointId = (await api.request("POST", "/endpoints", { body: { url: hookUrl(), eventTypes: ["take.*"] } })).body.id;
});
afterAll(async () => {
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

describe("the Postgres transport's take", () => {
  test("reads jobs, events and the entries it leases by primary key, whatever its limit", async () => {
    await history(10_000);
    const res = await api.request("POST", "/events/batch", { body: { events: Array.from({ length: 30 }, () => ({ type: "take.new", data: {} })) } });
    expect(res.status).toBe(202);
    await api.sql`update outbox set due_at = now() - interval '1 second'`;
    await api.sql`analyze jobs, events, outbox`;
    // Not run: EXPLAIN alone plans the statement with these parameters (limit 256, as a worker asks).
    const rows = await api.sql.unsafe(`explain (format json) ${TAKE_DUE_JOBS}`, [256, 10_000, 256, true]);
    const plan = nodes((rows[0]!["QUERY PLAN"] as { Plan: PlanNode }[])[0]!.Plan);
    const scanned = plan.filter((n) => n["Node Type"] === "Seq Scan").map((n) => n["Relation Name"]);
    expect(scanned).not.toContain("jobs");
    expect(scanned).not.toContain("events");
    // The lease and the delete find their entries through the primary key, not by a pass over the outbox.
    for (const write of plan.filter((n) => n["Node Type"] === "ModifyTable")) {
      expect(nodes(write).filter((n) => n["Node Type"] === "Seq Scan")).toEqual([]);
    }
  });
});
