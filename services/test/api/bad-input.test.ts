import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { hookUrl, startApi, type TestApi } from "./harness.ts";
import { TEST_ADMIN_KEY } from "../support/keys.ts";

/**
 * Bad input is answered with the right status, code and field, never a 500, and never writes
 * anything. A `*` route exists, so a wrongly accepted event would leave an event and a job behind.
 */
const MAX_PAYLOAD_BYTES = 2048;
const MAX_BATCH_EVENTS = 5;

let api: TestApi;
let endpointId: string;
let routeId: string;
beforeAll(async () => {
  api = await startApi({ env: { MAX_PAYLOAD_BYTES: String(MAX_PAYLOAD_BYTES), MAX_BATCH_EVENTS: String(MAX_BATCH_EVENTS) } });
  const res = await api.request("POST", "/endpoints", { body: { url: hookUrl(), eventTypes: ["*"] } });
  endpointId = res.body.id;
  routeId = (await api.request("GET", `/routes?endpointId=${endpointId}`)).body.data[0].id;
});
afterAll(async () => {
  await api.close();
});

interface Case {
  name: string;
  method?: string;
  path: string | (() => string);
  /** Sent as JSON, or verbatim when a string (or a function giving one); as application/json unless headers say otherwise. */
  body?: unknown;
  headers?: Record<string, string>;
  status: number;
  code: string;
  /** The one field the 422 must name. */
  field?: string;
}

const event = (over: Record<string, unknown> = {}) => ({ type: "order.paid", data: { a: 1 }, ...over });
const bigString = (bytes: number) => "x".repeat(bytes);

