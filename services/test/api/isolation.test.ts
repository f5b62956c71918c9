import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { recordOutcomes } from "../../core/jobs/sql.ts";
import { newId } from "../../core/ids.ts";
import type { ApiOperation } from "../../http/operation.ts";
import { TEST_ADMIN_KEY } from "../support/keys.ts";
import { hookUrl, routeTable, startApi, type TestApi } from "./harness.ts";

/**
 * Tenant isolation on every application route, generated from the route table: a route added later
 * is covered without anyone remembering to, and one whose ids this file cannot fill fails here,
 * asking for them. For each route, application B calls it on application A's resources and must get
 * what a missing resource gets (404, or 422 for an id in the body), with A's rows unchanged; then A
 * makes the same call and must succeed, so the refusal is not one everybody gets.
 */

let api: TestApi;
let table: ApiOperation[];
const keys = { a: "", b: "" };
const apps = { a: "", b: "" };

beforeAll(async () => {
  api = await startApi();
  table = routeTable(api.config);
  for (const side of ["a", "b"] as const) {
    const app = await api.request("POST", "/applications", { key: TEST_ADMIN_KEY, body: { name: side } });
    apps[side] = app.body.id;
    keys[side] = (await api.request("POST", `/applications/${app.body.id}/api-keys`, { key: TEST_ADMIN_KEY, body: { name: side } })).body.key;
  }
});
afterAll(async () => {
  await api.close();
});

interface Fixture {
  endpoint: string;
  route: string;
  event: string;
  job: string;
  operation: string;
}

/** One of everything in application A: an endpoint routed to `iso.*`, an event, its job failed after one attempt, a replay of it queued. */
async function fixture(): Promise<Fixture> {
  const as = { key: keys.a };
  const endpoint = await api.request("POST", "/endpoints", { ...as, body: { url: hookUrl(), eventTypes: ["iso.*"] } });
  const route = await api.request("GET", `/routes?endpointId=${endpoint.body.id}`, as);
  const event = await api.request("POST", "/events", { ...as, body: { type: "iso.a", data: { n: 1 } } });
  const job = event.body.jobs[0].id;
  const attemptedAt = new Date();
  await recordOutcomes(
    api.sql,
    [
      {
        id: newId("attempt"), appId: apps.a, jobId: job, eventId: event.body.id, endpointId: endpoint.body.id, attemptNumber: 1,
        url: hookUrl(), requestHeaders: {}, responseStatus: 500, responseBody: "", durationMs: 3, errorClass: "http_status",
        errorDetail: "HTTP 500", createdAt: attemptedAt,
      },
    ],
    [{ jobId: job, status: "dead", endReason: "retries_exhausted", attemptNumber: 1, nextAttemptAt: null, attemptedAt }],
  );
  const operation = await api.request("POST", `/events/${event.body.id}/replay`, as);
  return { endpoint: endpoint.body.id, route: route.body.data[0].id, event: event.body.id, job, operation: operation.body.id };
}

/** The id a path parameter names, by the collection it follows. */
function pathFor(route: ApiOperation, f: Fixture): string {
  return route.path.replace(/\/([a-z-]+)\/:(\w+)/g, (_, collection: string, param: string) => {
    const id = { endpoints: f.endpoint, routes: f.route, events: f.event, jobs: f.job, operations: f.operation }[collection as "endpoints"];
    if (!id) throw new Error(`isolation.test.ts cannot fill :${param} of ${route.path}: add its collection to pathFor`);
    return `/${collection}/${id}`;
  });
}

/** A valid body for each route that takes one; ids in it are A's. A route missing here fails the test. */
function bodyFor(route: ApiOperation, f: Fixture): unknown {
  if (!route.body || route.bodyOptional) return undefined;
  const bodies: Record<string, unknown> = {
    createEndpoint: { url: hookUrl(), eventTypes: ["*"] },
    updateEndpoint: { description: "changed by someone" },
    createRoute: { endpointId: f.endpoint, eventType: "iso.b" },
    createEvent: { type: "iso.a", data: {} },
    createEvents: { events: [{ type: "iso.a", data: {} }] },
    recoverEndpoint: { since: "2000-01-01T00:00:00Z" },
  };
  if (!(route.operationId in bodies)) throw new Error(`isolation.test.ts has no body for ${route.operationId}: add one to bodyFor`);
  return bodies[route.operationId];
}

