import { afterAll, beforeAll, expect, test } from "bun:test";
import type { RunningRoles } from "../../runtime.ts";
import { pollUntil } from "../support/poll.ts";
import { startReceiver, type Receiver } from "../support/receiver.ts";
import { createTestStack, describeEachTransport, type TestStack } from "../support/stack.ts";

/**
 * The SSRF guard through the whole pipeline, with the worker's real resolver: DELIVERY_ALLOWED_CIDRS
 * opens the receiver's address and nothing more, and a refused delivery fails at once, its reason
 * on the attempt, since no retry can make the address public.
 */
describeEachTransport("SSRF guard", (transport) => {
  let stack: TestStack;
  let app: RunningRoles;
  let receiver: Receiver;
  let allowed: { id: string };
  let refused: { id: string };

  beforeAll(async () => {
    receiver = startReceiver();
    stack = await createTestStack({ RETRY_SCHEDULE: "100ms,100ms,100ms" }, transport);
    // Endpoints saved while every address was allowed; then the guard on, with one address opened.
    const open = await stack.start("all");
    const port = new URL(receiver.url).port;
    // A name, so the worker resolves it and pins the connection to the address it checked.
    allowed = await stack.subscribe(open, `http://localhost:${port}/allowed`, "allowed.*");
    refused = await stack.subscribe(open, `http://127.0.0.2:${port}/refused`, "refused.*");
    await open.stop();
    app = await stack.start("all", { DELIVERY_ALLOW_PRIVATE_NETWORKS: "false", DELIVERY_ALLOWED_CIDRS: "127.0.0.1/32,::1/128" });
  });

  afterAll(async () => {
    await stack.stop();
    await receiver.stop();
  });

  async function settled(type: string, status: string): Promise<any> {
    const res = await stack.api(app, "POST", "/events", { type, data: {} });
    expect(res.status).toBe(202);
    const jobId = res.body.jobs[0].id;
    return pollUntil(async () => {
      const job = await stack.api(app, "GET", `/jobs/${jobId}`);
      return job.body.status === status && job.body;
    }, { what: `job ${status}` });
  }

  test("an address inside DELIVERY_ALLOWED_CIDRS is delivered to, over the pinned connection", async () => {
    const job = await settled("allowed.happened", "delivered");
    expect(job.attempts).toHaveLength(1);
    expect(receiver.on("/allowed")).toHaveLength(1);
    expect(receiver.on("/allowed")[0]!.headers.host).toBe(`localhost:${new URL(receiver.url).port}`);
    expect(job.endpointId).toBe(allowed.id);
  });

  test("a refused address fails the job at the first attempt, recorded as blocked_address", async () => {
    const job = await settled("refused.happened", "dead");
    await Bun.sleep(300); // the retry schedule would have fired by now
    const again = (await stack.api(app, "GET", `/jobs/${job.id}`)).body;
    expect(again.status).toBe("dead");
    expect(again.attempts).toHaveLength(1);
    expect(again.attempts[0]).toMatchObject({ attemptNumber: 1, responseStatus: null, errorClass: "blocked_address" });
    expect(again.attempts[0].errorDetail).toContain("127.0.0.2");
    expect(refused.id).toBe(job.endpointId);
    // The endpoint itself shows why its deliveries stop.
    const endpoint = (await stack.api(app, "GET", `/endpoints/${refused.id}`)).body;
    expect(endpoint.lastAttempt).toMatchObject({ errorClass: "blocked_address", responseStatus: null });
    expect(endpoint.lastAttempt.errorDetail).toContain("127.0.0.2");
  });
});
