import { afterAll, beforeAll, expect, test } from "bun:test";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { AddressPolicy, parseCidrList } from "../../core/net/policy.ts";
import { send, type SendRequest } from "../../worker/http/send.ts";
import { SsrfGuard, type Resolver } from "../../worker/http/ssrf.ts";

/**
 * One deadline, the endpoint's timeout, bounds the whole attempt: DNS, connect, TLS, headers and
 * the capped body read. A receiver that answers at once and then trickles its body must not hold
 * a delivery slot for longer.
 */
const TIMEOUT_MS = 400;
const policy = new AddressPolicy(false, parseCidrList("127.0.0.1/32").cidrs);
const guard = new SsrfGuard(policy, { resolver: { resolve: async () => ["127.0.0.1"] } });
let server: http.Server;
let base: string;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    // One byte every 50 ms, for far longer than the timeout.
    const headers: Record<string, string> = req.url === "/declared" ? { "content-length": "1000" } : {};
    res.writeHead(200, headers);
    const timer = setInterval(() => res.write("x"), 50);
    res.on("close", () => clearInterval(timer));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://trickle.evently.test:${(server.address() as AddressInfo).port}`;
});
afterAll(() => {
  server.closeAllConnections();
  server.close();
});

const request = (url: string, maxResponseBytes = 4096): SendRequest => ({ url, headers: {}, body: "{}", timeoutMs: TIMEOUT_MS, maxResponseBytes });

for (const path of ["/declared", "/chunked"])
  test(`a body trickled slower than the timeout is cut off at the timeout (${path})`, async () => {
    const started = performance.now();
    const result = await send(request(`${base}${path}`), guard);
    const took = performance.now() - started;
    expect(result).toMatchObject({ status: null, errorClass: "timeout" });
    expect(took).toBeGreaterThanOrEqual(TIMEOUT_MS - 20);
    expect(took).toBeLessThan(TIMEOUT_MS + 400);
  });

test("a capped body ends the read early, well within the timeout", async () => {
  const result = await send(request(`${base}/chunked`, 3), guard);
  expect(result).toMatchObject({ status: 200, responseBody: "xxx", errorClass: null });
  expect(result.durationMs).toBeLessThan(TIMEOUT_MS);
});

test("a DNS lookup that hangs counts against the same deadline", async () => {
  const hanging: Resolver = { resolve: () => new Promise(() => {}) };
  const started = performance.now();
  const result = await send(request(`${base}/declared`), new SsrfGuard(policy, { resolver: hanging }));
  expect(result).toMatchObject({ status: null, errorClass: "timeout" });
  expect(performance.now() - started).toBeLessThan(TIMEOUT_MS + 400);
});
