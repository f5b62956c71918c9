import { batchBodyLimit } from "../../../services/api/modules/events/index.ts";
import { rawMember } from "../../../services/core/json/raw-members.ts";
import { createEndpoint, type Context } from "../context.ts";
import type { Expect, Req } from "../probe.ts";
import { rawExchange } from "../raw.ts";

const GROUP = "bodies";
/** No endpoint subscribes to it: an event wrongly accepted leaves a row and nothing else. */
const TYPE = "abuse.body";

const enc = new TextEncoder();
const bytes = (...parts: (string | number[])[]) =>
  Buffer.concat(parts.map((p) => (typeof p === "string" ? Buffer.from(enc.encode(p)) : Buffer.from(p))));
/** An event body whose `data.s` string holds `raw` bytes as they are. */
const eventWithRawBytes = (raw: number[]) => bytes(`{"type":"${TYPE}","data":{"s":"a`, raw, `b"}}`);
const ev = (over: Record<string, unknown> = {}) => ({ type: TYPE, data: { a: 1 }, ...over });
/** A valid event body of exactly `size` bytes. */
function eventOfBytes(size: number): string {
  const empty = JSON.stringify({ type: TYPE, data: { s: "" } });
  return empty.replace('"s":""', `"s":"${"x".repeat(size - Buffer.byteLength(empty))}"`);
}

/**
 * Hostile bodies: too large (declared, streamed, or declared and never sent), nested past any
 * sensible depth, invalid UTF-8, what jsonb cannot hold (NUL, lone surrogates), prototype keys and
 * other undeclared fields, numbers a double cannot hold (where the value is re-serialised) or that
 * Postgres cannot store (in an event's data, kept as written), the wrong content types, endpoint
 * headers that would smuggle in others.
 */
