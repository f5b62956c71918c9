import { afterAll, beforeAll, expect, test } from "bun:test";
import { pollUntil } from "../support/poll.ts";
import { stall, startReceiver, type Receiver } from "../support/receiver.ts";
import { createTestStack, describeEachTransport, type TestStack } from "../support/stack.ts";

describeEachTransport("worker crash", (transport) => {
  let stack: TestStack;
  let receiver: Receiver;

  beforeAll(async () => {
    receiver = startReceiver();
    // The shortest claim lease, so the recovery of a dead worker's jobs takes seconds.
    stack = await createTestStack({ WORKER_LEASE_MS: "3000" }, transport);
  });

  afterAll(async () => {
    await stack.stop();
    await receiver.stop();
  });

  test("jobs a worker was delivering when it was killed are delivered by the next worker", async () => {
    const api = await stack.start("api");
    await stack.start("dispatcher");
    let workerKilled = false;
    // While the first worker lives, the receiver holds every request open; afterwards it answers.
    receiver.respond("/crash", async (req) => {
      if (!workerKilled) await stall(req, 10_000);
      return new Response("ok");
    });
    await stack.subscribe(api, `${receiver.url}/crash`, "crash.*", { timeoutMs: 3000 });

    const worker = Bun.spawn([process.execPath, "services/main.ts", "worker"], {
      env: { ...process.env, ...stack.env },
      stdout: "ignore",
      stderr: "ignore",
    });
    try {
      const events = await Promise.all(
        Array.from({ length: 5 }, (_, i) => stack.api(api, "POST", "/events", { type: "crash.test", data: { i } })),
      );
      const jobIds = events.map((e) => e.body.jobs[0].id as string);
      await pollUntil(() => receiver.on("/crash").length >= 5, { what: "five deliveries in flight", timeoutMs: 15_000 });
      const inFlight = await stack.sql`select status from jobs where id = any (${jobIds})`;
      expect(inFlight.map((r) => r.status)).toEqual(Array(5).fill("delivering"));

      worker.kill("SIGKILL");
      await worker.exited;
      workerKilled = true;
      await stack.start("worker");

      // The dead worker never recorded anything; once its claims lapse, the sweeper republishes.
      const delivered = await pollUntil(async () => {
        const rows = await stack.sql`select status, attempt_count from jobs where id = any (${jobIds})`;
        return rows.every((r) => r.status === "delivered") && rows;
      }, { what: "every job delivered after the crash", timeoutMs: 20_000 });
      expect(delivered.map((r) => r.attemptCount)).toEqual(Array(5).fill(1));
      // At least once: each webhook-id arrived twice (the cut-off try and the real one), same id.
      for (const id of jobIds) expect(receiver.on("/crash").filter((r) => r.headers["webhook-id"] === id).length).toBe(2);
    } finally {
      worker.kill("SIGKILL");
    }
  });
});
