import { afterAll, beforeAll, expect, test } from "bun:test";
import type { RunningRoles } from "../../runtime.ts";
import { pollUntil } from "../support/poll.ts";
import { startReceiver, type Receiver } from "../support/receiver.ts";
import { createTestStack, describeEachTransport, type TestStack } from "../support/stack.ts";

// TTL end to end, through an endpoint's ttlSeconds: a job not delivered in time ends `expired`
// (reason `ttl`) and is never sent after its expiry, whether it was failing, waiting for a retry
// due after the expiry, or held by the endpoint's rate limit.

describeEachTransport("ttl", (transport) => {
  let stack: TestStack;
  let app: RunningRoles;
  let receiver: Receiver;

  beforeAll(async () => {
    receiver = startReceiver();
    // Fast retries, more of them than fit in a TTL of 2 s; the circuit breaker off, so failing
    // jobs are retried rather than held by an open circuit (whose hold is 30 s at least).
    stack = await createTestStack(
      { RETRY_SCHEDULE: Array(30).fill("250ms").join(","), RETRY_JITTER: "0", CIRCUIT_FAILURE_THRESHOLD: "0", CIRCUIT_FAILURE_RATIO: "0" },
      transport,
    );
    app = await stack.start("all");
  });

  afterAll(async () => {
    await stack.stop();
    await receiver.stop();
  });

  interface JobState {
    id: string;
    status: string;
    endReason: string | null;
    attemptCount: number;
    expiresAt: Date;
    updatedAt: Date;
  }

  async function publish(type: string, count: number) {
    const res = await stack.api(app, "POST", "/events/batch", { events: Array.from({ length: count }, (_, n) => ({ type, data: { n } })) });
    expect(res.status).toBe(202);
  }

  /** The endpoint's jobs once none is live any more. */
  function ended(endpointId: string, timeoutMs = 10_000): Promise<JobState[]> {
    return pollUntil(
      async () => {
        const rows = await stack.sql<JobState[]>`
          select id, status, end_reason, attempt_count, expires_at, updated_at from jobs where endpoint_id = ${endpointId} order by id`;
        return rows.length > 0 && rows.every((j) => !["pending", "delivering", "scheduled"].includes(j.status)) && rows;
      },
      { timeoutMs, what: "every job ended" },
    );
  }

  async function attemptsOf(endpointId: string) {
    return stack.sql<{ jobId: string; createdAt: Date }[]>`select job_id, created_at from attempts where endpoint_id = ${endpointId}`;
  }

  test("a receiver down past the TTL: jobs end expired (ttl), attempted only before expiry, and nothing is sent once it is back", async () => {
    let down = true;
    receiver.respond("/down", () => (down ? new Response("down", { status: 503 }) : new Response("ok")));
    const ep = await stack.subscribe(app, `${receiver.url}/down`, "ttl.down", { ttlSeconds: 2 });
    await publish("ttl.down", 3);
    const jobs = await ended(ep.id);
    down = false;
    const backAt = Date.now();
    expect(jobs.map((j) => [j.status, j.endReason])).toEqual(Array(3).fill(["expired", "ttl"]));
    // Retried while the TTL allowed: several attempts each, every one before the expiry.
    for (const job of jobs) expect(job.attemptCount).toBeGreaterThanOrEqual(3);
    const attempts = await attemptsOf(ep.id);
    const expiry = new Map(jobs.map((j) => [j.id, j.expiresAt.getTime()]));
    expect(attempts.length).toBe(jobs.reduce((n, j) => n + j.attemptCount, 0));
    for (const a of attempts) expect(a.createdAt.getTime()).toBeLessThan(expiry.get(a.jobId)!);
    // Ended within a retry's delay of the expiry: the last retry that fits, then expired at once.
    for (const job of jobs) expect(job.updatedAt.getTime()).toBeLessThanOrEqual(job.expiresAt.getTime() + 1000);
    await Bun.sleep(1500);
    expect(receiver.on("/down").filter((r) => r.receivedAt >= backAt)).toEqual([]);
    const latestExpiry = Math.max(...expiry.values());
    for (const r of receiver.on("/down")) expect(r.receivedAt).toBeLessThan(latestExpiry + 100);
  });

  test("a retry due after the expiry ends the job expired at once, not when it would have been due", async () => {
    receiver.respond("/late-retry", () => new Response("no", { status: 500 }));
    const ep = await stack.subscribe(app, `${receiver.url}/late-retry`, "ttl.lateretry", {
      ttlSeconds: 2,
      retryPolicy: { type: "constant", delayMs: 5000, maxAttempts: 5 },
    });
    await publish("ttl.lateretry", 1);
    const [job] = await ended(ep.id, 4000);
    expect(job).toMatchObject({ status: "expired", endReason: "ttl", attemptCount: 1 });
    expect(job!.updatedAt.getTime()).toBeLessThan(job!.expiresAt.getTime());
    expect(receiver.on("/late-retry")).toHaveLength(1);
  });

  test("an event's own ttlSeconds wins over its endpoint's", async () => {
    receiver.respond("/event-ttl", () => new Response("down", { status: 503 }));
    const ep = await stack.subscribe(app, `${receiver.url}/event-ttl`, "ttl.event", { ttlSeconds: 3600 });
    const res = await stack.api(app, "POST", "/events", { type: "ttl.event", data: {}, ttlSeconds: 1 });
    expect(res.status).toBe(202);
    const [job] = await ended(ep.id, 5000);
    expect(job).toMatchObject({ status: "expired", endReason: "ttl" });
    expect(job!.expiresAt.getTime() - new Date(res.body.timestamp).getTime()).toBe(1000);
  });

  test("jobs held by the rate limit past their TTL end expired without an attempt", async () => {
    const ep = await stack.subscribe(app, `${receiver.url}/held`, "ttl.held", { ttlSeconds: 2, rateLimitPerSecond: 2 });
    await publish("ttl.held", 20);
    const jobs = await ended(ep.id);
    const delivered = jobs.filter((j) => j.status === "delivered");
    const expired = jobs.filter((j) => j.status === "expired");
    // 2/s for 2 s, and the bucket's burst: a handful delivered, the rest expired.
    expect(delivered.length).toBeGreaterThanOrEqual(2);
    expect(delivered.length).toBeLessThanOrEqual(6);
    expect(delivered.length + expired.length).toBe(20);
    for (const job of expired) expect(job).toMatchObject({ endReason: "ttl", attemptCount: 0 });
    // Held jobs come back when their TTL runs out, rather than at their place in a long line.
    for (const job of expired) expect(job.updatedAt.getTime()).toBeLessThan(job.expiresAt.getTime() + 1500);
    expect((await attemptsOf(ep.id)).length).toBe(delivered.length);
    expect(receiver.on("/held")).toHaveLength(delivered.length);
    const expiresAt = Math.min(...jobs.map((j) => j.expiresAt.getTime()));
    for (const r of receiver.on("/held")) expect(r.receivedAt).toBeLessThan(expiresAt + 100);
  });
});
