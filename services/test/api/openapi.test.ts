import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { DEFAULT_APPLICATION_ID } from "../../core/applications/sql.ts";
import { TEST_ADMIN_KEY } from "../support/keys.ts";
import type { ApiOperation } from "../../http/operation.ts";
import { EVENT_TYPE_PATTERN_REGEX } from "../../core/event-types.ts";
import { newId } from "../../core/ids.ts";
import { recordOutcomes } from "../../core/jobs/sql.ts";
import { USER_AGENT } from "../../worker/delivery/sending.ts";
import { hookUrl, routeTable, startApi, type TestApi } from "./harness.ts";

type Doc = {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, unknown> };
};
type Operation = {
  operationId: string;
  summary: string;
  security?: unknown[];
  parameters: { name: string; in: string; required: boolean; description?: string; schema: Record<string, unknown> }[];
  requestBody?: unknown;
  responses: Record<string, unknown>;
};

const MAX_BATCH_EVENTS = 7;

let api: TestApi;
let doc: Doc;
let table: ApiOperation[];
beforeAll(async () => {
  api = await startApi({ env: { MAX_BATCH_EVENTS: String(MAX_BATCH_EVENTS) }, renderMetrics: async () => "m 1\n" });
  const res = await api.request("GET", "/openapi");
  expect(res.status).toBe(200);
  doc = res.body;
  table = routeTable(api.config);
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
      if (route.access === "public") expect(op.security).toEqual([]);
      else expect(Object.keys(op.responses)).toContain("401");
      if (route.body) expect(Object.keys(op.responses)).toEqual(expect.arrayContaining(["400", "413", "415"]));
      else expect(Object.keys(op.responses)).not.toContain("415"); // no body, no content type to refuse
      expect(Object.keys(op.responses)).toContain("422"); // every route refuses unknown query parameters
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
      "pending", "delivering", "scheduled", "delivered", "dead", "expired", "cancelled",
    ]);
    expect(jobsList.parameters.find((p) => p.name === "limit")!.schema).toMatchObject({ default: 50, maximum: 250 });
    const createEvent = doc.paths["/events"]!.post!;
    expect(createEvent.parameters).toContainEqual(expect.objectContaining({ name: "Idempotency-Key", in: "header" }));
    expect(doc.components.schemas.Error).toMatchObject({ required: ["code", "detail"] });
  });
});

describe("request bodies are documented as strict", () => {
  type Node = { $ref?: string; type?: unknown; properties?: Record<string, Node>; additionalProperties?: unknown } & Record<string, unknown>;
  const resolve = (node: Node): Node =>
    node.$ref ? (doc.components.schemas[node.$ref.replace("#/components/schemas/", "")] as Node) : node;

  /** Every object schema with declared properties under `node`, by path, $refs followed. */
  function declaredObjects(node: unknown, path: string, out: [string, Node][], seen = new Set<unknown>()): [string, Node][] {
    if (node === null || typeof node !== "object" || seen.has(node)) return out;
    seen.add(node);
    const n = resolve(node as Node);
    if (n !== node) return declaredObjects(n, path, out, seen);
    if (n.properties) out.push([path, n]);
    for (const [key, value] of Object.entries(n)) {
      if (key === "properties") {
        for (const [name, prop] of Object.entries(value as Record<string, Node>)) declaredObjects(prop, `${path}.${name}`, out, seen);
      } else declaredObjects(value, path, out, seen);
    }
    return out;
  }

  test("every object with declared fields, nested ones included, refuses others; free-form maps stay open", () => {
    const bodies = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.entries(ops)
        .filter(([, op]) => op.requestBody)
        .map(([method, op]) => [`${method} ${path}`, (op.requestBody as { content: Record<string, { schema: unknown }> }).content["application/json"]!.schema] as const),
    );
    expect(bodies.length).toBe(table.filter((r) => r.body).length);
    const objects = bodies.flatMap(([name, schema]) => declaredObjects(schema, name, []));
    expect(objects.map(([path]) => path)).toContain("post /events/batch.events"); // each batch event
    for (const [path, schema] of objects) expect({ path, additionalProperties: schema.additionalProperties }).toEqual({ path, additionalProperties: false });

    const create = doc.components.schemas.EndpointCreate as { properties: Record<string, Node> };
    for (const map of ["headers", "metadata"]) expect(create.properties[map]!.additionalProperties).toMatchObject({ type: "string" });
    const event = doc.components.schemas.EventCreate as { properties: Record<string, Node> };
    expect(event.properties.data!.additionalProperties).toBeUndefined();
  });
});

