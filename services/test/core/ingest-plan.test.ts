import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { DEFAULT_APPLICATION_ID } from "../../core/applications/sql.ts";
import { createSql, type Sql } from "../../core/db/client.ts";
import { INGEST_SESSION, insertEventsWithJobs, type NewEventRow } from "../../core/events/sql.ts";
import { newId } from "../../core/ids.ts";
import { startApi, type TestApi } from "../api/harness.ts";

/**
 * How the ingest statement is planned on the connections group commits use (INGEST_SESSION): from
 * a generic plan, from the first call, for groups of one (their own text) and larger alike. Left
 * to choose, Postgres planned it afresh on every call (about 1 ms each) once an application had
 * about a hundred routes.
 */

let api: TestApi;
let ingestSql: Sql;

beforeAll(async () => {
  api = await startApi();
  ingestSql = createSql(api.config.database, { pool: "test", max: 1, connection: INGEST_SESSION });
  // A hundred endpoints, each routed its own type: where the planning went wrong.
  await api.sql`
    insert into endpoints (id, url, secret, app_id)
    select 'ep_plan_' || g, 'http://127.0.0.1:9/plan', 'whsec_plan', ${DEFAULT_APPLICATION_ID} from generate_series(1, 100) g`;
  await api.sql`
    insert into routes (id, endpoint_id, event_type, app_id)
    select 'rt_plan_' || g, 'ep_plan_' || g, 'plan.e' || g, ${DEFAULT_APPLICATION_ID} from generate_series(1, 100) g`;
  await api.sql`analyze`;
});
afterAll(async () => {
  await ingestSql.end();
  await api.close();
});

const rows = (n: number, i: number): NewEventRow[] =>
  Array.from({ length: n }, (_, k) => ({
    id: newId("event"),
    appId: DEFAULT_APPLICATION_ID,
    type: `plan.e${1 + ((i + k) % 100)}`,
    dataJson: '{"n":1}',
    idempotencyKey: null,
    createdAt: new Date(),
    ttlSeconds: null,
    traceParent: null,
  }));

describe("the ingest statement's plan", () => {
  test("on an ingest connection it is never planned per call, whatever the group size", async () => {
    let jobs = 0;
    for (let i = 0; i < 30; i++) jobs += (await insertEventsWithJobs(ingestSql, rows(1 + (i % 4), i), 0, "plan_test")).jobs.length;
    expect(jobs).toBe(Array.from({ length: 30 }, (_, i) => 1 + (i % 4)).reduce((a, b) => a + b));
    // pg_prepared_statements is per session: asked on the same (only) connection. The driver may
    // hold the statement prepared more than once (one per parameter type signature); a group of
    // one event is a text of its own (one row of parameters), larger groups read evently_event_input.
    const plans = await ingestSql<{ input: string; genericPlans: number; customPlans: number }[]>`
      select case when statement like '%evently_event_input%' then 'function' else 'one row' end as input,
             sum(generic_plans)::int as generic_plans, sum(custom_plans)::int as custom_plans
      from pg_prepared_statements
      where statement like '%insert into events (id, app_id, type, payload%' and statement not like '%pg_prepared_statements%'
      group by 1 order by 1`;
    expect([...plans]).toEqual([
      { input: "function", genericPlans: 22, customPlans: 0 },
      { input: "one row", genericPlans: 8, customPlans: 0 },
    ]);
  });
});
