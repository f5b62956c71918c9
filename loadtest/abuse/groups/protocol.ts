import type { Context } from "../context.ts";
import type { Expect } from "../probe.ts";
import { rawExchange } from "../raw.ts";

const GROUP = "http framing";

/**
 * Requests fetch will not send, over a bare TCP connection: ambiguous framing (the stuff of request
 * smuggling), malformed header lines, NUL and invalid UTF-8 in header values that reach the
 * database (Idempotency-Key, Evently-Application), oversized headers and request lines. Each carries
 * a valid key, so a 2xx means the server acted on a request it should not have parsed.
 */
export async function protocolCases(ctx: Context): Promise<void> {
  const { suite, a, adminKey } = ctx;
  const { hostname, port } = new URL(suite.apiUrl);
  const body = JSON.stringify({ type: "abuse.framing", data: {} });
  const len = Buffer.byteLength(body);
  const auth = `Authorization: Bearer ${a.key}\r\n`;
  const post = (headers: string, payload = body) =>
    `POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\n${auth}Content-Type: application/json\r\n${headers}Connection: close\r\n\r\n${payload}`;
  /** A request with one header whose value is raw bytes (fetch refuses NUL and non-Latin-1 in headers). */
  const withHeader = (method: "GET" | "POST", key: string | null, name: string, value: number[], payload?: string) =>
    Buffer.concat([
      Buffer.from(`${method} ${payload === undefined ? "/endpoints" : "/events"} HTTP/1.1\r\nHost: 127.0.0.1\r\n`),
      Buffer.from(key === null ? "" : `Authorization: Bearer ${key}\r\n`),
      Buffer.from(payload === undefined ? "" : `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(payload)}\r\n`),
      Buffer.from(`${name}: `),
      Buffer.from(value),
      Buffer.from(`\r\nConnection: close\r\n\r\n${payload ?? ""}`),
    ]);
  const badRequest: Expect = { status: [400, 413, 422, 431] };
  const cases: [string, string | Buffer, Expect][] = [
    ["Content-Length and Transfer-Encoding both", post(`Content-Length: ${len}\r\nTransfer-Encoding: chunked\r\n`, `${len.toString(16)}\r\n${body}\r\n0\r\n\r\n`), { status: 400 }],
    ["two different Content-Lengths", post(`Content-Length: ${len}\r\nContent-Length: ${len + 5}\r\n`), { status: 400 }],
    ["a negative Content-Length", post("Content-Length: -1\r\n"), { status: 400 }],
    ["a Content-Length that is not a number", post("Content-Length: 12abc\r\n"), { status: 400 }],
    ["a Content-Length with a plus sign", post(`Content-Length: +${len}\r\n`), { status: 400 }],
    ["Transfer-Encoding: chunked with a junk chunk size", post("Transfer-Encoding: chunked\r\n", `zz\r\n${body}\r\n0\r\n\r\n`), { status: 400 }],
    ["Transfer-Encoding: chunked, gzip", post("Transfer-Encoding: chunked, gzip\r\n", `${len.toString(16)}\r\n${body}\r\n0\r\n\r\n`), { status: [400, 415, 501] }],
    ["Transfer-Encoding with a space before the colon", post(`Content-Length: ${len}\r\nTransfer-Encoding : chunked\r\n`, `${len.toString(16)}\r\n${body}\r\n0\r\n\r\n`), { status: 400 }],
    ["a header line without a colon", post(`Content-Length: ${len}\r\nX-Broken\r\n`), { status: 400 }],
    ["an obs-fold continuation line", post(`Content-Length: ${len}\r\nX-A: a\r\n x-injected: 1\r\n`), { status: 400 }],
    ["a bare CR inside a header value", post(`Content-Length: ${len}\r\nX-A: a\rx-injected: 1\r\n`), { status: 400 }],
    ["NUL in the Idempotency-Key header", withHeader("POST", a.key, "Idempotency-Key", [0x6b, 0, 0x6b], body), { status: [400, 422] }],
    ["NUL in Evently-Application (admin key)", withHeader("GET", adminKey, "Evently-Application", [0x61, 0, 0x62]), { status: [400, 404] }],
    ["invalid UTF-8 (0xFF 0xFE) in Evently-Application (admin key)", withHeader("GET", adminKey, "Evently-Application", [0x61, 0xff, 0xfe]), { status: [400, 404] }],
    ["NUL in the Authorization header", withHeader("GET", null, "Authorization", [...Buffer.from(`Bearer ${a.key}`), 0]), { status: [400, 401] }],
    ["a 64 KiB header", `GET /endpoints HTTP/1.1\r\nHost: 127.0.0.1\r\n${auth}X-Big: ${"b".repeat(64 * 1024)}\r\nConnection: close\r\n\r\n`, badRequest],
    ["1000 headers", `GET /endpoints HTTP/1.1\r\nHost: 127.0.0.1\r\n${auth}${Array.from({ length: 1000 }, (_, i) => `X-H${i}: v\r\n`).join("")}Connection: close\r\n\r\n`, badRequest],
    ["a 100 KiB request line", `GET /endpoints?${"q".repeat(100 * 1024)} HTTP/1.1\r\nHost: 127.0.0.1\r\n${auth}Connection: close\r\n\r\n`, { status: [400, 414, 422, 431] }],
    // Bun's parser answers a request line it cannot read with 505 and handles nothing: a refusal.
    ["a method with NUL", Buffer.concat([Buffer.from("GE"), Buffer.from([0]), Buffer.from(`T /endpoints HTTP/1.1\r\nHost: 127.0.0.1\r\n${auth}Connection: close\r\n\r\n`)]), { status: [400, 404, 405, 505] }],
    ["HTTP/2 preface on an HTTP/1.1 port", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", { status: [400, 404, 405, 505] }],
    ["an unknown HTTP version", `GET /endpoints HTTP/9.9\r\nHost: 127.0.0.1\r\n${auth}Connection: close\r\n\r\n`, { status: [400, 505] }],
  ];
  for (const [name, request, expect] of cases) {
    const res = await rawExchange(hostname, Number(port), request, 5000);
    const shown = (typeof request === "string" ? request : request.toString("latin1")).replace(/Bearer \S+/, "Bearer …").replace(/\x00/g, "\\0");
    suite.judge(GROUP, name, JSON.stringify(shown.length > 240 ? `${shown.slice(0, 220)}…` : shown), res, expect);
  }
}
