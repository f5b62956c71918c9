import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import amqp from "amqplib";
import { messageForSwept, sweepOutbox, takeDueJobs } from "../../core/outbox/sql.ts";
import { RabbitTransport } from "../../core/queue/rabbitmq/transport.ts";
import { topologyFor } from "../../core/queue/rabbitmq/topology.ts";
import { silentLogger } from "../../core/log.ts";
import { pollUntil } from "../support/poll.ts";
import { startReceiver, type Receiver } from "../support/receiver.ts";
import { createTestStack, describeEachTransport, TEST_TRANSPORTS, type TestStack } from "../support/stack.ts";

describeEachTransport("recovery", (transport) => {
  let stack: TestStack;
  let receiver: Receiver;

  beforeAll(async () => {
    receiver = startReceiver();
    stack = await createTestStack({ AMQP_PUBLISH_GRACE_MS: "300" }, transport);
  });

  afterAll(async () => {
    await stack.stop();
    await receiver.stop();
  });

  test("events committed while nothing could hand them on are delivered once a worker runs", async () => {
    // RabbitMQ: an API whose broker is unreachable commits and answers 202, but its fast-path publish
    // cannot happen — the state a crash between commit and publish leaves behind; the sweeper finds
    // the jobs. Postgres: the notification reaches no worker; the next worker finds the jobs.
    const api = await stack.start("api", { AMQP_URL: "amqp://guest:guest@127.0.0.1:1" });
    const ep = await stack.subscribe(api, `${receiver.url}/orphan`, "orphan.event");
    const accepted = await Promise.all(
      Array.from({ length: 20 }, (_, i) => stack.api(api, "POST", "/events", { type: "orphan.event", data: { i } })),
    );
    expect(accepted.map((r) => r.status)).toEqual(Array(20).fill(202));
    await api.stop();

    const pending = await stack.sql`select status from jobs where endpoint_id = ${ep.id}`;
    expect(pending.map((r) => r.status)).toEqual(Array(20).fill("pending"));
    expect(receiver.on("/orphan")).toHaveLength(0);

    // Dispatcher and worker come up with a working broker: the sweeper finds the pending jobs.
    const dispatcher = await stack.start("dispatcher");
    const worker = await stack.start("worker");
    await pollUntil(() => receiver.on("/orphan").length >= 20, { what: "orphaned events delivered", timeoutMs: 15_000 });
    const delivered = await pollUntil(async () => {
      const rows = await stack.sql`select status from jobs where endpoint_id = ${ep.id} and status = 'delivered'`;
      return rows.length === 20 && rows;
    }, { what: "jobs delivered" });
    expect(delivered).toHaveLength(20);
    const seen = receiver.on("/orphan").map((r) => JSON.parse(r.body).data.i).sort((a, b) => a - b);
    expect(seen).toEqual(Array.from({ length: 20 }, (_, i) => i));
    await dispatcher.stop();
    await worker.stop();
  });

  if (transport === "postgres")
    test("jobs a worker took but never claimed (it died, or the answer was lost) are offered again after the take lease", async () => {
      const api = await stack.start("api");
      await stack.subscribe(api, `${receiver.url}/lost-take`, "lost.take");
      const accepted = await Promise.all(
        Array.from({ length: 5 }, (_, i) => stack.api(api, "POST", "/events", { type: "lost.take", data: { i } })),
      );
      const jobIds = accepted.map((r) => r.body.jobs[0].id as string);
      // Take them as a worker would, and drop the answer.
      const taken = (await takeDueJobs(stack.sql, { limit: 100, leaseMs: 1500 })).jobs;
      expect(taken.map((j) => j.id)).toEqual(expect.arrayContaining(jobIds));
      const worker = await stack.start("worker");
      const [held] = await stack.sql<{ n: number }[]>`select count(*)::int as n from outbox where job_id = any (${jobIds}) and due_at > now()`;
      expect(held!.n).toBe(5);
      await pollUntil(() => receiver.on("/lost-take").length === 5, { what: "taken jobs delivered after the lease", timeoutMs: 10_000 });
      for (const r of [worker, api]) await r.stop();
    });

  if (transport === "postgres")
    test("two workers share the outbox: every job is delivered once", async () => {
      const api = await stack.start("api");
      await stack.subscribe(api, `${receiver.url}/shared`, "shared.event");
      const workers = [await stack.start("worker"), await stack.start("worker")];
      const accepted = await Promise.all(
        Array.from({ length: 60 }, (_, i) => stack.api(api, "POST", "/events", { type: "shared.event", data: { i } })),
      );
      expect(accepted.map((r) => r.status)).toEqual(Array(60).fill(202));
      await pollUntil(async () => {
        const [row] = await stack.sql<{ n: number }[]>`select count(*)::int as n from jobs where event_type = 'shared.event' and status = 'delivered'`;
        return row!.n === 60;
      }, { what: "every job delivered", timeoutMs: 15_000 });
      const ids = receiver.on("/shared").map((r) => r.headers["webhook-id"]);
      expect(new Set(ids).size).toBe(60);
      expect(ids).toHaveLength(60);
      const [left] = await stack.sql<{ n: number }[]>`select count(*)::int as n from outbox`;
      expect(left!.n).toBe(0); // a recorded outcome takes the job's lease entry with it
      for (const w of [...workers, api]) await w.stop();
    });
});

