import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import type { TLSSocket } from "node:tls";
import { AddressPolicy, parseCidrList } from "../../core/net/policy.ts";
import { pinnedRequest, send, type SendRequest } from "../../worker/http/send.ts";
import { SsrfGuard, type Resolver } from "../../worker/http/ssrf.ts";
import { decideOutcome } from "../../worker/delivery/outcome.ts";

/**
 * The worker's connect-time guard: a name is resolved once, every address is judged, and the
 * connection goes to exactly the judged address. Tests reach loopback only, so the "public"
 * address here is 127.0.0.1 made allowed by DELIVERY_ALLOWED_CIDRS=127.0.0.1/32, and the
 * forbidden one is 127.0.0.2, a second loopback address on the same port.
 */
const allowOnly127001 = new AddressPolicy(false, parseCidrList("127.0.0.1/32").cidrs);

interface Server {
  port: number;
  requests: { host: string; servername?: string }[];
  connections: number;
  close(): void;
}

function serve(make: (handler: http.RequestListener) => http.Server, host: string, port = 0): Promise<Server> {
  const server: Server = { port: 0, requests: [], connections: 0, close: () => listening.close() };
  const listening = make((req, res) => {
    server.requests.push({ host: String(req.headers.host), servername: (req.socket as TLSSocket).servername || undefined });
    req.resume().on("end", () => res.end("ok"));
  });
  listening.on(listening instanceof https.Server ? "secureConnection" : "connection", () => server.connections++);
  return new Promise((resolve, reject) => {
    listening.once("error", reject);
    listening.listen(port, host, () => resolve(Object.assign(server, { port: (listening.address() as AddressInfo).port })));
  });
}

/** A DNS seam that answers from a script, one answer per lookup, and counts the lookups. */
function scripted(...answers: string[][]): Resolver & { lookups: string[] } {
  const lookups: string[] = [];
  return {
    lookups,
    async resolve(name) {
      lookups.push(name);
      return answers[Math.min(lookups.length, answers.length) - 1]!;
    },
  };
}

const request = (url: string): SendRequest => ({ url, headers: { "content-type": "application/json" }, body: "{}", timeoutMs: 5000, maxResponseBytes: 100 });

describe("pinned connections", () => {
  let good: Server;
  let evil: Server;
  beforeAll(async () => {
    good = await serve(http.createServer, "127.0.0.1");
    evil = await serve(http.createServer, "127.0.0.2", good.port);
  });
  afterAll(() => {
    good.close();
    evil.close();
  });

  test("a name is resolved by the guard only: the request reaches the checked address with the original Host", async () => {
    const resolver = scripted(["127.0.0.1"]);
    const guard = new SsrfGuard(allowOnly127001, { resolver });
    // .test names never resolve in real DNS: a delivery here proves fetch did no lookup of its own.
    const url = `http://hooks.evently.test:${good.port}/hook?x=1`;
    const before = good.connections;
    for (let i = 0; i < 20; i++) expect(await send(request(url), guard)).toMatchObject({ status: 200, errorClass: null });
    expect(good.requests.at(-1)).toEqual({ host: `hooks.evently.test:${good.port}`, servername: undefined });
    expect(resolver.lookups).toEqual(["hooks.evently.test"]); // cached: DNS is off the hot path
    expect(good.connections - before).toBe(1); // keep-alive survives pinning
  });

  test("DNS rebinding cannot pass: each connection goes to the very answer that was checked", async () => {
    // An attacker's DNS: allowed at the first lookup, a forbidden address at every later one.
    const resolver = scripted(["127.0.0.1"], ["127.0.0.2"]);
    const guard = new SsrfGuard(allowOnly127001, { resolver, ttlMs: 0 });
    const url = `http://rebind.evently.test:${good.port}/hook`;
    expect(await send(request(url), guard)).toMatchObject({ status: 200 });
    for (let i = 0; i < 3; i++)
      expect(await send(request(url), guard)).toMatchObject({
        status: null,
        errorClass: "blocked_address",
        errorDetail: "rebind.evently.test resolves to 127.0.0.2, which is a non-public address (loopback)",
      });
    expect(resolver.lookups).toHaveLength(4); // one lookup per attempt, shared by check and connection
    expect(evil.requests).toHaveLength(0);
  });

  test("every address of an answer must be allowed, not just the one connected to", async () => {
    const guard = new SsrfGuard(allowOnly127001, { resolver: scripted(["127.0.0.1", "127.0.0.2"]) });
    expect(await send(request(`http://both.evently.test:${good.port}/`), guard)).toMatchObject({ errorClass: "blocked_address" });
    expect(await send(request(`http://127.0.0.2:${good.port}/`), guard)).toMatchObject({
      errorClass: "blocked_address",
      errorDetail: "127.0.0.2 is a non-public address (loopback)",
    });
    expect(await send(request(`http://public.example@127.0.0.2:${good.port}/`), guard)).toMatchObject({ errorClass: "blocked_address" });
    expect(evil.requests).toHaveLength(0);
  });

  test("a lookup that fails is a `dns` error, retried; a refusal is final", async () => {
    const failing: Resolver = { resolve: () => Promise.reject(Object.assign(new Error("queryA ENOTFOUND"), { code: "ENOTFOUND" })) };
    const guard = new SsrfGuard(allowOnly127001, { resolver: failing });
    expect(await send(request(`http://gone.evently.test:${good.port}/`), guard)).toMatchObject({ errorClass: "dns" });
    const rules = { defaultPolicy: { type: "schedule" as const, delaysMs: [1000], jitter: 0 }, retryAfter: { minMs: 0, maxMs: 0 }, finalStatuses: new Set<number>() };
    const job = { jobId: "job_1", eventId: "evt_1", endpointId: "ep_1", attempt: 0, createdAt: Date.now(), expiresAt: null, body: "{}" };
    const statusAfter = (errorClass: "dns" | "blocked_address" | "timeout") =>
      decideOutcome(job, { retryPolicy: null } as never, { attemptedAt: new Date(), headers: {}, result: { status: null, responseBody: null, retryAfter: null, durationMs: 1, errorClass, errorDetail: "" } }, rules).outcome;
    expect(statusAfter("dns").status).toBe("scheduled");
    expect(statusAfter("timeout").status).toBe("scheduled");
    expect(statusAfter("blocked_address")).toMatchObject({ status: "dead", endReason: "blocked_address" });
  });

  test("the guard switched off (DELIVERY_ALLOW_PRIVATE_NETWORKS=true) neither resolves nor refuses", async () => {
    const resolver = scripted(["127.0.0.2"]);
    const guard = new SsrfGuard(new AddressPolicy(true, []), { resolver });
    expect(await guard.destination("anything.evently.test")).toEqual({ ok: true, address: null });
    expect(await send(request(`http://127.0.0.1:${good.port}/`), guard)).toMatchObject({ status: 200 });
    expect(resolver.lookups).toHaveLength(0);
  });
});

