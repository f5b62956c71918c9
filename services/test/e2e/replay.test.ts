import { afterAll, beforeAll, expect, test } from "bun:test";
import amqp, { type ChannelModel } from "amqplib";
import type { DeadLetter } from "../../core/outbox/sql.ts";
import type { RunningRoles } from "../../runtime.ts";
import { pollUntil } from "../support/poll.ts";
import { startReceiver, type Receiver } from "../support/receiver.ts";
import { createTestStack, describeEachTransport, TEST_AMQP_URL, type TestStack } from "../support/stack.ts";

/**
 * Recovery end to end: a receiver fails until its jobs are dead (announced on the dead-letter
 * exchange with RabbitMQ), heals, and an endpoint recovery delivers every one of them through the
 * normal path, each job's attempts continuing its own history with its retry policy run afresh.
 */
describeEachTransport("replay and recovery", (transport) => {
  let stack: TestStack;
  let app: RunningRoles;
  let receiver: Receiver;
  let broker: ChannelModel | undefined;
  const notices: { routingKey: string; letter: DeadLetter; messageId: string }[] = [];

  beforeAll(async () => {
    receiver = startReceiver();
    // Three attempts per run; operations replay two jobs per step, 50 a second. The circuit breaker
    // is off: its holds are not what this file is about (they apply to replays as to any delivery).
    stack = await createTestStack(
      {
        RETRY_SCHEDULE: "100ms,100ms",
        OPERATION_BATCH_SIZE: "2",
        OPERATION_RATE_PER_SECOND: "50",
        CIRCUIT_FAILURE_THRESHOLD: "0",
        CIRCUIT_FAILURE_RATIO: "0",
      },
      transport,
    );
    app = await stack.start("all");
    if (transport === "rabbitmq") {
      // A consumer's own queue on the dead-letter exchange, as the README tells consumers to bind.
      const prefix = stack.env.AMQP_PREFIX!;
      broker = await amqp.connect(TEST_AMQP_URL);
      const channel = await broker.createChannel();
      const { queue } = await channel.assertQueue(`${prefix}.test-dead-letters`, { exclusive: true, autoDelete: true });
      await channel.bindQueue(queue, `${prefix}.dead-letters`, "recover.#");
      await channel.consume(queue, (msg) => {
        if (msg) notices.push({ routingKey: msg.fields.routingKey, letter: JSON.parse(msg.content.toString()), messageId: msg.properties.messageId });
      }, { noAck: true });
    }
  });

  afterAll(async () => {
    await broker?.close();
    await stack.stop();
    await receiver.stop();
  });

  const jobOf = async (id: string) => (await stack.api(app, "GET", `/jobs/${id}`)).body;

  test("jobs die against a failing receiver; once it heals, recover delivers them all, attempts continuing", async () => {
    const since = new Date(Date.now() - 1000).toISOString();
    // Before the recovery: every request fails. After it: each job fails twice more, then succeeds,
    // which a job only survives with a fresh retry budget (three attempts a run).
    let recovering = false;
    const afterRecovery = new Map<string, number>();
    receiver.respond("/recover", (req) => {
      if (!recovering) return new Response("down", { status: 500 });
      const id = req.headers["webhook-id"]!;
      const n = (afterRecovery.get(id) ?? 0) + 1;
      afterRecovery.set(id, n);
      return n <= 2 ? new Response("still warming up", { status: 503 }) : new Response("ok");
    });
    const ep = await stack.subscribe(app, `${receiver.url}/recover`, "recover.*");
    const jobs: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await stack.api(app, "POST", "/events", { type: "recover.thing", data: { i } });
      expect(res.status).toBe(202);
      jobs.push(res.body.jobs[0].id);
    }

    const dead = await pollUntil(async () => {
      const res = await stack.api(app, "GET", `/jobs?status=dead&endpointId=${ep.id}`);
      return res.body.data.length === 5 && res.body.data;
    }, { what: "five dead jobs", timeoutMs: 20_000 });
    for (const job of dead) expect(job).toMatchObject({ status: "dead", endReason: "retries_exhausted", attemptCount: 3 });

    if (transport === "rabbitmq") {
      await pollUntil(() => notices.length >= 5, { what: "five dead-letter notices" });
      const [appRow] = await stack.sql<{ appId: string }[]>`select app_id from endpoints where id = ${ep.id}`;
      expect(notices.map((n) => n.letter.jobId).sort()).toEqual([...jobs].sort());
      for (const { routingKey, letter, messageId } of notices) {
        expect(routingKey).toBe("recover.thing");
        expect(messageId).toBe(letter.jobId);
        expect(letter).toMatchObject({ endpointId: ep.id, appId: appRow!.appId, eventType: "recover.thing", endReason: "retries_exhausted", attemptCount: 3 });
        expect(Object.keys(letter).sort()).toEqual(["appId", "attemptCount", "deadAt", "endReason", "endpointId", "eventId", "eventType", "jobId"]);
      }
    } else {
      // The Postgres transport has no exchange to tell: no notice is owed.
      const [row] = await stack.sql<{ n: number }[]>`select count(*)::int as n from outbox where reason = 'dead_letter'`;
      expect(row!.n).toBe(0);
    }

    recovering = true;
    const started = await stack.api(app, "POST", `/endpoints/${ep.id}/recover`, { since });
    expect(started.status).toBe(202);
    expect(started.body).toMatchObject({ kind: "recover_endpoint", state: "queued" });
    const op = await pollUntil(async () => {
      const res = await stack.api(app, "GET", `/operations/${started.body.id}`);
      return res.body.state === "completed" && res.body;
    }, { what: "recovery completed", timeoutMs: 15_000 });
    expect(op).toMatchObject({ total: 5, done: 5, failed: 0 });

    for (const id of jobs) {
      const job = await pollUntil(async () => {
        const body = await jobOf(id);
        return body.status === "delivered" && body;
      }, { what: `job ${id} delivered`, timeoutMs: 20_000 });
      expect(job.attemptCount).toBe(6);
      expect(job.endReason).toBeNull();
      expect(job.attempts.map((a: { attemptNumber: number; responseStatus: number }) => [a.attemptNumber, a.responseStatus])).toEqual([
        [1, 500], [2, 500], [3, 500], [4, 503], [5, 503], [6, 200],
      ]);
    }
    // One webhook-id per job across both runs: receivers deduplicate a replay like a retry.
    const got = receiver.on("/recover");
    expect(got).toHaveLength(30);
    expect(new Set(got.map((r) => r.headers["webhook-id"]))).toEqual(new Set(jobs));
    if (transport === "rabbitmq") {
      await Bun.sleep(300);
      expect(notices).toHaveLength(5);
    }
  });

  test("an event replay of `all` sends a delivered event again, as the same job", async () => {
    const ep = await stack.subscribe(app, `${receiver.url}/again`, "again.thing");
    const event = await stack.api(app, "POST", "/events", { type: "again.thing", data: { once: "more" } });
    const jobId = event.body.jobs[0].id;
    await pollUntil(async () => (await jobOf(jobId)).status === "delivered", { what: "first delivery" });

    const undelivered = await stack.api(app, "POST", `/events/${event.body.id}/replay`);
    await pollUntil(async () => (await stack.api(app, "GET", `/operations/${undelivered.body.id}`)).body.state === "completed", { what: "no-op replay" });
    expect((await stack.api(app, "GET", `/operations/${undelivered.body.id}`)).body).toMatchObject({ total: 0, done: 0 });

    const all = await stack.api(app, "POST", `/events/${event.body.id}/replay`, { only: "all" });
    expect(all.status).toBe(202);
    await pollUntil(() => receiver.on("/again").length === 2, { what: "second delivery" });
    const job = await pollUntil(async () => {
      const body = await jobOf(jobId);
      return body.status === "delivered" && body.attemptCount === 2 && body;
    }, { what: "job delivered again" });
    expect(job.attempts.map((a: { attemptNumber: number }) => a.attemptNumber)).toEqual([1, 2]);
    const [first, second] = receiver.on("/again");
    expect(second!.headers["webhook-id"]).toBe(first!.headers["webhook-id"]);
    expect(second!.body).toBe(first!.body);
    expect(ep.id).toStartWith("ep_");
  });

  test("a single job replays through POST /jobs/:id/replay", async () => {
    let calls = 0;
    receiver.respond("/single", () => (++calls === 1 ? new Response("gone for now", { status: 400 }) : new Response("ok")));
    await stack.subscribe(app, `${receiver.url}/single`, "single.thing", { retryPolicy: { type: "constant", delayMs: 50, maxAttempts: 1 } });
    const event = await stack.api(app, "POST", "/events", { type: "single.thing", data: {} });
    const jobId = event.body.jobs[0].id;
    await pollUntil(async () => (await jobOf(jobId)).status === "dead", { what: "dead after one attempt" });
    expect((await stack.api(app, "POST", `/jobs/${jobId}/replay`)).status).toBe(202);
    const job = await pollUntil(async () => {
      const body = await jobOf(jobId);
      return body.status === "delivered" && body;
    }, { what: "replayed delivery" });
    expect(job.attempts.map((a: { responseStatus: number }) => a.responseStatus)).toEqual([400, 200]);
  });
});