export async function bodyCases(ctx: Context): Promise<void> {
  const { suite, a, config, receivers } = ctx;
  const max = config.http.MAX_PAYLOAD_BYTES;
  const batchLimit = batchBodyLimit(config.http);
  const endpoint = await createEndpoint(ctx, a.key, { url: `${receivers.url}/ok/bodies` });
  const post = (path: string, body: unknown, extra: Partial<Req> = {}): Req => ({ method: "POST", path, key: a.key, body, ...extra });
  const patch = (body: unknown, extra: Partial<Req> = {}): Req => ({ method: "PATCH", path: `/endpoints/${endpoint}`, key: a.key, body, ...extra });
  const invalid = (field: string): Expect => ({ status: 422, code: "validation_failed", field });
  const malformed: Expect = { status: 400, code: "malformed_json" };
  const tooLarge: Expect = { status: 413, code: "payload_too_large" };
  const unsupported: Expect = { status: 415, code: "unsupported_media_type" };

  const valid = await suite.send(post("/events", ev()));
  suite.control(GROUP, "a valid event is accepted (the refusals below are not everybody's)", valid.status === 202, `${valid.status} ${valid.text.slice(0, 200)}`);

  const deepArrays = (levels: number) => `{"type":"${TYPE}","data":{"d":${"[".repeat(levels)}${"]".repeat(levels)}}}`;
  const deepObjects = (levels: number) => `{"type":"${TYPE}","data":${'{"a":'.repeat(levels)}1${"}".repeat(levels)}}`;
  const streamOf = (chunk: Uint8Array, count: number) =>
    new ReadableStream<Uint8Array>({
      pull(controller) {
        if (count-- > 0) controller.enqueue(chunk);
        else controller.close();
      },
    });

  const cases: [string, Req, Expect][] = [
    // Sizes.
    [`an event of MAX_PAYLOAD_BYTES + 1 (${max + 1} bytes, declared)`, post("/events", eventOfBytes(max + 1), { bodyNote: `${max + 1} bytes of valid JSON` }), tooLarge],
    [`an event streamed without a length, ${(4 * max) / 1024} KiB`, post("/events", streamOf(enc.encode("x".repeat(64 * 1024)), (4 * max) / (64 * 1024)), { bodyNote: `${4 * max} bytes, chunked` }), tooLarge],
    [`an endpoint of MAX_PAYLOAD_BYTES + 1`, post("/endpoints", { url: `${receivers.url}/ok/x`, description: "x".repeat(max) }), tooLarge],
    [`a batch of MAX_BATCH_EVENTS + 1 events`, post("/events/batch", { events: Array.from({ length: config.http.MAX_BATCH_EVENTS + 1 }, () => ev()) }, { bodyNote: `${config.http.MAX_BATCH_EVENTS + 1} small events` }), invalid("events")],
    [`a batch item's data over MAX_PAYLOAD_BYTES`, post("/events/batch", { events: [ev(), ev({ data: { s: "x".repeat(max) } })] }, { bodyNote: `2 events, the second's data ${max + 8} bytes` }), invalid("events.1.data")],
    // Nesting.
    [`data nested 129 levels (one past the limit)`, post("/events", deepArrays(129)), invalid("body")],
    [`data nested 120,000 arrays deep`, post("/events", deepArrays(120_000), { bodyNote: `120,000 × "[" then "]" (240 KB)` }), { status: [400, 422] }],
    [`data nested 40,000 objects deep`, post("/events", deepObjects(40_000), { bodyNote: `40,000 × {"a": (200 KB)` }), { status: [400, 422] }],
    [`a batch nested 8,000,000 arrays deep`, post("/events/batch", `{"events":${"[".repeat(8_000_000)}${"]".repeat(8_000_000)}}`, { bodyNote: `8,000,000 × "[" then "]" (16 MB)` }), { status: [400, 413, 422] }],
    [`an unbalanced 200,000 "["`, post("/events", `{"type":"${TYPE}","data":${"[".repeat(200_000)}`, { bodyNote: `200,000 × "[" and no end` }), { status: [400, 422] }],
    // Invalid UTF-8.
    ["a 0xFF byte in a string", post("/events", eventWithRawBytes([0xff])), malformed],
    ["an overlong '/' (0xC0 0xAF)", post("/events", eventWithRawBytes([0xc0, 0xaf])), malformed],
    ["a UTF-8-encoded surrogate (0xED 0xA0 0x80)", post("/events", eventWithRawBytes([0xed, 0xa0, 0x80])), malformed],
    ["a truncated 3-byte sequence", post("/events", eventWithRawBytes([0xe2, 0x82])), malformed],
    ["a code point past U+10FFFF (0xF4 0x90 0x80 0x80)", post("/events", eventWithRawBytes([0xf4, 0x90, 0x80, 0x80])), malformed],
    ["a lone Latin-1 é (0xE9)", post("/events", eventWithRawBytes([0xe9])), malformed],
    ["invalid UTF-8 in an endpoint description", post("/endpoints", bytes(`{"url":"${receivers.url}/ok/x","description":"`, [0xff, 0xfe], `"}`)), malformed],
    ["a UTF-16 body declared as such", post("/events", Buffer.from(JSON.stringify(ev()), "utf16le"), { contentType: "application/json; charset=utf-16le" }), { status: [400, 415] }],
    // What jsonb and text columns cannot hold.
    ["\\u0000 in data", post("/events", `{"type":"${TYPE}","data":{"s":"a\\u0000b"}}`), invalid("data.s")],
    ["\\u0000 in a data key", post("/events", `{"type":"${TYPE}","data":{"a\\u0000":1}}`), invalid("data.a\\u0000")],
    ["\\u0000 in the type", post("/events", `{"type":"a\\u0000b","data":{}}`), { status: 422, code: "validation_failed" }],
    ["\\u0000 in an idempotency key", post("/events", `{"type":"${TYPE}","data":{},"idempotencyKey":"k\\u0000"}`), invalid("idempotencyKey")],
    ["\\u0000 in an endpoint description", post("/endpoints", `{"url":"${receivers.url}/ok/x","description":"\\u0000"}`), invalid("description")],
    ["\\u0000 in endpoint metadata", post("/endpoints", `{"url":"${receivers.url}/ok/x","metadata":{"k":"\\u0000"}}`), invalid("metadata.k")],
    ["\\u0000 in an application name", { method: "POST", path: "/applications", key: ctx.adminKey, body: `{"name":"a\\u0000b"}` }, invalid("name")],
    ["\\u0000 in an API key name", { method: "POST", path: `/applications/${a.id}/api-keys`, key: ctx.adminKey, body: `{"name":"a\\u0000b"}` }, invalid("name")],
    ["a lone surrogate in data", post("/events", `{"type":"${TYPE}","data":{"s":"\\ud800"}}`), invalid("data.s")],
    ["a lone low surrogate in a key", post("/events", `{"type":"${TYPE}","data":{"\\udc00":1}}`), { status: 422, code: "validation_failed" }],
    // Fields the operation does not declare: refused, named, never dropped.
    ["a __proto__ field on an event", post("/events", `{"type":"${TYPE}","data":{},"__proto__":{"type":"x"}}`), invalid("__proto__")],
    ["a __proto__ field on an endpoint", post("/endpoints", `{"url":"${receivers.url}/ok/x","__proto__":{"enabled":false}}`), invalid("__proto__")],
    ["a __proto__ field in a batch item", post("/events/batch", `{"events":[{"type":"${TYPE}","data":{},"__proto__":{}}]}`), invalid("events.0.__proto__")],
    ["a __proto__ field in a PATCH", patch(`{"__proto__":{"url":"http://127.0.0.2/"}}`), invalid("__proto__")],
    ["a __proto__ field on an application", { method: "POST", path: "/applications", key: ctx.adminKey, body: `{"name":"x","__proto__":{"rateLimitPerSecond":1}}` }, invalid("__proto__")],
    ["a constructor field on an event", post("/events", ev({ constructor: { prototype: { polluted: true } } })), invalid("constructor")],
    ["a prototype field on a route", post("/routes", { endpointId: endpoint, eventType: "x.y", prototype: {} }), invalid("prototype")],
    ["an event with its own id", post("/events", ev({ id: "evt_00000000000000000000000000000000" })), invalid("id")],
    ["an endpoint with its own secret", post("/endpoints", { url: `${receivers.url}/ok/x`, secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }), invalid("secret")],
    ["an endpoint with an app_id", post("/endpoints", { url: `${receivers.url}/ok/x`, appId: ctx.b.id }), invalid("appId")],
    ["an API key with its own key", { method: "POST", path: `/applications/${a.id}/api-keys`, key: ctx.adminKey, body: { name: "x", key: "evk_mine" } }, invalid("key")],
    ["a batch with a top-level unknown field", post("/events/batch", { events: [ev()], atomic: false }), invalid("atomic")],
    // Numbers.
    ["timeoutMs of 1e400", post("/endpoints", `{"url":"${receivers.url}/ok/x","timeoutMs":1e400}`), invalid("timeoutMs")],
    ["timeoutMs of -1e400", post("/endpoints", `{"url":"${receivers.url}/ok/x","timeoutMs":-1e400}`), invalid("timeoutMs")],
    ["rateLimitPerSecond of 2^64", post("/endpoints", `{"url":"${receivers.url}/ok/x","rateLimitPerSecond":18446744073709551616}`), invalid("rateLimitPerSecond")],
    ["graceSeconds of 1e308", post(`/endpoints/${endpoint}/secret/rotate`, `{"graceSeconds":1e308}`), invalid("graceSeconds")],
    ["graceSeconds of -0.5", post(`/endpoints/${endpoint}/secret/rotate`, `{"graceSeconds":-0.5}`), invalid("graceSeconds")],
    ["an application rate limit of 1e400", { method: "POST", path: "/applications", key: ctx.adminKey, body: `{"name":"x","rateLimitPerSecond":1e400}` }, invalid("rateLimitPerSecond")],
    // An event's data is stored as written (1e400 is kept: see the control below), up to what Postgres' numeric holds.
    ["data holding 1e131072 (past Postgres' numeric)", post("/events", `{"type":"${TYPE}","data":{"n":1e131072}}`), invalid("data.n")],
    ["a batch item's data holding -1e-16384 (past numeric's scale)", post("/events/batch", `{"events":[{"type":"${TYPE}","data":{"n":-1e-16384}}]}`), invalid("events.0.data.n")],
    ["data past numeric in a member a duplicate key shadows", post("/events", `{"type":"${TYPE}","data":{"n":1e999999,"n":1}}`), invalid("data.n")],
    // Shapes.
    ["an empty body", post("/events", ""), malformed],
    ["a body of whitespace", post("/events", " \n\t "), malformed],
    ["a body that is an array", post("/events", [ev()]), invalid("body")],
    ["a body that is null", post("/events", "null"), invalid("body")],
    ["a body that is a string", post("/events", '"hello"'), invalid("body")],
    ["data that is a number", post("/events", ev({ data: 5 })), invalid("data")],
    ["a type of 10,000 characters", post("/events", ev({ type: "a".repeat(10_000) })), invalid("type")],
    ["a type with CRLF", post("/events", ev({ type: "a\r\nb" })), invalid("type")],
    ["an Idempotency-Key header of 300 characters", post("/events", ev(), { headers: { "idempotency-key": "k".repeat(300) } }), invalid("Idempotency-Key")],
    ["an Idempotency-Key header that differs from the body's", post("/events", ev({ idempotencyKey: "one" }), { headers: { "idempotency-key": "two" } }), { status: 422, code: "validation_failed" }],
    // Content types: a web page can send these cross-site without a preflight.
    ["an event as text/plain", post("/events", JSON.stringify(ev()), { contentType: "text/plain" }), unsupported],
    ["an event as text/plain;charset=UTF-8", post("/events", JSON.stringify(ev()), { contentType: "text/plain;charset=UTF-8" }), unsupported],
    ["an event as a form", post("/events", "type=abuse.body&data=1", { contentType: "application/x-www-form-urlencoded" }), unsupported],
    ["an event as multipart", post("/events", `--x\r\nContent-Disposition: form-data; name="type"\r\n\r\n${TYPE}\r\n--x--\r\n`, { contentType: "multipart/form-data; boundary=x" }), unsupported],
    ["an event without a content type", post("/events", JSON.stringify(ev()), { contentType: null }), unsupported],
    ["an event as application/jsonp", post("/events", JSON.stringify(ev()), { contentType: "application/jsonp" }), unsupported],
    ["an event as text/json", post("/events", JSON.stringify(ev()), { contentType: "text/json" }), unsupported],
    ["an event as application/json-seq", post("/events", JSON.stringify(ev()), { contentType: "application/json-seq" }), unsupported],
    ["an endpoint as text/plain", post("/endpoints", JSON.stringify({ url: `${receivers.url}/ok/x` }), { contentType: "text/plain" }), unsupported],
    ["a batch as text/plain", post("/events/batch", JSON.stringify({ events: [ev()] }), { contentType: "text/plain" }), unsupported],
    ["a route as a form", post("/routes", JSON.stringify({ endpointId: endpoint, eventType: "x.y" }), { contentType: "application/x-www-form-urlencoded" }), unsupported],
    ["a PATCH as text/plain", patch(JSON.stringify({ enabled: false }), { contentType: "text/plain" }), unsupported],
    ["an application as text/plain", { method: "POST", path: "/applications", key: ctx.adminKey, body: JSON.stringify({ name: "x" }), contentType: "text/plain" }, unsupported],
    ["an oversized text/plain body, refused unread", post("/events", "x".repeat(max * 2), { contentType: "text/plain", bodyNote: `${max * 2} bytes of text/plain` }), unsupported],
  ];
  for (const [name, req, expect] of cases) await suite.refuse(GROUP, name, req, expect);

  // A declared length past the batch limit (never sent): refused before a byte is read.
  const declared = batchLimit + 1;
  const head = (length: number, path: string) =>
    `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${a.key}\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\nConnection: close\r\n\r\n`;
  const apiUrl = new URL(suite.apiUrl);
  const port = Number(apiUrl.port);
  for (const [name, path, length, expect] of [
    [`a batch declaring ${declared} bytes (the batch limit + 1), body never sent`, "/events/batch", declared, tooLarge],
    // Past what Bun's server takes at all: its own 413, before the route.
    ["a batch declaring 4 GiB, body never sent", "/events/batch", 4 * 1024 ** 3, { status: 413 }],
    ["an event declaring 2^53 bytes, body never sent", "/events", 2 ** 53, { status: [400, 413] }],
  ] as const) {
    const res = await rawExchange(apiUrl.hostname, port, head(length, path) + "{", 5000);
    suite.judge(GROUP, name, `POST ${path} Content-Length: ${length}, then 1 byte`, res, expect);
  }

  // Numbers a double cannot hold, in an event's data: stored and given back as the producer wrote them.
  const exact = `{"n":1e400,"big":18446744073709551617,"z":-0,"f":1.0}`;
  const kept = await suite.send(post("/events", `{"type":"${TYPE}","data":${exact}}`));
  const keptBack = kept.status === 202 ? await suite.send({ method: "GET", path: `/events/${kept.json.id}`, key: a.key }) : undefined;
  const keptData = keptBack && rawMember(keptBack.text, "data");
  suite.control(GROUP, "data holding 1e400, 2^64 + 1, -0 and 1.0 is stored and given back as written", keptData === exact, `${kept.status} ${kept.code ?? ""}; data given back ${keptData ?? "none"}`);

  // Controls: what the refusals above must not take with them.
  const proto = await suite.send(post("/events", `{"type":"${TYPE}","data":{"__proto__":{"polluted":true},"k":1}}`));
  const protoBack = proto.status === 202 ? await suite.send({ method: "GET", path: `/events/${proto.json.id}`, key: a.key }) : undefined;
  suite.control(GROUP, "a __proto__ key inside data is kept as sent (data is free-form), not dropped", /"data":\{"__proto__":\{"polluted":true\}/.test(protoBack?.text.replace(/\s/g, "") ?? ""), `${proto.status}; stored ${protoBack?.text.match(/"data":(\{.*?\}\})/)?.[1] ?? "nothing"}`);
  const atLimit = eventOfBytes(max);
  const limitRes = await suite.send(post("/events", atLimit, { bodyNote: `${Buffer.byteLength(atLimit)} bytes` }));
  suite.control(GROUP, `an event of exactly MAX_PAYLOAD_BYTES (${max}) is accepted`, limitRes.status === 202, `${Buffer.byteLength(atLimit)} bytes: ${limitRes.status} ${limitRes.code ?? ""}`);
}
