import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Webhook } from "standardwebhooks";
import type { RunningRoles } from "../../runtime.ts";
import { pollUntil } from "../support/poll.ts";
import { startReceiver, type Receiver } from "../support/receiver.ts";
import { createTestStack, describeEachTransport, type TestStack } from "../support/stack.ts";

describeEachTransport("delivery", (transport) => {
  let stack: TestStack;
  let app: RunningRoles;
  let receiver: Receiver;

  beforeAll(async () => {
    receiver = startReceiver();
    stack = await createTestStack({ RETRY_SCHEDULE: "200ms,200ms,200ms" }, transport);
    app = await stack.start("all");
  });

  afterAll(async () => {
    await stack.stop();
    await receiver.stop();
  });

  async function endpoint(path: string, extra: Record<string, unknown> = {}) {
    const res = await stack.api(app, "POST", "/endpoints", { url: `${receiver.url}${path}`, ...extra });
    expect(res.status).toBe(201);
    return res.body as { id: string; secret: string };
  }

  async function route(endpointId: string, eventType: string) {
    const res = await stack.api(app, "POST", "/routes", { endpointId, eventType });
    expect(res.status).toBe(201);
  }

  async function publish(type: string, data: unknown, extra: Record<string, unknown> = {}) {
    const res = await stack.api(app, "POST", "/events", { type, data, ...extra });
    expect(res.status).toBe(202);
    return res.body as { id: string; jobs: { id: string; endpointId: string }[] };
  }

  const settle = (ms = 300) => Bun.sleep(ms);

  describe("delivery", () => {
    test("delivers exactly the envelope, signed so an independent verifier accepts it, and records the attempt", async () => {
      // The URL's password is stored and never shown; with an authorization header given, that header is sent.
      const credentialed = receiver.url.replace("://", "://hook:pw-s3cret@");
      const ep = await endpoint("/basic", { url: `${credentialed}/basic`, headers: { "x-tenant": "acme", authorization: "Bearer s3cret" } });
      await route(ep.id, "order.paid");
      const data = { orderId: 42, amount: { value: 1999, currency: "EUR" }, tags: ["a", "b"], note: "é ✓" };
      const event = await publish("order.paid", data);
      expect(event.jobs).toHaveLength(1);

      const [req] = await pollUntil(() => receiver.on("/basic").length === 1 && receiver.on("/basic"), { what: "delivery" });
      const body = JSON.parse(req!.body);
      expect(Object.keys(body)).toEqual(["id", "type", "timestamp", "data"]);
      expect(body).toMatchObject({ id: event.id, type: "order.paid", data });
      expect(new Date(body.timestamp).toISOString()).toBe(body.timestamp);

      expect(req!.headers["webhook-id"]).toBe(event.jobs[0]!.id);
      expect(req!.headers["content-type"]).toBe("application/json");
      expect(req!.headers["x-tenant"]).toBe("acme");
      expect(req!.headers["authorization"]).toBe("Bearer s3cret");
      const verified = new Webhook(ep.secret).verify(req!.body, {
        "webhook-id": req!.headers["webhook-id"]!,
        "webhook-timestamp": req!.headers["webhook-timestamp"]!,
        "webhook-signature": req!.headers["webhook-signature"]!,
      });
      expect(verified).toEqual(body);
      // A different secret must not verify: the check above is not vacuous.
      expect(() =>
        new Webhook("whsec_" + Buffer.alloc(24, 7).toString("base64")).verify(req!.body, {
          "webhook-id": req!.headers["webhook-id"]!,
          "webhook-timestamp": req!.headers["webhook-timestamp"]!,
          "webhook-signature": req!.headers["webhook-signature"]!,
        }),
      ).toThrow();

      const job = await pollUntil(async () => {
        const res = await stack.api(app, "GET", `/jobs/${event.jobs[0]!.id}`);
        return res.body?.status === "delivered" && res.body;
      }, { what: "job delivered" });
      expect(job.attemptCount).toBe(1);
      expect(job.attempts).toHaveLength(1);
      const attempt = job.attempts[0];
      expect(attempt).toMatchObject({ responseStatus: 200, responseBody: "ok", errorClass: null, attemptNumber: 1 });
      expect(attempt.requestHeaders["webhook-id"]).toBe(event.jobs[0]!.id);
      expect(attempt.requestHeaders["x-tenant"]).toBe("acme");
      expect(attempt.requestHeaders["authorization"]).toBe("[redacted]");
      expect(attempt.url).toBe(`${receiver.url.replace("://", "://hook:[redacted]@")}/basic`);
      expect(JSON.stringify(attempt)).not.toContain(ep.secret.slice(6));
      expect(JSON.stringify(attempt)).not.toContain("s3cret");
    });

    test("a password in the url is sent as Basic auth but recorded as [redacted]", async () => {
      const ep = await endpoint("/userinfo", { url: `${receiver.url.replace("://", "://hook:pw%3Auser@")}/userinfo` });
      await route(ep.id, "userinfo.sent");
      const event = await publish("userinfo.sent", { u: 1 });
      const [req] = await pollUntil(() => receiver.on("/userinfo").length === 1 && receiver.on("/userinfo"), { what: "delivery" });
      expect(req!.headers["authorization"]).toBe(`Basic ${Buffer.from("hook:pw:user").toString("base64")}`);
      const job = await pollUntil(async () => {
        const res = await stack.api(app, "GET", `/jobs/${event.jobs[0]!.id}`);
        return res.body?.status === "delivered" && res.body;
      }, { what: "job delivered" });
      expect(job.attempts[0].url).toBe(`${receiver.url.replace("://", "://hook:[redacted]@")}/userinfo`);
      const [row] = await stack.sql`select url from attempts where job_id = ${event.jobs[0]!.id}`;
      expect(row!.url).not.toContain("pw");
    });

    test("fans out one event to three endpoints", async () => {
      const eps = [await endpoint("/fan-1"), await endpoint("/fan-2"), await endpoint("/fan-3")];
      for (const ep of eps) await route(ep.id, "user.created");
      const event = await publish("user.created", { user: 1 });
      expect(event.jobs.map((j) => j.endpointId).sort()).toEqual(eps.map((e) => e.id).sort());
      await pollUntil(() => ["/fan-1", "/fan-2", "/fan-3"].every((p) => receiver.on(p).length === 1), { what: "fan-out" });
      const ids = new Set(["/fan-1", "/fan-2", "/fan-3"].map((p) => JSON.parse(receiver.on(p)[0]!.body).id));
      expect([...ids]).toEqual([event.id]);
      await settle();
      expect(["/fan-1", "/fan-2", "/fan-3"].map((p) => receiver.on(p).length)).toEqual([1, 1, 1]);
    });

    test("wildcard routes match by prefix and '*' matches everything", async () => {
      const prefixed = await endpoint("/wild-prefix");
      const all = await endpoint("/wild-all");
      await route(prefixed.id, "invoice.*");
      await route(all.id, "*");
      await route(all.id, "invoice.*"); // two matching routes to one endpoint still make one job
      const a = await publish("invoice.paid", { n: 1 });
      const b = await publish("invoice.line.added", { n: 2 });
      const c = await publish("invoicex.paid", { n: 3 });
      expect(a.jobs).toHaveLength(2);
      expect(b.jobs).toHaveLength(2);
      expect(c.jobs.map((j) => j.endpointId)).toEqual([all.id]);
      await pollUntil(() => receiver.on("/wild-prefix").length === 2 && receiver.on("/wild-all").length === 3, { what: "wildcards" });
      expect(receiver.on("/wild-prefix").map((r) => JSON.parse(r.body).type).sort()).toEqual(["invoice.line.added", "invoice.paid"]);
      // The catch-all endpoint would receive every later test's events too.
      expect((await stack.api(app, "DELETE", `/endpoints/${all.id}`)).status).toBe(204);
    });

    test("an idempotency key returns the original event and delivers once", async () => {
      const ep = await endpoint("/idem");
      await route(ep.id, "payment.settled");
      const first = await publish("payment.settled", { p: 1 }, { idempotencyKey: "pay-123" });
      const again = await stack.api(app, "POST", "/events", { type: "payment.settled", data: { p: 1 }, idempotencyKey: "pay-123" });
      expect(again.status).toBe(202);
      expect(again.body.id).toBe(first.id);
      await pollUntil(() => receiver.on("/idem").length === 1, { what: "idempotent delivery" });
      await settle();
      expect(receiver.on("/idem")).toHaveLength(1);
      const rows = await stack.sql`select id from jobs where event_id = ${first.id}`;
      expect(rows).toHaveLength(1);
    });

    test("a 500 then a 200 makes two attempts, one delivery, one webhook-id", async () => {
      const ep = await endpoint("/flaky");
      await route(ep.id, "flaky.thing");
      receiver.respond("/flaky", (_req, nth) => (nth === 1 ? new Response("boom", { status: 500 }) : new Response("fine")));
      const event = await publish("flaky.thing", { x: 1 });
      const job = await pollUntil(async () => {
        const res = await stack.api(app, "GET", `/jobs/${event.jobs[0]!.id}`);
        return res.body?.status === "delivered" && res.body;
      }, { what: "retry then delivery" });
      expect(job.attemptCount).toBe(2);
      expect(job.attempts.map((a: any) => [a.attemptNumber, a.responseStatus, a.errorClass])).toEqual([
        [1, 500, "http_status"],
        [2, 200, null],
      ]);
      expect(job.attempts[0].responseBody).toBe("boom");
      const got = receiver.on("/flaky");
      expect(got).toHaveLength(2);
      expect(got[0]!.headers["webhook-id"]).toBe(got[1]!.headers["webhook-id"]);
      // The retry comes from the outbox sweeper, the first try from the fast path: same bytes.
      expect(got[1]!.body).toBe(got[0]!.body);
    });

    test("failures are recorded by class and retried until the schedule is exhausted", async () => {
      const ep = await endpoint("/always-503");
      await route(ep.id, "doomed.event");
      receiver.respond("/always-503", () => new Response("nope", { status: 503 }));
      const event = await publish("doomed.event", {});
      const job = await pollUntil(async () => {
        const res = await stack.api(app, "GET", `/jobs/${event.jobs[0]!.id}`);
        return res.body?.status === "dead" && res.body;
      }, { what: "job dead after retries", timeoutMs: 15_000 });
      // RETRY_SCHEDULE has three delays: one first attempt plus three retries.
      expect(job.attemptCount).toBe(4);
      expect(job.attempts.every((a: any) => a.errorClass === "http_status" && a.responseStatus === 503)).toBe(true);
      expect(receiver.on("/always-503")).toHaveLength(4);
    });

    test("connection failures are classified", async () => {
      const res = await stack.api(app, "POST", "/endpoints", { url: "http://127.0.0.1:1/closed", timeoutMs: 1000 });
      await route(res.body.id, "refused.event");
      const event = await publish("refused.event", {});
      const attempt = await pollUntil(async () => {
        const [row] = await stack.sql`select error_class, response_status from attempts where job_id = ${event.jobs[0]!.id} limit 1`;
        return row;
      }, { what: "refused attempt" });
      expect(attempt).toEqual({ errorClass: "connection_refused", responseStatus: null });
    });

    test("a disabled endpoint gets no jobs", async () => {
      const ep = await endpoint("/disabled", { enabled: false });
      await route(ep.id, "quiet.event");
      const event = await publish("quiet.event", {});
      expect(event.jobs).toHaveLength(0);
    });
  });
});