const cases: Case[] = [
  // Bodies that are not JSON at all.
  { name: "malformed JSON", path: "/events", body: '{"type": "a", "data": {', status: 400, code: "malformed_json" },
  { name: "empty body", path: "/events", body: "", status: 400, code: "malformed_json" },
  { name: "whitespace body", path: "/events", body: "  \n", status: 400, code: "malformed_json" },
  { name: "JSON with a trailing comma", path: "/events", body: '{"type":"a","data":{},}', status: 400, code: "malformed_json" },
  { name: "a raw control character in a string", path: "/events", body: '{"type":"a","data":{"x":"a\u0001b"}}', status: 400, code: "malformed_json" },
  { name: "malformed JSON to /endpoints", path: "/endpoints", body: "url=https://x", status: 400, code: "malformed_json" },
  { name: "malformed JSON to PATCH", method: "PATCH", path: () => `/endpoints/${endpointId}`, body: "{", status: 400, code: "malformed_json" },

  // Valid JSON, wrong shape.
  { name: "body is an array", path: "/events", body: [event()], status: 422, code: "validation_failed", field: "body" },
  { name: "body is null", path: "/events", body: "null", status: 422, code: "validation_failed", field: "body" },
  { name: "missing type", path: "/events", body: { data: {} }, status: 422, code: "validation_failed", field: "type" },
  { name: "type not a string", path: "/events", body: event({ type: 5 }), status: 422, code: "validation_failed", field: "type" },
  { name: "type with a space", path: "/events", body: event({ type: "order paid" }), status: 422, code: "validation_failed", field: "type" },
  { name: "type with *", path: "/events", body: event({ type: "order.*" }), status: 422, code: "validation_failed", field: "type" },
  { name: "type too long", path: "/events", body: event({ type: "a".repeat(201) }), status: 422, code: "validation_failed", field: "type" },
  { name: "missing data", path: "/events", body: { type: "a" }, status: 422, code: "validation_failed", field: "data" },
  { name: "data a string", path: "/events", body: event({ data: "hello" }), status: 422, code: "validation_failed", field: "data" },
  { name: "data null", path: "/events", body: event({ data: null }), status: 422, code: "validation_failed", field: "data" },
  { name: "empty idempotencyKey", path: "/events", body: event({ idempotencyKey: "" }), status: 422, code: "validation_failed", field: "idempotencyKey" },
  { name: "idempotencyKey a number", path: "/events", body: event({ idempotencyKey: 5 }), status: 422, code: "validation_failed", field: "idempotencyKey" },

  // What Postgres jsonb cannot store.
  { name: "\\u0000 in data", path: "/events", body: '{"type":"a","data":{"note":"x\\u0000y"}}', status: 422, code: "validation_failed", field: "data.note" },
  { name: "\\u0000 deep in an array", path: "/events", body: '{"type":"a","data":{"list":[1,{"k":"\\u0000"}]}}', status: 422, code: "validation_failed", field: "data.list.1.k" },
  { name: "\\u0000 in a key", path: "/events", body: '{"type":"a","data":{"a\\u0000":1}}', status: 422, code: "validation_failed", field: "data.a\\u0000" },
  { name: "a lone surrogate", path: "/events", body: '{"type":"a","data":{"s":"\\ud800"}}', status: 422, code: "validation_failed", field: "data.s" },
  { name: "\\u0000 in an endpoint description", path: "/endpoints", body: '{"url":"https://a.example","description":"\\u0000"}', status: 422, code: "validation_failed", field: "description" },
  { name: "nesting deeper than 128", path: "/events", body: `{"type":"a","data":${"[".repeat(200)}${"]".repeat(200)}}`, status: 422, code: "validation_failed", field: "body" },

  // Size limits.
  { name: "event body over MAX_PAYLOAD_BYTES", path: "/events", body: event({ data: { s: bigString(MAX_PAYLOAD_BYTES) } }), status: 413, code: "payload_too_large" },
  { name: "endpoint body over MAX_PAYLOAD_BYTES", path: "/endpoints", body: { url: "https://a.example", description: bigString(MAX_PAYLOAD_BYTES) }, status: 413, code: "payload_too_large" },
  { name: "batch body over its limit", path: "/events/batch", body: { events: Array.from({ length: 5 }, () => event({ data: { s: bigString(2100) } })) }, status: 413, code: "payload_too_large" },
  { name: "batch item data over MAX_PAYLOAD_BYTES", path: "/events/batch", body: { events: [event(), event({ data: { s: bigString(MAX_PAYLOAD_BYTES) } })] }, status: 422, code: "validation_failed", field: "events.1.data" },

  // Batches.
  { name: "batch without events", path: "/events/batch", body: {}, status: 422, code: "validation_failed", field: "events" },
  { name: "empty batch", path: "/events/batch", body: { events: [] }, status: 422, code: "validation_failed", field: "events" },
  { name: "batch over MAX_BATCH_EVENTS", path: "/events/batch", body: { events: Array.from({ length: MAX_BATCH_EVENTS + 1 }, () => event()) }, status: 422, code: "validation_failed", field: "events" },
  { name: "batch with one bad type", path: "/events/batch", body: { events: [event(), event(), event(), event({ type: "bad type" })] }, status: 422, code: "validation_failed", field: "events.3.type" },
  { name: "batch with \\u0000 in one item", path: "/events/batch", body: '{"events":[{"type":"a","data":{}},{"type":"a","data":{"x":"\\u0000"}}]}', status: 422, code: "validation_failed", field: "events.1.data.x" },

  // Endpoints.
  { name: "endpoint without url", path: "/endpoints", body: {}, status: 422, code: "validation_failed", field: "url" },
  ...["ftp://files.example.com/x", "javascript:alert(1)", "not a url", "http://", "https:// spaced.example", "http:example.com", "//example.com/x", "file:///etc/passwd", "https://a.example/\nx"].map(
    (url): Case => ({ name: `endpoint url ${JSON.stringify(url)}`, path: "/endpoints", body: { url }, status: 422, code: "validation_failed", field: "url" }),
  ),
  ...["Host", "content-length", "Content-Type", "Transfer-Encoding", "connection", "webhook-signature", "Webhook-Id"].map(
    (name): Case => ({ name: `reserved header ${name}`, path: "/endpoints", body: { url: "https://a.example", headers: { [name]: "v" } }, status: 422, code: "validation_failed", field: `headers.${name}` }),
  ),
  { name: "header name with a space", path: "/endpoints", body: { url: "https://a.example", headers: { "x bad": "v" } }, status: 422, code: "validation_failed", field: "headers.x bad" },
  { name: "header value with a newline", path: "/endpoints", body: { url: "https://a.example", headers: { "x-a": "v\r\nx-b: injected" } }, status: 422, code: "validation_failed", field: "headers.x-a" },
  { name: "header given twice in two cases", path: "/endpoints", body: { url: "https://a.example", headers: { "X-A": "1", "x-a": "2" } }, status: 422, code: "validation_failed", field: "headers.x-a" },
  { name: "header value not a string", path: "/endpoints", body: { url: "https://a.example", headers: { "x-a": 1 } }, status: 422, code: "validation_failed", field: "headers.x-a" },
  { name: "timeoutMs below 100", path: "/endpoints", body: { url: "https://a.example", timeoutMs: 99 }, status: 422, code: "validation_failed", field: "timeoutMs" },
  { name: "timeoutMs above 300000", path: "/endpoints", body: { url: "https://a.example", timeoutMs: 300_001 }, status: 422, code: "validation_failed", field: "timeoutMs" },
  { name: "timeoutMs fractional", path: "/endpoints", body: { url: "https://a.example", timeoutMs: 150.5 }, status: 422, code: "validation_failed", field: "timeoutMs" },
  { name: "rateLimitPerSecond zero", path: "/endpoints", body: { url: "https://a.example", rateLimitPerSecond: 0 }, status: 422, code: "validation_failed", field: "rateLimitPerSecond" },
  { name: "enabled a string", path: "/endpoints", body: { url: "https://a.example", enabled: "yes" }, status: 422, code: "validation_failed", field: "enabled" },
  { name: "metadata value not a string", path: "/endpoints", body: { url: "https://a.example", metadata: { a: 1 } }, status: 422, code: "validation_failed", field: "metadata.a" },
  { name: "eventTypes with a bad pattern", path: "/endpoints", body: { url: "https://a.example", eventTypes: ["ok.type", "bad.*.x"] }, status: 422, code: "validation_failed", field: "eventTypes.1" },
  { name: "PATCH with a bad url", method: "PATCH", path: () => `/endpoints/${endpointId}`, body: { url: "ftp://x.example" }, status: 422, code: "validation_failed", field: "url" },
  { name: "PATCH with a reserved header", method: "PATCH", path: () => `/endpoints/${endpointId}`, body: { headers: { host: "x" } }, status: 422, code: "validation_failed", field: "headers.host" },
  { name: "PATCH with a bad eventTypes", method: "PATCH", path: () => `/endpoints/${endpointId}`, body: { eventTypes: ["*.x"] }, status: 422, code: "validation_failed", field: "eventTypes.0" },

  // Bodies are strict: a field the operation does not declare is refused, never dropped, at every
  // level with declared fields; the path names it in full.
  { name: "an endpoint with a secret", path: "/endpoints", body: { url: "https://a.example", secret: "whsec_mine" }, status: 422, code: "validation_failed", field: "secret" },
  { name: "an endpoint with a misspelt field", path: "/endpoints", body: { url: "https://a.example", timeout_ms: 1000 }, status: 422, code: "validation_failed", field: "timeout_ms" },
  { name: "an event with an id", path: "/events", body: event({ id: "evt_00000000000000000000000000000000" }), status: 422, code: "validation_failed", field: "id" },
  { name: "a batch with an unknown field in event 2", path: "/events/batch", body: { events: [event(), event(), event({ foo: 1 })] }, status: 422, code: "validation_failed", field: "events.2.foo" },
  { name: "a batch with an unknown top-level field", path: "/events/batch", body: { events: [event()], atomic: false }, status: 422, code: "validation_failed", field: "atomic" },
  { name: "PATCH an endpoint with an unknown field", method: "PATCH", path: () => `/endpoints/${endpointId}`, body: { description: "x", secret: "whsec_mine" }, status: 422, code: "validation_failed", field: "secret" },
  { name: "PATCH an endpoint with only an unknown field", method: "PATCH", path: () => `/endpoints/${endpointId}`, body: { colour: "blue" }, status: 422, code: "validation_failed", field: "colour" },
  { name: "a route with an id", path: "/routes", body: () => ({ endpointId, eventType: "strict.x", id: "rt_00000000000000000000000000000000" }), status: 422, code: "validation_failed", field: "id" },
  { name: "a secret rotation with the secret", path: () => `/endpoints/${endpointId}/secret/rotate`, body: { secret: "whsec_mine" }, status: 422, code: "validation_failed", field: "secret" },
  { name: "a __proto__ body field", path: "/endpoints", body: '{"url":"https://a.example","__proto__":{"enabled":false}}', status: 422, code: "validation_failed", field: "__proto__" },
  { name: "a constructor body field", path: "/events", body: event({ constructor: "x" }), status: 422, code: "validation_failed", field: "constructor" },

  // Unknown ids.
  { name: "PATCH an unknown endpoint", method: "PATCH", path: "/endpoints/ep_00000000000000000000000000000000", body: { description: "x" }, status: 404, code: "not_found" },
  { name: "DELETE a junk endpoint id", method: "DELETE", path: "/endpoints/'; drop table endpoints; --", status: 404, code: "not_found" },
  { name: "DELETE an unknown route", method: "DELETE", path: "/routes/rt_00000000000000000000000000000000", status: 404, code: "not_found" },
  { name: "route to an unknown endpoint", path: "/routes", body: { endpointId: "ep_00000000000000000000000000000000", eventType: "a" }, status: 422, code: "validation_failed", field: "endpointId" },
  { name: "retry an unknown job", path: "/jobs/job_00000000000000000000000000000000/retry", status: 404, code: "not_found" },
  { name: "rotate an unknown endpoint's secret", path: "/endpoints/ep_00000000000000000000000000000000/secret/rotate", status: 404, code: "not_found" },
  { name: "an unknown path", method: "GET", path: "/nothing/here", status: 404, code: "not_found" },
  { name: "a known path with another method", method: "PUT", path: "/events", body: event(), status: 404, code: "not_found" },

  // Query strings are strict: a parameter the route does not declare is refused, never ignored.
  { name: "GET /events with the old ?type= filter", method: "GET", path: "/events?type=order.*", status: 422, code: "validation_failed", field: "type" },
  { name: "GET /jobs with a misspelt filter", method: "GET", path: "/jobs?evenType=order.*", status: 422, code: "validation_failed", field: "evenType" },
  { name: "GET /endpoints/:id/jobs with an unknown parameter", method: "GET", path: () => `/endpoints/${endpointId}/jobs?state=failed`, status: 422, code: "validation_failed", field: "state" },
  { name: "GET /endpoints/:id/attempts with an unknown parameter", method: "GET", path: () => `/endpoints/${endpointId}/attempts?outcome=failed`, status: 422, code: "validation_failed", field: "outcome" },
  { name: "GET /routes with an unknown parameter", method: "GET", path: "/routes?eventType=a", status: 422, code: "validation_failed", field: "eventType" },
  { name: "GET /endpoints with an unknown parameter next to valid ones", method: "GET", path: "/endpoints?limit=5&offset=10", status: 422, code: "validation_failed", field: "offset" },
  { name: "a parameter on a route that takes none", method: "GET", path: () => `/endpoints/${endpointId}?expand=routes`, status: 422, code: "validation_failed", field: "expand" },
  { name: "an unknown parameter on a valid event", path: "/events?idempotencyKey=k-1", body: event(), status: 422, code: "validation_failed", field: "idempotencyKey" },
  { name: "an unknown parameter on a valid batch", path: "/events/batch?atomic=false", body: { events: [event()] }, status: 422, code: "validation_failed", field: "atomic" },
  { name: "an unknown parameter on a valid endpoint", path: "/endpoints?dryRun=true", body: { url: "https://a.example" }, status: 422, code: "validation_failed", field: "dryRun" },
  { name: "an unknown parameter on a valid PATCH", method: "PATCH", path: () => `/endpoints/${endpointId}?enabled=false`, body: { description: "changed" }, status: 422, code: "validation_failed", field: "enabled" },
  { name: "an unknown parameter on a DELETE", method: "DELETE", path: () => `/routes/${routeId}?force=true`, status: 422, code: "validation_failed", field: "force" },
  { name: "an unknown parameter on a secret rotation", path: () => `/endpoints/${endpointId}/secret/rotate?keepOld=true`, status: 422, code: "validation_failed", field: "keepOld" },

  // Content types a browser may send cross-site without a CORS preflight, or none: refused before
  // the body is read, however valid the JSON inside.
  ...(
    [
      ["text/plain", "text/plain"],
      ["text/plain with a charset", "text/plain;charset=UTF-8"],
      ["form-urlencoded", "application/x-www-form-urlencoded"],
      ["multipart", "multipart/form-data; boundary=x"],
      ["a lookalike JSON type", "application/jsonp"],
      ["text/json", "text/json"],
    ] as const
  ).flatMap(([label, type]): Case[] => [
    { name: `event sent as ${label}`, path: "/events", body: JSON.stringify(event()), headers: { "content-type": type }, status: 415, code: "unsupported_media_type" },
    { name: `endpoint sent as ${label}`, path: "/endpoints", body: JSON.stringify({ url: "https://a.example" }), headers: { "content-type": type }, status: 415, code: "unsupported_media_type" },
  ]),
  { name: "batch sent as text/plain", path: "/events/batch", body: JSON.stringify({ events: [event()] }), headers: { "content-type": "text/plain" }, status: 415, code: "unsupported_media_type" },
  { name: "route sent as form-urlencoded", path: "/routes", body: () => JSON.stringify({ endpointId, eventType: "form.x" }), headers: { "content-type": "application/x-www-form-urlencoded" }, status: 415, code: "unsupported_media_type" },
  { name: "PATCH sent as text/plain", method: "PATCH", path: () => `/endpoints/${endpointId}`, body: JSON.stringify({ enabled: false }), headers: { "content-type": "text/plain" }, status: 415, code: "unsupported_media_type" },
  { name: "an oversized body sent as text/plain is 415, not read", path: "/events", body: event({ data: { s: bigString(MAX_PAYLOAD_BYTES) } }), headers: { "content-type": "text/plain" }, status: 415, code: "unsupported_media_type" },

  // since/until that parse as ISO 8601 but that Postgres cannot hold, on every list with a time range.
  ...(
    [
      ["/events", () => "/events"],
      ["/jobs", () => "/jobs"],
      ["/endpoints/:id/jobs", () => `/endpoints/${endpointId}/jobs`],
      ["/endpoints/:id/attempts", () => `/endpoints/${endpointId}/attempts`],
    ] as const
  ).flatMap(([route, list]) =>
    (
      [
        ["year 0000", "0000-01-01T00:00:00Z"],
        ["year 0000 once the offset is applied", "0001-01-01T00:00:00+05:00"],
        ["year +10000", "+010000-01-01T00:00:00Z"],
        ["year 10000", "10000-01-01T00:00:00Z"],
        ["an offset pushing past 9999", "9999-12-31T23:59:59-05:00"],
      ] as const
    ).flatMap(([label, time]) =>
      (["since", "until"] as const).map(
        (field): Case => ({
          name: `GET ${route} with ${field} in ${label}`,
          method: "GET",
          path: () => `${list()}?${field}=${encodeURIComponent(time)}`,
          status: 422,
          code: "validation_failed",
          field,
        }),
      ),
    ),
  ),
];