/** A digest of every row of application A. */
async function fingerprintOf(appId: string): Promise<string> {
  const parts: string[] = [];
  for (const table of ["endpoints", "routes", "events", "jobs", "attempts", "operations"]) {
    const [row] = await api.sql<{ digest: string | null }[]>`
      select md5(string_agg(t::text, '|' order by t::text)) as digest from ${api.sql(table)} t where app_id = ${appId}`;
    parts.push(`${table}:${row!.digest}`);
  }
  const [outbox] = await api.sql<{ digest: string | null }[]>`
    select md5(string_agg(o::text, '|' order by o::text)) as digest from outbox o join jobs j on j.id = o.job_id where j.app_id = ${appId}`;
  return `${parts.join(" ")} outbox:${outbox!.digest}`;
}

describe("tenant isolation, on every application route of the table", () => {
  test("the table has application routes, and each one is listed below", () => {
    const routes = table.filter((r) => (r.access ?? "application") === "application");
    expect(routes.length).toBeGreaterThanOrEqual(19);
  });

  // One test per route, named by it, so a failure says which route leaks.
  test.each(
    // Evaluated when the file loads, before beforeAll: the table is built here the same way.
    routeTable()
      .filter((r) => (r.access ?? "application") === "application")
      .map((r) => [`${r.method} ${r.path}`, r.operationId] as const),
  )("%s", async (_name, operationId) => {
    const route = table.find((r) => r.operationId === operationId)!;
    const f = await fixture();
    const path = pathFor(route, f);
    const body = bodyFor(route, f);
    const before = await fingerprintOf(apps.a);

    const asB = await api.request(route.method, path, { key: keys.b, body });
    const takesIdInPath = route.path.includes(":");
    const takesIdInBody = JSON.stringify(body ?? {}).includes(f.endpoint);
    if (takesIdInPath) {
      expect([path, asB.status, asB.body?.code]).toEqual([path, 404, "not_found"]);
    } else if (takesIdInBody) {
      expect([path, asB.status]).toEqual([path, 422]);
      expect(asB.text).toContain("does not exist");
    } else {
      // Nothing of A's is named: B's own call works, and its answer holds none of A's ids.
      expect(asB.status).toBe(route.status);
      for (const id of Object.values(f)) expect(asB.text).not.toContain(id);
    }
    expect(await fingerprintOf(apps.a)).toBe(before);

    const asA = await api.request(route.method, path, { key: keys.a, body });
    expect([path, asA.status]).toEqual([path, route.status]);
  });

  test("an event of B fans out to none of A's endpoints, even when both subscribe to everything", async () => {
    const a = await api.request("POST", "/endpoints", { key: keys.a, body: { url: hookUrl(), eventTypes: ["*"] } });
    const b = await api.request("POST", "/endpoints", { key: keys.b, body: { url: hookUrl(), eventTypes: ["*"] } });
    const event = await api.request("POST", "/events", { key: keys.b, body: { type: "fan.out", data: {} } });
    const targets: string[] = event.body.jobs.map((j: { endpointId: string }) => j.endpointId);
    expect(targets).toContain(b.body.id);
    expect(targets).not.toContain(a.body.id);
    const [crossed] = await api.sql`
      select count(*)::int as n from jobs j join endpoints e on e.id = j.endpoint_id where j.app_id <> e.app_id`;
    expect(crossed!.n).toBe(0);
  });

  test("idempotency keys are per application: the same key in two applications makes two events", async () => {
    const send = (key: string) => api.request("POST", "/events", { key, body: { type: "idem.x", data: {}, idempotencyKey: "shared-key" } });
    const [fromA, fromB] = [await send(keys.a), await send(keys.b)];
    expect(fromA.status).toBe(202);
    expect(fromB.status).toBe(202);
    expect(fromB.headers.get("idempotent-replayed")).toBeNull();
    expect(fromA.body.id).not.toBe(fromB.body.id);
    expect((await send(keys.a)).headers.get("idempotent-replayed")).toBe("true");
  });
});
