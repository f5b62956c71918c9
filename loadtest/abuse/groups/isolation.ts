import { randomBytes } from "node:crypto";
import type { ApiOperation } from "../../../services/http/operation.ts";
import { createEndpoint, type Context } from "../context.ts";
import { pollUntil, type Expect, type Req, type Res } from "../probe.ts";
import { FAIL_PATH_PREFIX } from "../receivers.ts";

const GROUP = "cross-application";

/**
 * Another application's ids on every application route, generated from the route table like
 * services/test/api/isolation.test.ts, so a route added later is covered without anyone
 * remembering to (and one whose ids this file cannot fill fails the run, asking for them). For each
 * route, three callers aim at application A's resources: B's key; the admin key acting as B
 * (Evently-Application: B); B's key naming A in Evently-Application. Each must get what a missing
 * resource gets, A's rows must not change, and no answer may hold A's ids. Then A makes the same
 * call and must not be refused: the refusal is B's alone.
 */
interface Fixture {
  endpoint: string;
  route: string;
  event: string;
  job: string;
  operation: string;
}

/** One of everything in A: an endpoint routed to `iso.*`, an event, its job dead (the receiver answers 410). */
async function fixture(ctx: Context, n: number): Promise<Fixture> {
  const { suite, a, receivers } = ctx;
  const type = `iso.n${n}`;
  const endpoint = await createEndpoint(ctx, a.key, { url: `${receivers.url}${FAIL_PATH_PREFIX}/iso-${n}`, eventTypes: [type] });
  const route = await suite.send({ method: "GET", path: `/routes?endpointId=${endpoint}`, key: a.key });
  const event = await suite.send({ method: "POST", path: "/events", key: a.key, body: { type, data: { n } } });
  const job: string = event.json.jobs[0].id;
  // Settled before B's calls, so a change to A's rows can only be theirs.
  const settled = await pollUntil(async () => {
    const res = await suite.send({ method: "GET", path: `/jobs/${job}`, key: a.key });
    return res.json?.status === "dead" ? true : undefined;
  }, 10_000);
  if (!settled) throw new Error(`fixture job ${job} did not end dead within 10 s (RETRY_SCHEDULE of the stack?)`);
  // The 410 disabled the endpoint, so replaying the event replays nothing (its job counts as
  // failed): the operation finishes without touching A's other rows.
  const replay = await suite.send({ method: "POST", path: `/events/${event.json.id}/replay`, key: a.key });
  const operation: string = replay.json.id;
  const finished = await pollUntil(async () => {
    const res = await suite.send({ method: "GET", path: `/operations/${operation}`, key: a.key });
    return res.json?.finishedAt ? true : undefined;
  }, 10_000);
  if (!finished) throw new Error(`fixture operation ${operation} did not finish within 10 s`);
  return { endpoint, route: route.json.data[0].id, event: event.json.id, job, operation };
}

/** The id a path parameter names, by the collection it follows. */
function pathFor(route: ApiOperation, f: Fixture): string {
  return route.path.replace(/\/([a-z-]+)\/:(\w+)/g, (_, collection: string, param: string) => {
    const id = ({ endpoints: f.endpoint, routes: f.route, events: f.event, jobs: f.job, operations: f.operation } as Record<string, string>)[collection];
    if (!id) throw new Error(`loadtest/abuse/groups/isolation.ts cannot fill :${param} of ${route.path}: add its collection to pathFor`);
    return `/${collection}/${id}`;
  });
}

/** Query parameters that name one of A's resources, for the list routes that take them. */
function queryFor(route: ApiOperation, f: Fixture): string {
  const shape = (route.query as unknown as { shape?: Record<string, unknown> } | undefined)?.shape ?? {};
  const params = new URLSearchParams();
  if ("endpointId" in shape) params.set("endpointId", f.endpoint);
  if ("eventId" in shape) params.set("eventId", f.event);
  return params.size > 0 ? `?${params}` : "";
}

/** A valid body for each route that takes one; ids in it are A's. A route missing here fails the run. */
function bodyFor(route: ApiOperation, f: Fixture): unknown {
  if (!route.body || route.bodyOptional) return undefined;
  const bodies: Record<string, unknown> = {
    createEndpoint: { url: "http://127.0.0.1:9/ok/never", eventTypes: ["never.*"] },
    updateEndpoint: { description: "changed by someone else" },
    createRoute: { endpointId: f.endpoint, eventType: "iso.b" },
    createEvent: { type: "iso.b", data: {} },
    createEvents: { events: [{ type: "iso.b", data: {} }] },
    recoverEndpoint: { since: "2000-01-01T00:00:00Z", until: "2000-01-02T00:00:00Z" },
  };
  if (!(route.operationId in bodies)) throw new Error(`loadtest/abuse/groups/isolation.ts has no body for ${route.operationId}: add one to bodyFor`);
  return bodies[route.operationId];
}