describe("bad input", () => {
  for (const c of cases) {
    test(c.name, async () => {
      const before = await api.fingerprint();
      const path = typeof c.path === "function" ? c.path() : c.path;
      const body = typeof c.body === "function" ? c.body() : c.body;
      const res = await api.request(c.method ?? "POST", path, { body, headers: c.headers });
      expect({ status: res.status, code: res.body?.code }).toEqual({ status: c.status, code: c.code });
      expect(typeof res.body.detail).toBe("string");
      if (c.field !== undefined) {
        expect(res.body.errors.map((e: { field: string }) => e.field)).toContain(c.field);
        expect(res.body.detail.startsWith(`${c.field}: `)).toBe(true);
      }
      expect(await api.fingerprint()).toBe(before);
    });
  }
});

describe("query strings are strict", () => {
  const fields = (res: { body: { errors: { field: string }[] } }) => res.body.errors.map((e) => e.field);

  test("each unknown parameter is named as one, next to problems with known ones", async () => {
    const res = await api.request("GET", "/jobs?limit=0&foo=1&bar=2");
    expect(res.status).toBe(422);
    expect(res.body.errors).toEqual([
      { field: "limit", message: expect.any(String) },
      { field: "foo", message: "unknown query parameter" },
      { field: "bar", message: "unknown query parameter" },
    ]);
  });

  test("a parameter given twice is refused, not resolved by picking one", async () => {
    for (const path of ["/events?eventType=order.*&eventType=invoice.*", "/jobs?limit=5&limit=6"]) {
      const res = await api.request("GET", path);
      expect(res.status).toBe(422);
      expect(res.body.errors).toEqual([{ field: expect.stringMatching(/^(eventType|limit)$/), message: "query parameter given more than once" }]);
    }
  });

  test("names are compared decoded and literally: prototype keys are unknown parameters like any other", async () => {
    for (const [query, field] of [["__proto__=1", "__proto__"], ["constructor=x", "constructor"], ["a%20b=1", "a b"]] as const) {
      const res = await api.request("GET", `/events?${query}`);
      expect({ query, status: res.status, fields: fields(res) }).toEqual({ query, status: 422, fields: [field] });
    }
    expect((await api.request("GET", "/events?event%54ype=order.*")).status).toBe(200); // decodes to eventType
  });

  test("public routes refuse unknown parameters too; declared ones alone are accepted", async () => {
    expect((await api.request("GET", "/health?verbose=1")).status).toBe(422);
    expect((await api.request("GET", "/health")).status).toBe(200);
    const listed = await api.request("GET", "/events?eventType=order.*&limit=5&since=2020-01-01T00:00:00Z&until=2999-01-01T00:00:00Z");
    expect(listed.status).toBe(200);
  });
});

