import { createEndpoint, type Context } from "../context.ts";
import type { Expect, Req } from "../probe.ts";

/**
 * Hostile values outside bodies' framing: endpoint headers and URLs that would inject lines into
 * the deliveries (or forge their signature headers), query strings (time ranges Postgres cannot
 * hold, junk limits and cursors, repeated and unknown parameters) and paths (junk ids, invalid
 * percent-encoding, NUL, traversal).
 */
export async function headerCases(ctx: Context): Promise<void> {
  const GROUP = "header injection";
  const { suite, a, receivers } = ctx;
  const url = `${receivers.url}/ok/headers`;
  const endpoint = await createEndpoint(ctx, a.key, { url });
  const invalid = (field: string): Expect => ({ status: 422, code: "validation_failed", field });
  const headerCase = (name: string, headers: Record<string, string>, field: string): [string, Req, Expect] => [
    name,
    { method: "POST", path: "/endpoints", key: a.key, body: { url, headers } },
    invalid(field),
  ];
  const cases: [string, Req, Expect][] = [
    headerCase("a header value with CRLF and a second header", { "x-a": "v\r\nx-injected: 1" }, "headers.x-a"),
    headerCase("a header value with a bare LF", { "x-a": "v\nx-injected: 1" }, "headers.x-a"),
    headerCase("a header value with a bare CR", { "x-a": "v\rx-injected: 1" }, "headers.x-a"),
    headerCase("a header value with CRLF CRLF and a body", { "x-a": "v\r\n\r\nPOST /ssrf HTTP/1.1" }, "headers.x-a"),
    headerCase("a header value with NUL", { "x-a": "v\u0000w" }, "headers.x-a"),
    headerCase("a header name with CRLF", { "x-a\r\nx-injected": "1" }, "headers.x-a\r\nx-injected"),
    headerCase("a header name with a colon", { "x-a: 1\r\nx-b": "2" }, "headers.x-a: 1\r\nx-b"),
    headerCase("a header name with a space", { "x a": "1" }, "headers.x a"),
    headerCase("an empty header name", { "": "1" }, "headers."),
    headerCase("a header value with non-ASCII", { "x-a": "é" }, "headers.x-a"),
    headerCase("a header value with U+2028", { "x-a": "a\u2028b" }, "headers.x-a"),
    headerCase("a header value of 4097 characters", { "x-a": "v".repeat(4097) }, "headers.x-a"),
    headerCase("a forged webhook-signature", { "webhook-signature": "v1,forged" }, "headers.webhook-signature"),
    headerCase("a forged Webhook-Id", { "Webhook-Id": "msg_forged" }, "headers.Webhook-Id"),
    headerCase("a forged webhook-timestamp", { "webhook-timestamp": "0" }, "headers.webhook-timestamp"),
    headerCase("a Host header (virtual-host SSRF)", { host: "127.0.0.2" }, "headers.host"),
    headerCase("a Content-Length header (smuggling)", { "content-length": "0" }, "headers.content-length"),
    headerCase("a Transfer-Encoding header (smuggling)", { "transfer-encoding": "chunked" }, "headers.transfer-encoding"),
    headerCase("a Connection header", { connection: "keep-alive, x-a" }, "headers.connection"),
    headerCase("a Content-Type header", { "content-type": "text/html" }, "headers.content-type"),
    headerCase("a duplicate header in two cases", { "X-A": "1", "x-a": "2" }, "headers.x-a"),
    ["51 headers", { method: "POST", path: "/endpoints", key: a.key, body: { url, headers: Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`x-h${i}`, "v"])) } }, invalid("headers")],
    ["a PATCH adding a header with CRLF", { method: "PATCH", path: `/endpoints/${endpoint}`, key: a.key, body: { headers: { "x-a": "v\r\nx-injected: 1" } } }, invalid("headers.x-a")],
    ["a PATCH adding a forged webhook-signature", { method: "PATCH", path: `/endpoints/${endpoint}`, key: a.key, body: { headers: { "webhook-signature": "v1,forged" } } }, invalid("headers.webhook-signature")],
    ["a URL with CRLF and a header", { method: "POST", path: "/endpoints", key: a.key, body: { url: `${url}\r\nx-injected: 1` } }, invalid("url")],
    ["a URL with a space and an HTTP version", { method: "POST", path: "/endpoints", key: a.key, body: { url: `${url} HTTP/1.1\r\nHost: 127.0.0.2` } }, invalid("url")],
    ["a URL with a tab", { method: "POST", path: "/endpoints", key: a.key, body: { url: `${url}\tx` } }, invalid("url")],
    ["a javascript: URL", { method: "POST", path: "/endpoints", key: a.key, body: { url: "javascript:alert(1)" } }, invalid("url")],
    ["a data: URL", { method: "POST", path: "/endpoints", key: a.key, body: { url: "data:text/plain,hello" } }, invalid("url")],
    ["a URL of 2049 characters", { method: "POST", path: "/endpoints", key: a.key, body: { url: `${url}?${"q".repeat(2049 - url.length - 1)}` } }, invalid("url")],
  ];
  for (const [name, req, expect] of cases) await suite.refuse(GROUP, name, req, expect);
  const after = await suite.send({ method: "GET", path: `/endpoints/${endpoint}`, key: a.key });
  suite.control(GROUP, "the endpoint refused every PATCH above has no headers", JSON.stringify(after.json?.headers) === "{}", `headers ${JSON.stringify(after.json?.headers)}`);
  const forged = await suite.send({ method: "POST", path: "/endpoints", key: a.key, body: { url, headers: { "x-signature-note": "plain" } } });
  suite.control(GROUP, "an ordinary custom header is accepted", forged.status === 201, `${forged.status} ${forged.code ?? ""}`);
  suite.note(
    GROUP,
    "forged signatures: not tested. Evently verifies no inbound signatures yet (no route accepts signed webhooks from anyone); " +
      "the cases above check only that an endpoint cannot forge the webhook-* headers of its own deliveries.",
  );
}