describe.if(TEST_TRANSPORTS.includes("rabbitmq"))("RabbitMQ messages [rabbitmq]", () => {
  let stack: TestStack;
  let receiver: Receiver;

  beforeAll(async () => {
    receiver = startReceiver();
    stack = await createTestStack({ AMQP_PUBLISH_GRACE_MS: "300" }, "rabbitmq");
  });

  afterAll(async () => {
    await stack.stop();
    await receiver.stop();
  });

  test("a job published twice is delivered once", async () => {
    const api = await stack.start("api", { AMQP_URL: "amqp://guest:guest@127.0.0.1:1" });
    await stack.subscribe(api, `${receiver.url}/twice`, "twice.event");
    const event = await stack.api(api, "POST", "/events", { type: "twice.event", data: { once: true } });
    expect(event.status).toBe(202);
    await api.stop();

    // Publish the same job twice by hand, the way a dispatcher that died after publishing but
    // before marking would, and again after it restarts.
    await Bun.sleep(350); // past AMQP_PUBLISH_GRACE_MS so the job is due
    const config = stack.config();
    const rabbit = new RabbitTransport({ ...config.queue, AMQP_URL: config.queue.AMQP_URL! }, stack.sql, silentLogger);
    await rabbit.start(5000);
    const swept = await sweepOutbox(stack.sql, 10, async (jobs) => {
      const messages = jobs.filter((j) => j.eventId === event.body.id).map(messageForSwept);
      await rabbit.send(messages, "sweep");
      await rabbit.send(messages, "sweep");
    });
    const due = swept.find((j) => j.eventId === event.body.id);
    expect(due).toMatchObject({ reason: "publish", publishable: true });
    await rabbit.stop();
    // Only a worker: no dispatcher that could publish the job a third time.
    await stack.start("worker");

    await pollUntil(async () => {
      const [job] = await stack.sql`select status from jobs where id = ${due!.id}`;
      return job?.status === "delivered";
    }, { what: "job delivered" });
    await Bun.sleep(300);
    expect(receiver.on("/twice")).toHaveLength(1);
    const attempts = await stack.sql`select attempt_number from attempts where job_id = ${due!.id}`;
    expect(attempts).toHaveLength(1);
  });

  test("a message no worker can read is dead-lettered, not retried forever", async () => {
    await stack.start("worker");
    const config = stack.config();
    const topology = topologyFor(config.queue);
    const connection = await amqp.connect(config.queue.AMQP_URL!);
    const channel = await connection.createConfirmChannel();
    try {
      channel.publish(topology.exchange, "0", Buffer.from("{not a delivery message"), { persistent: true });
      channel.publish(topology.exchange, "0", Buffer.from(JSON.stringify({ v: 1, jobs: [{ jobId: 7 }] })), { persistent: true });
      await channel.waitForConfirms();
      await pollUntil(async () => (await channel.checkQueue(topology.deadQueue)).messageCount === 2, { what: "two dead-lettered messages" });
      const dead = [await channel.get(topology.deadQueue, { noAck: true }), await channel.get(topology.deadQueue, { noAck: true })];
      expect(dead.map((m) => (m ? m.content.toString() : "")).sort()).toEqual(['{"v":1,"jobs":[{"jobId":7}]}', "{not a delivery message"]);
    } finally {
      await channel.close();
      await connection.close();
    }
  });
});