describe("bodies are strict", () => {
  test("each unknown field is named in full, next to problems with known ones", async () => {
    const before = await api.fingerprint();
    const res = await api.request("POST", "/events/batch", {
      body: { events: [event({ type: "bad type", foo: 1, bar: 2 }), event(), event({ id: "x" })], dryRun: true },
    });
    expect(res.status).toBe(422);
    expect(res.body.errors).toEqual(
      expect.arrayContaining([
        { field: "events.0.type", message: expect.any(String) },
        { field: "events.0.foo", message: "unknown field" },
        { field: "events.0.bar", message: "unknown field" },
        { field: "events.2.id", message: "unknown field" },
        { field: "dryRun", message: "unknown field" },
      ]),
    );
    expect(res.body.errors).toHaveLength(5);
    expect(await api.fingerprint()).toBe(before);
  });

  test("free-form values keep any keys: event data, endpoint headers and metadata", async () => {
    const data = { id: "mine", secret: "s", nested: { foo: { bar: [{ baz: 1, type: "x" }] } } };
    const one = await api.request("POST", "/events", { body: event({ type: "strict.data", data }) });
    expect(one.status).toBe(202);
    expect((await api.request("GET", `/events/${one.body.id}`)).body.data).toEqual(data);
    const batch = await api.request("POST", "/events/batch", { body: { events: [event({ data }), event({ data: [{ any: { keys: true } }] })] } });
    expect(batch.status).toBe(202);

    const headers = { "x-anything": "1", "x-id": "2", secret: "3" };
    const metadata = { id: "a", secret: "b", "any name": "c" };
    const made = await api.request("POST", "/endpoints", { body: { url: hookUrl(), headers, metadata } });
    expect(made.status).toBe(201);
    expect(made.body.metadata).toEqual(metadata);
    expect(Object.keys(made.body.headers).sort()).toEqual(Object.keys(headers).sort());
    const patched = await api.request("PATCH", `/endpoints/${made.body.id}`, { body: { metadata: { colour: "blue" }, headers: { "x-other": "1" } } });
    expect(patched.status).toBe(200);
    expect(patched.body.metadata).toEqual({ colour: "blue" });
  });
});