export async function queryAndPathCases(ctx: Context): Promise<void> {
  const GROUP = "query and path";
  const { suite, a, adminKey, receivers } = ctx;
  const endpoint = await createEndpoint(ctx, a.key, { url: `${receivers.url}/ok/query` });
  const get = (path: string, key: string | null = a.key): Req => ({ method: "GET", path, key });
  const invalid = (field: string): Expect => ({ status: 422, code: "validation_failed", field });
  const notFound: Expect = { status: 404, code: "not_found" };
  const lists = ["/events", "/jobs", `/endpoints/${endpoint}/jobs`, `/endpoints/${endpoint}/attempts`];
  const times: [string, string][] = [
    ["year 0000", "0000-01-01T00:00:00Z"],
    ["year 0000 once the offset applies", "0001-01-01T00:00:00+05:00"],
    ["year +10000", "+010000-01-01T00:00:00Z"],
    ["year -000001", "-000001-01-01T00:00:00Z"],
    ["9999-12-31 past midnight once the offset applies", "9999-12-31T23:59:59-05:00"],
    ["year 275760 (past JavaScript's Date)", "+275760-09-13T00:00:01Z"],
  ];
  const cases: [string, Req, Expect][] = [
    ...lists.flatMap((list) =>
      times.flatMap(([label, time]) =>
        (["since", "until"] as const).map((field): [string, Req, Expect] => [
          `${field} in ${label} on ${list.replace(endpoint, ":id")}`,
          get(`${list}?${field}=${encodeURIComponent(time)}`),
          invalid(field),
        ]),
      ),
    ),
    ["since that is not a time", get("/events?since=yesterday"), invalid("since")],
    ["since with SQL in it", get(`/events?since=${encodeURIComponent("2020-01-01T00:00:00Z' or '1'='1")}`), invalid("since")],
    ["limit 0", get("/events?limit=0"), invalid("limit")],
    ["limit -1", get("/events?limit=-1"), invalid("limit")],
    ["limit 1e9", get("/events?limit=1e9"), invalid("limit")],
    ["limit 1e400", get("/events?limit=1e400"), invalid("limit")],
    ["limit NaN", get("/events?limit=NaN"), invalid("limit")],
    ["limit Infinity", get("/events?limit=Infinity"), invalid("limit")],
    ["limit given twice", get("/events?limit=1&limit=250"), invalid("limit")],
    ["a junk cursor", get("/events?cursor=' or 1=1 --"), invalid("cursor")],
    ["a cursor of another kind", get(`/events?cursor=${endpoint}`), invalid("cursor")],
    ["a NUL in eventType", get("/events?eventType=a%00b"), invalid("eventType")],
    ["a NUL in a cursor", get("/jobs?cursor=job_%00"), invalid("cursor")],
    ["an eventType of 10,000 characters", get(`/events?eventType=${"a".repeat(10_000)}`), invalid("eventType")],
    ["an unknown parameter", get("/events?admin=true"), invalid("admin")],
    ["a __proto__ parameter", get("/events?__proto__[limit]=1"), { status: 422, code: "validation_failed" }],
    ["a constructor parameter", get("/events?constructor=x"), invalid("constructor")],
    ["an array-style parameter", get("/events?limit[]=5"), { status: 422, code: "validation_failed" }],
    ["a status filter that is not a status", get("/jobs?status=delivered' or 'x'='x"), invalid("status")],
    ["a malformed endpointId filter", get("/jobs?endpointId=../../applications"), invalid("endpointId")],
    ["invalid percent-encoding in a query", get("/events?eventType=%zz"), { status: [400, 422] }],
    ["percent-encoded invalid UTF-8 in a query", get("/events?eventType=%ff%fe"), { status: [400, 422] }],
    // Paths.
    ["a junk endpoint id", get("/endpoints/' or 1=1 --"), notFound],
    ["an endpoint id of another kind", get(`/endpoints/${endpoint.replace(/^ep_/, "evt_")}`), notFound],
    ["an endpoint id with NUL", get("/endpoints/ep_%00"), notFound],
    ["an endpoint id with invalid percent-encoding", get("/endpoints/%zz"), { status: [400, 404] }],
    ["an endpoint id with percent-encoded invalid UTF-8", get("/endpoints/%ff%fe"), { status: [400, 404] }],
    ["an endpoint id of 10,000 characters", get(`/endpoints/${"e".repeat(10_000)}`), { status: [404, 414, 431] }],
    ["an encoded traversal to /applications", get("/endpoints/..%2f..%2fapplications"), notFound],
    ["a job id with SQL", get("/jobs/job_1;select pg_sleep(5)"), notFound],
    ["an event id in upper case", get("/events/EVT_00000000000000000000000000000000"), notFound],
    ["an application uid with NUL", get("/applications/a%00b", adminKey), notFound],
    ["an application uid with percent-encoded invalid UTF-8", get("/applications/%ff%fe", adminKey), { status: [400, 404] }],
    ["an application uid with a lone surrogate (CESU-8)", get("/applications/%ED%A0%80", adminKey), { status: [400, 404] }],
    ["an application uid of 10,000 characters", get(`/applications/${"u".repeat(10_000)}`, adminKey), { status: [404, 414, 431] }],
    ["revoking a key under a NUL application", { method: "DELETE", path: "/applications/a%00b/api-keys/key_00000000000000000000000000000000", key: adminKey }, notFound],
    ["api keys of a NUL application", get("/applications/a%00b/api-keys", adminKey), notFound],
    ["PUT on /events", { method: "PUT", path: "/events", key: a.key, body: {} }, { status: [404, 405] }],
  ];
  for (const [name, req, expect] of cases) await suite.refuse(GROUP, name, req, expect);
  const ok = await suite.send(get(`/events?since=${encodeURIComponent("0001-01-01T00:00:00Z")}&until=${encodeURIComponent("9999-12-31T23:59:59Z")}`));
  suite.control(GROUP, "the time range's extremes (0001-01-01, 9999-12-31) are accepted", ok.status === 200, `${ok.status} ${ok.code ?? ""}`);
}
