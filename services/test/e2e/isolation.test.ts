import { afterAll, beforeAll, expect, test } from "bun:test";
import type { RunningRoles } from "../../runtime.ts";
import { pollUntil } from "../support/poll.ts";
import { stall, startReceiver, type Receiver } from "../support/receiver.ts";
import { createTestStack, describeEachTransport, type TestStack } from "../support/stack.ts";

describeEachTransport("isolation between endpoints", (transport) => {
  let stack: TestStack;
  let app: RunningRoles;
  let receiver: Receiver;

  beforeAll(async () => {
    receiver = startReceiver();
    // A small prefetch window and per-endpoint bound: if a slow endpoint could hold the consumer,
    // this configuration would show it at once.
    stack = await createTestStack({
      WORKER_PREFETCH: "4",
      WORKER_MAX_IN_FLIGHT_PER_ENDPOINT: "3",
      AMQP_JOBS_PER_MESSAGE: "4",
      QUEUE_TAKE_BATCH: "4",
      RETRY_SCHEDULE: "1h",
      // The per-endpoint bound is what is tested: the circuit breaker would hold the slow endpoint's jobs instead.
      CIRCUIT_FAILURE_THRESHOLD: "0",
      CIRCUIT_FAILURE_RATIO: "0",
    }, transport);
    app = await stack.start("all");
  });

  afterAll(async () => {
    await stack.stop();
    await receiver.stop();
  });

  test("an endpoint sleeping past its timeout does not hold up deliveries to ten healthy ones", async () => {
    receiver.respond("/slow", async (req) => {
      // Sleeps past the endpoint's 500 ms timeout; the worker hangs up first.
      await stall(req, 2000);
      return new Response("late");
    });
    const slow = await stack.subscribe(app, `${receiver.url}/slow`, "slow.*", { timeoutMs: 500 });
    for (let i = 0; i < 10; i++) await stack.subscribe(app, `${receiver.url}/healthy-${i}`, "fast.*");

    // Slow and healthy events interleaved in one batch, so they share commits and AMQP messages.
    const events = Array.from({ length: 60 }, (_, i) =>
      i % 3 === 0 ? { type: "slow.tick", data: { i } } : { type: "fast.tick", data: { i } },
    );
    const res = await stack.api(app, "POST", "/events/batch", { events });
    expect(res.status).toBe(202);

    const healthyTotal = 40 * 10;
    await pollUntil(() => receiver.received.filter((r) => r.path.startsWith("/healthy-")).length >= healthyTotal, {
      what: "healthy deliveries",
      timeoutMs: 20_000,
    });
    // By the time every healthy endpoint has all its events, the slow endpoint (20 jobs, 3 at a
    // time, 500 ms each) cannot have finished: healthy traffic did not queue behind it.
    const slowAttempts = await stack.sql`select count(*)::int as n from attempts where endpoint_id = ${slow.id}`;
    expect(slowAttempts[0]!.n).toBeLessThan(20);
    for (let i = 0; i < 10; i++) expect(receiver.on(`/healthy-${i}`)).toHaveLength(40);
    // Each of the slow endpoint's 3 slots starts a request at most once per 500 ms timeout, so no
    // 450 ms window can hold more than 3 arrivals. (Counting open requests at the receiver instead
    // overshoots: it sees the worker's hang-up a moment after the worker has reused the slot.)
    // Healthy traffic can finish before the slow endpoint's first three requests time out, so wait
    // for a second round before looking at the windows.
    const arrivals = await pollUntil(() => {
      const times = receiver.on("/slow").map((r) => r.receivedAt).sort((a, b) => a - b);
      return times.length > 3 && times;
    }, { what: "a second round of slow requests", timeoutMs: 10_000 });
    const busiestWindow = Math.max(...arrivals.map((t, i) => arrivals.filter((u, j) => j >= i && u < t + 450).length));
    expect(busiestWindow).toBeLessThanOrEqual(3);

    // And the slow endpoint's jobs are not lost: each gets its timed-out attempt recorded.
    const timedOut = await pollUntil(async () => {
      const rows = await stack.sql`
        select error_class from attempts where endpoint_id = ${slow.id}`;
      return rows.length >= 20 && rows;
    }, { what: "slow attempts recorded", timeoutMs: 30_000 });
    expect(new Set(timedOut.map((r) => r.errorClass))).toEqual(new Set(["timeout"]));
  });
});