describe("documents what a newcomer needs", () => {
  const queryParameters = (path: string) => doc.paths[path]!.get!.parameters.filter((p) => p.in === "query");
  type Schema = { description?: string; properties: Record<string, { description?: string; items?: unknown }> };
  const component = (id: string) => doc.components.schemas[id] as Schema;

  test("every list filters by event type under one name, eventType, a pattern", () => {
    for (const path of ["/events", "/jobs", "/endpoints/{id}/jobs", "/endpoints/{id}/attempts"]) {
      const names = queryParameters(path).map((p) => p.name);
      expect({ path, names }).toEqual({ path, names: expect.arrayContaining(["eventType", "limit", "cursor", "since", "until"]) });
      const eventType = queryParameters(path).find((p) => p.name === "eventType")!;
      expect(eventType.schema.pattern).toBe(EVENT_TYPE_PATTERN_REGEX.source);
      expect(eventType.description).toContain("`order.*`");
    }
    const everyQueryParameter = Object.values(doc.paths).flatMap((ops) =>
      Object.values(ops).flatMap((op) => op.parameters.filter((p) => p.in === "query").map((p) => p.name)),
    );
    expect(everyQueryParameter).not.toContain("type");
  });

  test("list limits, attempt outcomes and error classes", () => {
    for (const path of ["/endpoints", "/routes", "/events", "/jobs", "/endpoints/{id}/jobs", "/endpoints/{id}/attempts"]) {
      const limit = queryParameters(path).find((p) => p.name === "limit")!;
      expect(limit.schema).toMatchObject({ minimum: 1, maximum: 250, default: 50 });
      expect(limit.description).toContain("1 to 250");
    }
    const status = queryParameters("/endpoints/{id}/attempts").find((p) => p.name === "status")!;
    expect(status.schema.enum).toEqual(["succeeded", "failed"]);
    expect(status.description).toContain("`errorClass` is null");
    expect(component("Attempt").properties.errorClass!.description).toContain("`blocked_address`");
  });

  test("endpoint fields: rateLimitPerSecond is enforced across workers, eventTypes, the user-agent sent", () => {
    for (const id of ["EndpointCreate", "EndpointUpdate", "Endpoint"]) {
      expect({ id, d: component(id).properties.rateLimitPerSecond!.description }).toEqual({ id, d: expect.stringContaining("enforced across all workers") });
      expect({ id, d: component(id).properties.eventTypes!.description }).toEqual({ id, d: expect.stringContaining("routes") });
    }
    expect(component("EndpointCreate").properties.headers!.description).toContain(`user-agent: ${USER_AGENT}`);
  });

  test("replayed, unknown query parameters and the API key's minimum length", () => {
    const batchItem = JSON.stringify(component("BatchAccepted"));
    expect(batchItem).toContain("idempotency key was seen before");
    const info = (doc as unknown as { info: { description: string } }).info;
    expect(info.description).toContain("Query parameters a route does not declare, or given twice, are refused");
    const schemes = (doc as unknown as { components: { securitySchemes: { apiKey: { description: string } } } }).components;
    expect(schemes.securitySchemes.apiKey.description).toContain("ADMIN_API_KEY");
    expect(info.description).toContain("Evently-Application");
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
        appId: DEFAULT_APPLICATION_ID,
        url: "https://x.example", requestHeaders: { "webhook-id": event.body.id }, responseStatus: 500,
        responseBody: "no", durationMs: 5, errorClass: "http_status", errorDetail: "HTTP 500", createdAt: new Date(),
      },
    ], []);
    await recordOutcomes(api.sql, [], [{ jobId, status: "dead", endReason: "retries_exhausted", attemptNumber: 1, nextAttemptAt: null, attemptedAt: new Date() }]);
    // A second dead job, for /replay (the first one is /retry's).
    const second = (await api.request("POST", "/events", { body: { type: "doc.x", data: { a: 2 } } })).body.jobs[0].id;
    await recordOutcomes(api.sql, [], [{ jobId: second, status: "dead", endReason: "gone", attemptNumber: 0, nextAttemptAt: null, attemptedAt: new Date() }]);
    const calls: [string, string, string | (() => string), unknown?, string?][] = [
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
      ["pauseEndpoint", "POST", `/endpoints/${endpoint.body.id}/pause`, { reason: "maintenance" }],
      ["resumeEndpoint", "POST", `/endpoints/${endpoint.body.id}/resume`],
      ["disableEndpoint", "POST", `/endpoints/${endpoint.body.id}/disable`],
      ["enableEndpoint", "POST", `/endpoints/${endpoint.body.id}/enable`],
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
      ["replayJob", "POST", `/jobs/${second}/replay`],
      ["replayEvent", "POST", `/events/${event.body.id}/replay`, { only: "all" }],
      ["recoverEndpoint", "POST", `/endpoints/${endpoint.body.id}/recover`, { since: "2000-01-01T00:00:00Z" }],
      ["listOperations", "GET", "/operations?kind=replay_event"],
      ["getOperation", "GET", () => `/operations/${lastOperationId}`],
      ["cancelOperation", "POST", () => `/operations/${lastOperationId}/cancel`],
      ["deleteRoute", "DELETE", `/routes/${route.body.id}`],
      ["deleteEndpoint", "DELETE", `/endpoints/${endpoint.body.id}`],
      ["createApplication", "POST", "/applications", { name: "Doc", uid: "doc" }, TEST_ADMIN_KEY],
      ["listApplications", "GET", "/applications", undefined, TEST_ADMIN_KEY],
      ["getApplication", "GET", "/applications/doc", undefined, TEST_ADMIN_KEY],
      ["updateApplication", "PATCH", "/applications/doc", { metadata: { a: "b" } }, TEST_ADMIN_KEY],
      ["createApiKey", "POST", "/applications/doc/api-keys", { name: "k" }, TEST_ADMIN_KEY],
      ["listApiKeys", "GET", "/applications/doc/api-keys", undefined, TEST_ADMIN_KEY],
      ["revokeApiKey", "DELETE", () => `/applications/doc/api-keys/${lastKeyId}`, undefined, TEST_ADMIN_KEY],
      ["deleteApplication", "DELETE", "/applications/doc", undefined, TEST_ADMIN_KEY],
    ];
    let lastKeyId = "";
    let lastOperationId = "";
    expect(calls.map((c) => c[0]).sort()).toEqual(table.map((r) => r.operationId).sort());
    for (const [operationId, method, path, body, key] of calls) {
      const spec = table.find((r) => r.operationId === operationId)!;
      const res = await api.request(method, typeof path === "string" ? path : path(), { body, key });
      if (operationId === "createApiKey") lastKeyId = res.body.id;
      if (operationId === "replayEvent") lastOperationId = res.body.id;
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