describe("pinned https", () => {
  const cert = readFileSync(new URL("./fixtures/receiver-cert.pem", import.meta.url), "utf8");
  const key = readFileSync(new URL("./fixtures/receiver-key.pem", import.meta.url), "utf8");
  let tls: Server;
  beforeAll(async () => {
    tls = await serve((handler) => https.createServer({ cert, key }, handler), "127.0.0.1");
  });
  afterAll(() => tls.close());

  /** The pinned request as send builds it, trusting the fixture's self-signed certificate. */
  async function fetchPinned(url: string): Promise<Response> {
    const pinned = pinnedRequest(new URL(url), "127.0.0.1");
    expect(pinned.url.hostname).toBe("127.0.0.1");
    return fetch(pinned.url, { method: "POST", body: "{}", headers: { host: pinned.host! }, tls: { ...pinned.tls, ca: cert } });
  }

  test("the certificate is verified for the URL's host name, sent as SNI, over a connection to the pinned address", async () => {
    const response = await fetchPinned(`https://hooks.evently.test:${tls.port}/hook`);
    expect(response.status).toBe(200);
    expect(tls.requests.at(-1)).toEqual({ host: `hooks.evently.test:${tls.port}`, servername: "hooks.evently.test" });
  });

  test("a certificate for another name is refused", async () => {
    const error = await fetchPinned(`https://wrong.evently.test:${tls.port}/hook`).catch((err) => err);
    expect(error).toMatchObject({ code: "ERR_TLS_CERT_ALTNAME_INVALID" });
  });

  test("connections are kept alive per host name, and never shared between two names", async () => {
    await fetchPinned(`https://hooks.evently.test:${tls.port}/warm`).then((r) => r.text());
    const before = tls.connections;
    for (let i = 0; i < 20; i++) await fetchPinned(`https://hooks.evently.test:${tls.port}/hook`).then((r) => r.text());
    expect(tls.connections - before).toBe(0);
    await fetchPinned(`https://other.evently.test:${tls.port}/hook`).then((r) => r.text());
    expect(tls.connections - before).toBe(1);
    expect(tls.requests.at(-1)!.servername).toBe("other.evently.test");
  });

  test("send verifies certificates: a self-signed one is a `tls` failure", async () => {
    const guard = new SsrfGuard(allowOnly127001, { resolver: scripted(["127.0.0.1"]) });
    const result = await send(request(`https://hooks.evently.test:${tls.port}/hook`), guard);
    expect(result).toMatchObject({ status: null, errorClass: "tls" });
  });
});
