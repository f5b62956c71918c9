import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { apiRoutes } from "../../api/app.ts";
import { GroupCommitter } from "../../api/modules/events/group-commit.ts";
import type { ApiRoute } from "../../api/routing/route.ts";
import { newId } from "../../core/ids.ts";
import { recordOutcomes } from "../../core/jobs/sql.ts";
import { hookUrl, startApi, type TestApi } from "./harness.ts";

type Doc = {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, unknown> };
};
type Operation = {
  operationId: string;
  summary: string;
  security?: unknown[];
  parameters: { name: string; in: string; required: boolean; schema: Record<string, unknown> }[];
  requestBody?: unknown;
  responses: Record<string, unknown>;
};

const MAX_BATCH_EVENTS = 7;

let api: TestApi;
let doc: Doc;
let table: ApiRoute[];
beforeAll(async () => {
  api = await startApi({ env: { MAX_BATCH_EVENTS: String(MAX_BATCH_EVENTS) }, renderMetrics: async () => "m 1\n" });
  const res = await api.request("GET", "/openapi");
  expect(res.status).toBe(200);
  doc = res.body;
  table = apiRoutes({
    config: api.config,
    sql: api.sql,
    ingest: new GroupCommitter(api.sql, { maxEvents: 10, concurrency: 1, graceMs: 5000 }),
    readiness: async () => ({}),
    renderMetrics: async () => "",
  });
});
afterAll(async () => {
  await api.close();
});

const toOpenApiPath = (path: string) => path.replace(/:(\w+)/g, "{$1}");

describe("GET /openapi", () => {
  test("documents every route the app serves, and nothing it does not", () => {
    const served = api.app.routes.map((r) => `${r.method.toLowerCase()} ${toOpenApiPath(r.path)}`).sort();
    const documented = Object.entries(doc.paths)
      .flatMap(([path, ops]) => Object.keys(ops).map((method) => `${method} ${path}`))
      .sort();
    expect(served).toHaveLength(table.length);
    expect(documented).toEqual(served);
  });

  test("each operation has a unique id, a summary, its success response and the errors it can give", () => {
    const ids = new Set<string>();
    for (const route of table) {
      const op = doc.paths[toOpenApiPath(route.path)]![route.method.toLowerCase()]!;
      expect(op.operationId).toBe(route.operationId);
      expect(ids.has(op.operationId)).toBe(false);
      ids.add(op.operationId);
      expect(op.summary.length).toBeGreaterThan(5);
      expect(Object.keys(op.responses)).toContain(String(route.status));
      expect(Object.keys(op.responses)).toContain("500");
      if (route.public) expect(op.security).toEqual([]);
      else expect(Object.keys(op.responses)).toContain("401");
      if (route.body) expect(Object.keys(op.responses)).toEqual(expect.arrayContaining(["400", "413", "422"]));
      if (route.path.includes(":id")) {
        expect(Object.keys(op.responses)).toContain("404");
        expect(op.parameters).toContainEqual({ name: "id", in: "path", required: true, schema: { type: "string" } });
      }
    }
  });

  test("every $ref resolves to a component", () => {
    const refs = [...JSON.stringify(doc).matchAll(/"\$ref":"([^"]+)"/g)].map((m) => m[1]!);
    expect(refs.length).toBeGreaterThan(20);
    for (const ref of refs) {
      expect(ref).toStartWith("#/components/schemas/");
      expect(doc.components.schemas[ref.slice("#/components/schemas/".length)]).toBeDefined();
    }
    expect(JSON.stringify(doc)).not.toContain("$defs");
  });

  test("is built from the validating schemas, config-dependent limits included", () => {
    const batch = doc.components.schemas.EventBatch as { properties: { events: { maxItems: number; minItems: number } } };
    expect(batch.properties.events.maxItems).toBe(MAX_BATCH_EVENTS);
    expect(batch.properties.events.minItems).toBe(1);
    const create = doc.components.schemas.EndpointCreate as { required: string[]; properties: Record<string, unknown> };
    expect(create.required).toEqual(["url"]); // defaults make the rest optional on input
    const jobsList = doc.paths["/jobs"]!.get!;
    expect(jobsList.parameters.find((p) => p.name === "status")!.schema.enum).toEqual([
      "pending", "delivering", "scheduled", "delivered", "failed",
    ]);
    expect(jobsList.parameters.find((p) => p.name === "limit")!.schema).toMatchObject({ default: 50, maximum: 250 });
    const createEvent = doc.paths["/events"]!.post!;
    expect(createEvent.parameters).toContainEqual(expect.objectContaining({ name: "Idempotency-Key", in: "header" }));
    expect(doc.components.schemas.Error).toMatchObject({ required: ["code", "detail"] });
  });
});

