import { afterAll, beforeAll, expect, test } from "bun:test";
import { Webhook } from "standardwebhooks";
import type { RunningRoles } from "../../runtime.ts";
import { pollUntil } from "../support/poll.ts";
import { startReceiver, type Receiver, type ReceivedRequest } from "../support/receiver.ts";
import { createTestStack, describeEachTransport, type TestStack } from "../support/stack.ts";

describeEachTransport("secret rotation", (transport) => {
  let stack: TestStack;
  let app: RunningRoles;
  let receiver: Receiver;

  beforeAll(async () => {
    receiver = startReceiver();
    stack = await createTestStack({}, transport);
    app = await stack.start("all");
  });

  afterAll(async () => {
    await stack.stop();
    await receiver.stop();
  });

  async function rotate(endpointId: string, body?: { graceSeconds: number }) {
    const res = await stack.api(app, "POST", `/endpoints/${endpointId}/secret/rotate`, body);
    expect(res.status).toBe(200);
    return res.body as { secret: string; previousSecretExpiresAt: string | null };
  }

  /** Publishes one event of `type` and returns the request that delivered it to `path`. */
  async function deliver(path: string, type: string): Promise<ReceivedRequest> {
    const before = receiver.on(path).length;
    const res = await stack.api(app, "POST", "/events", { type, data: { n: before } });
    expect(res.status).toBe(202);
    return pollUntil(() => receiver.on(path).length > before && receiver.on(path)[before], { what: `delivery to ${path}` });
  }

  const verifies = (secret: string, req: ReceivedRequest): boolean => {
    try {
      new Webhook(secret).verify(req.body, {
        "webhook-id": req.headers["webhook-id"]!,
        "webhook-timestamp": req.headers["webhook-timestamp"]!,
        "webhook-signature": req.headers["webhook-signature"]!,
      });
      return true;
    } catch {
      return false;
    }
  };
  const signatures = (req: ReceivedRequest) => req.headers["webhook-signature"]!.split(" ");

  test("during the grace window a delivery carries both signatures, new first; either secret verifies it", async () => {
    const ep = await stack.subscribe(app, `${receiver.url}/grace`, "rotation.grace");
    // A delivery first, so the worker has the endpoint cached when the secret changes.
    expect(verifies(ep.secret, await deliver("/grace", "rotation.grace"))).toBe(true);

    const rotated = await rotate(ep.id, { graceSeconds: 3600 });
    expect(Date.parse(rotated.previousSecretExpiresAt!)).toBeGreaterThan(Date.now() + 3500_000);
    const req = await deliver("/grace", "rotation.grace");
    expect(signatures(req)).toHaveLength(2);
    expect(signatures(req).every((s) => s.startsWith("v1,"))).toBe(true);
    expect(verifies(rotated.secret, req)).toBe(true);
    expect(verifies(ep.secret, req)).toBe(true);
    expect(verifies(rotated.secret, { ...req, headers: { ...req.headers, "webhook-signature": signatures(req)[0]! } })).toBe(true);
    // Not vacuous: a secret that was never the endpoint's does not verify.
    expect(verifies("whsec_" + Buffer.alloc(24, 7).toString("base64"), req)).toBe(false);

    // The attempt record keeps the signatures out, as it always has.
    const job = await pollUntil(async () => {
      const res = await stack.api(app, "GET", `/jobs/${req.headers["webhook-id"]}`);
      return res.body?.status === "delivered" && res.body;
    }, { what: "job delivered" });
    expect(job.attempts[0].requestHeaders["webhook-signature"]).toBe("[redacted]");
  });

  test("a body-less rotate applies the default grace window", async () => {
    const ep = await stack.subscribe(app, `${receiver.url}/default`, "rotation.default");
    const rotated = await rotate(ep.id);
    const expiresIn = Date.parse(rotated.previousSecretExpiresAt!) - Date.now();
    expect(Math.abs(expiresIn - 86_400_000)).toBeLessThan(60_000);
    const req = await deliver("/default", "rotation.default");
    expect(verifies(rotated.secret, req) && verifies(ep.secret, req)).toBe(true);
  });

  test("graceSeconds 0 switches at once: only the new secret signs, and an earlier grace window ends", async () => {
    const ep = await stack.subscribe(app, `${receiver.url}/immediate`, "rotation.immediate");
    expect(verifies(ep.secret, await deliver("/immediate", "rotation.immediate"))).toBe(true);
    const graced = await rotate(ep.id, { graceSeconds: 3600 });
    const rotated = await rotate(ep.id, { graceSeconds: 0 });
    expect(rotated.previousSecretExpiresAt).toBeNull();

    const req = await deliver("/immediate", "rotation.immediate");
    expect(signatures(req)).toHaveLength(1);
    expect(verifies(rotated.secret, req)).toBe(true);
    expect(verifies(graced.secret, req)).toBe(false);
    expect(verifies(ep.secret, req)).toBe(false);
  });

  test("rotating again during a window keeps only the newest previous secret", async () => {
    const ep = await stack.subscribe(app, `${receiver.url}/twice`, "rotation.twice");
    const first = await rotate(ep.id, { graceSeconds: 3600 });
    const second = await rotate(ep.id, { graceSeconds: 3600 });
    const req = await deliver("/twice", "rotation.twice");
    expect(signatures(req)).toHaveLength(2);
    expect(verifies(second.secret, req)).toBe(true);
    expect(verifies(first.secret, req)).toBe(true);
    expect(verifies(ep.secret, req)).toBe(false);
  });

  test("the window's end is judged at each attempt, though the worker still has the endpoint cached", async () => {
    const ep = await stack.subscribe(app, `${receiver.url}/expiry`, "rotation.expiry");
    const rotated = await rotate(ep.id, { graceSeconds: 3 });
    // Cached now, with the previous secret and its expiry; nothing notifies the worker when it passes.
    const during = await deliver("/expiry", "rotation.expiry");
    expect(Date.now()).toBeLessThan(Date.parse(rotated.previousSecretExpiresAt!));
    expect(verifies(ep.secret, during)).toBe(true);

    await Bun.sleep(Math.max(0, Date.parse(rotated.previousSecretExpiresAt!) - Date.now()) + 100);
    const after = await deliver("/expiry", "rotation.expiry");
    expect(signatures(after)).toHaveLength(1);
    expect(verifies(rotated.secret, after)).toBe(true);
    expect(verifies(ep.secret, after)).toBe(false);
  });
});