/** A digest of the fixture's rows; what B's calls must leave alone. */
async function fingerprintOf(ctx: Context, f: Fixture): Promise<string> {
  const { sql } = ctx;
  const [row] = await sql<{ digest: string }[]>`
    select concat_ws(' ',
      (select md5(string_agg(t::text, '|')) from endpoints t where id = ${f.endpoint}),
      (select md5(string_agg(t::text, '|' order by t::text)) from routes t where endpoint_id = ${f.endpoint}),
      (select md5(string_agg(t::text, '|')) from events t where id = ${f.event}),
      (select md5(string_agg(t::text, '|')) from jobs t where id = ${f.job}),
      (select md5(string_agg(t::text, '|' order by t::text)) from attempts t where job_id = ${f.job}),
      (select md5(string_agg(t::text, '|' order by t::text)) from outbox t where job_id = ${f.job}),
      (select md5(string_agg(t::text, '|')) from operations t where id = ${f.operation})) as digest`;
  return row!.digest;
}

/** A's ids in an answer, but for those the request itself carried (a 404 names the id it did not find). */
const idsIn = (res: Res, f: Fixture, req: Req) => {
  const sent = `${req.path} ${JSON.stringify(req.body ?? "")}`;
  return Object.values(f).filter((id) => res.text.includes(id) && !sent.includes(id));
};

export async function isolationCases(ctx: Context): Promise<void> {
  const { suite, a, b, adminKey, table } = ctx;
  const routes = table.filter((r) => (r.access ?? "application") === "application");
  suite.control(GROUP, "the route table has application routes to aim at", routes.length >= 19, `${routes.length} application routes`);
  let n = 0;
  for (const route of routes) {
    let f: Fixture;
    let path: string;
    let body: unknown;
    try {
      f = await fixture(ctx, n++);
      path = pathFor(route, f) + (route.path.includes(":") ? "" : queryFor(route, f));
      body = bodyFor(route, f);
    } catch (err) {
      suite.control(GROUP, `${route.method} ${route.path}: cases can be made`, false, (err as Error).message);
      continue;
    }
    const takesIdInPath = route.path.includes(":");
    const takesIdInBody = JSON.stringify(body ?? {}).includes(f.endpoint);
    const expect: Expect = takesIdInPath
      ? { status: 404, code: "not_found" }
      : takesIdInBody
        ? { status: 422, code: "validation_failed", field: "endpointId" }
        : { status: route.status };
    const callers: [string, Req][] = [
      [`B's key`, { method: route.method, path, key: b.key, body }],
      [`admin key acting as B`, { method: route.method, path, key: adminKey, headers: { "evently-application": b.id }, body }],
      [`B's key naming A in Evently-Application`, { method: route.method, path, key: b.key, headers: { "evently-application": a.id }, body }],
    ];
    for (const [who, req] of callers) {
      const naming = who.includes("naming A");
      const before = await fingerprintOf(ctx, f);
      const res = await suite.send(req);
      const changed = (await fingerprintOf(ctx, f)) !== before;
      const leaked = idsIn(res, f, req);
      const leak = changed ? "A's rows changed" : leaked.length > 0 ? `answer holds A's ids ${leaked.join(", ")}` : null;
      const sent = `${route.method} ${path} as ${who}${body === undefined ? "" : ` ${JSON.stringify(body)}`}`;
      const caseName = `${route.method} ${route.path} (${route.operationId}) as ${who}`;
      if (!naming && !takesIdInPath && !takesIdInBody) {
        // A call that names nothing of A's (a list, a create) is B's own and succeeds: a control,
        // unless something of A's shows or changes, which makes it a case wrongly accepted.
        if (leak) {
          suite.record({ group: GROUP, name: caseName, sent, expected: `${route.status}, nothing of A's`, got: `${res.status}, ${leak}`, verdict: "wrongly_accepted", requestId: res.requestId, note: leak });
        } else {
          suite.control(GROUP, `${caseName}: B's own call works and shows nothing of A's`, res.status === route.status, `${res.status} ${res.code ?? ""}`);
        }
      } else {
        suite.judge(GROUP, caseName, sent, res, naming ? { status: 404, code: "not_found" } : expect, leak);
      }
    }
    // A's own call is not refused (it may be a 409, like retrying a job that is not dead).
    const asA = await suite.send({ method: route.method, path, key: a.key, body });
    suite.control(
      GROUP,
      `${route.method} ${route.path}: A's own call is not refused`,
      asA.status > 0 && asA.status < 500 && ![401, 403, 404].includes(asA.status),
      `${asA.status} ${asA.code ?? ""}`,
    );
  }

  // The admin key naming an application that does not exist acts on nothing.
  for (const [name, named] of [
    ["an application id that does not exist", `app_${randomBytes(16).toString("hex")}`],
    ["a uid that does not exist", "no-such-customer"],
    ["a junk uid", "' or 1=1 --"],
  ]) {
    await suite.refuse(GROUP, `admin key naming ${name}`, { method: "GET", path: "/endpoints", key: adminKey, headers: { "evently-application": named! } }, { status: 404, code: "not_found" });
  }
}