describe("responses match their documented schemas", () => {
  test("every operation, called with valid input, answers its status and schema", async () => {
    const endpoint = await api.request("POST", "/endpoints", { body: { url: hookUrl(), eventTypes: ["doc.*"] } });
    const route = await api.request("POST", "/routes", { body: { endpointId: endpoint.body.id, eventType: "doc.x" } });
    const event = await api.request("POST", "/events", { body: { type: "doc.x", data: { a: 1 } } });
    const jobId = event.body.jobs[0].id;
    await recordOutcomes(api.sql, [
      {
        id: newId("attempt"), jobId, eventId: event.body.id, endpointId: endpoint.body.id, attemptNumber: 0,
        url: "https://x.example", requestHeaders: { "webhook-id": event.body.id }, responseStatus: 500,
        responseBody: "no", durationMs: 5, errorClass: "http_status", errorDetail: "HTTP 500", createdAt: new Date(),
      },
    ], []);
    await recordOutcomes(api.sql, [], [{ jobId, status: "failed", attemptNumber: 1, nextAttemptAt: null, attemptedAt: new Date() }]);
    const calls: [string, string, string, unknown?][] = [
      ["getHealth", "GET", "/health"],
      ["getReadiness", "GET", "/ready"],
      ["getMetrics", "GET", "/metrics"],
      ["getOpenApi", "GET", "/openapi"],
      ["createEndpoint", "POST", "/endpoints", { url: hookUrl() }],
      ["listEndpoints", "GET", "/endpoints"],
      ["getEndpoint", "GET", `/endpoints/${endpoint.body.id}`],
      ["updateEndpoint", "PATCH", `/endpoints/${endpoint.body.id}`, { description: "d" }],
      ["getEndpointSecret", "GET", `/endpoints/${endpoint.body.id}/secret`],
      ["rotateEndpointSecret", "POST", `/endpoints/${endpoint.body.id}/secret/rotate`],
      ["createRoute", "POST", "/routes", { endpointId: endpoint.body.id, eventType: "doc.y" }],
      ["listRoutes", "GET", "/routes"],
      ["getRoute", "GET", `/routes/${route.body.id}`],
      ["createEvent", "POST", "/events", { type: "doc.x", data: [1] }],
      ["createEvents", "POST", "/events/batch", { events: [{ type: "doc.x", data: {} }] }],
      ["listEvents", "GET", "/events"],
      ["getEvent", "GET", `/events/${event.body.id}`],
      ["listJobs", "GET", "/jobs"],
      ["getJob", "GET", `/jobs/${jobId}`],
      ["listEndpointJobs", "GET", `/endpoints/${endpoint.body.id}/jobs`],
      ["listEndpointAttempts", "GET", `/endpoints/${endpoint.body.id}/attempts`],
      ["retryJob", "POST", `/jobs/${jobId}/retry`],
      ["deleteRoute", "DELETE", `/routes/${route.body.id}`],
      ["deleteEndpoint", "DELETE", `/endpoints/${endpoint.body.id}`],
    ];
    expect(calls.map((c) => c[0]).sort()).toEqual(table.map((r) => r.operationId).sort());
    for (const [operationId, method, path, body] of calls) {
      const spec = table.find((r) => r.operationId === operationId)!;
      const res = await api.request(method, path, { body });
      expect({ operationId, status: res.status }).toEqual({ operationId, status: spec.status });
      if (spec.response === undefined) expect(res.text).toBe("");
      else if (spec.response === "text") expect(res.headers.get("content-type")).toStartWith("text/plain");
      else {
        const parsed = spec.response.safeParse(res.body);
        expect({ operationId, issues: parsed.success ? [] : parsed.error.issues }).toEqual({ operationId, issues: [] });
      }
    }
  });
});