describe("accepted despite appearances", () => {
  test("application/json with parameters, in any case, and +json types are accepted", async () => {
    for (const type of ["application/json; charset=utf-8", "Application/JSON;Charset=UTF-8", " application/json ", "application/merge-patch+json"]) {
      const before = await api.counts();
      const res = await api.request("POST", "/events", { body: event({ type: "typed.json" }), headers: { "content-type": type } });
      expect({ type, status: res.status }).toEqual({ type, status: 202 });
      const after = await api.counts();
      expect(after.events).toBe(before.events + 1);
      expect(after.jobs).toBe(before.jobs + 1);
    }
  });

  test("a body without a content-type is refused, before anything is written", async () => {
    const before = await api.fingerprint();
    // A string body would get text/plain from Request itself; bytes get no content-type at all.
    const request = new Request("http://localhost/events", {
      method: "POST",
      headers: { authorization: `Bearer ${api.appKey}` },
      body: new TextEncoder().encode(JSON.stringify(event())),
    });
    expect(request.headers.get("content-type")).toBeNull();
    const res = await api.app.handle(request);
    expect(res.status).toBe(415);
    expect(((await res.json()) as { code: string }).code).toBe("unsupported_media_type");
    expect(await api.fingerprint()).toBe(before);
  });

  test("the time range accepts its extremes", async () => {
    const res = await api.request("GET", `/events?since=${encodeURIComponent("0001-01-01T00:00:00Z")}&until=${encodeURIComponent("9999-12-31T23:59:59.999Z")}`);
    expect(res.status).toBe(200);
    expect((await api.request("GET", `/jobs?since=${encodeURIComponent("9999-12-31T18:59:59-05:00")}`)).status).toBe(200);
  });

  test("a body of exactly MAX_PAYLOAD_BYTES is accepted", async () => {
    const skeleton = JSON.stringify(event({ data: { s: "" } }));
    const body = JSON.stringify(event({ data: { s: bigString(MAX_PAYLOAD_BYTES - skeleton.length) } }));
    expect(body.length).toBe(MAX_PAYLOAD_BYTES);
    expect((await api.request("POST", "/events", { body })).status).toBe(202);
  });

  test("a streamed body without content-length is cut off at the limit", async () => {
    const before = await api.fingerprint();
    const chunk = new TextEncoder().encode(bigString(1024));
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent++ < 64) controller.enqueue(chunk);
        else controller.close();
      },
    });
    const res = await api.app.handle(
      new Request("http://localhost/events", {
        method: "POST",
        body: stream,
        headers: { "content-type": "application/json", authorization: `Bearer ${api.appKey}` },
      }),
    );
    expect(res.status).toBe(413);
    expect(((await res.json()) as { code: string }).code).toBe("payload_too_large");
    expect(sent).toBeLessThan(64); // the reader stopped early rather than buffering everything
    expect(await api.fingerprint()).toBe(before);
  });

  test("a \\u0000 written as an escaped backslash is just text, and stored", async () => {
    const res = await api.request("POST", "/events", { body: '{"type":"a","data":{"path":"C:\\\\u0000"}}' });
    expect(res.status).toBe(202);
    expect((await api.request("GET", `/events/${res.body.id}`)).body.data).toEqual({ path: "C:\\u0000" });
  });

  test("well-formed surrogate pairs (emoji) are stored", async () => {
    const res = await api.request("POST", "/events", { body: '{"type":"a","data":{"e":"\\ud83d\\ude00"}}' });
    expect(res.status).toBe(202);
    expect((await api.request("GET", `/events/${res.body.id}`)).body.data).toEqual({ e: "😀" });
  });
});

describe("found by the abuse suite", () => {
  test("a number past a double's range is kept as written in an event's data, where it is stored as text", async () => {
    // JSON.parse reads these as ±Infinity or rounds them; the data is stored as the producer wrote
    // it (e2e/payload-fidelity.test.ts follows it to the receiver), so they are no longer refused.
    for (const data of ['{"n":1e400}', '{"a":[1,-1E+999]}', `{"n":${"9".repeat(400)}}`, '{"n":1e300,"m":1e-005}']) {
      const res = await api.request("POST", "/events", { body: `{"type":"a","data":${data}}` });
      expect([data, res.status]).toEqual([data, 202]);
      const [row] = await api.sql<{ p: string }[]>`select payload::text as p from events where id = ${res.body.id}`;
      expect(row!.p).toBe(data);
    }
  });

  test("a number Postgres cannot store, or one that elsewhere would be re-serialised as null, is a 422 naming it", async () => {
    const before = await api.fingerprint();
    // Past numeric's range (jsonb, with which replays compare payloads), also in a member a
    // duplicate key shadows: JSON.parse drops that one, but the stored text holds it.
    for (const [body, field] of [
      ['{"type":"a","data":{"n":1e131072}}', "data.n"],
      ['{"type":"a","data":{"a":[1,1e-16384]}}', "data.a.1"],
      ['{"type":"a","data":{"n":1e999999999999,"n":1}}', "data.n"],
      ['{"events":[{"type":"a","data":{}},{"type":"a","data":{"x":{"y":-2e200000}}}]}', "events.1.data.x.y"],
    ] as const) {
      const path = body.startsWith('{"events"') ? "/events/batch" : "/events";
      const res = await api.request("POST", path, { body });
      expect([body, res.status, res.body.errors?.[0]]).toEqual([body, 422, { field, message: expect.stringContaining("Postgres") }]);
    }
    // Where the parsed value is re-serialised (not an event's data), ±Infinity would become null:
    // refused by the reader, including 250 digits with a two-digit exponent (10^349).
    for (const number of ["1e400", `${"9".repeat(250)}e99`]) {
      const res = await api.request("POST", "/endpoints", { body: `{"url":"${hookUrl()}","timeoutMs":${number}}` });
      expect([number, res.status, res.body.errors?.[0]]).toEqual([number, 422, { field: "timeoutMs", message: expect.stringContaining("double") }]);
    }
    expect(await api.fingerprint()).toBe(before);
  });

  test("a path id that does not decode, or holds a NUL, is a 404, never a 500", async () => {
    for (const path of ["/endpoints/%zz", "/endpoints/%ff%fe", "/jobs/%ED%A0%80", "/endpoints/ep_%00/jobs"]) {
      const res = await api.request("GET", path);
      expect([path, res.status]).toEqual([path, 404]);
    }
    for (const path of ["/applications/%ff%fe", "/applications/a%00b", "/applications/a%00b/api-keys"]) {
      const res = await api.request("GET", path, { key: TEST_ADMIN_KEY });
      expect([path, res.status]).toEqual([path, 404]);
    }
  });
});
