import { afterAll, beforeAll, expect, test } from "bun:test";
import amqp from "amqplib";
import { publishJobs } from "../../core/outbox/publish.ts";
import { sweepOutbox } from "../../core/outbox/sql.ts";
import { BrokerConnection } from "../../core/queue/connection.ts";
import { ConfirmPublisher } from "../../core/queue/publisher.ts";
import { topologyFor } from "../../core/queue/topology.ts";
import { silentLogger } from "../../core/log.ts";
import { toJobMessage } from "../../dispatcher/sweeper.ts";
import { pollUntil } from "../support/poll.ts";
import { startReceiver, type Receiver } from "../support/receiver.ts";
import { createTestStack, type TestStack } from "../support/stack.ts";

let stack: TestStack;
let receiver: Receiver;

beforeAll(async () => {
  receiver = startReceiver();
  stack = await createTestStack({ DISPATCH_GRACE_MS: "300" });
});

afterAll(async () => {
  await stack.stop();
  await receiver.stop();
});

test("an event committed but never published (the publisher died) is still delivered by the sweeper", async () => {
  // An API whose broker is unreachable: it commits and answers 202, but its fast-path publish
  // cannot happen — the state a crash between commit and publish leaves behind.
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

test("a job published twice is delivered once", async () => {
  const api = await stack.start("api", { AMQP_URL: "amqp://guest:guest@127.0.0.1:1" });
  await stack.subscribe(api, `${receiver.url}/twice`, "twice.event");
  const event = await stack.api(api, "POST", "/events", { type: "twice.event", data: { once: true } });
  expect(event.status).toBe(202);
  await api.stop();

  // Publish the same job twice by hand, the way a dispatcher that died after publishing but
  // before marking would, and again after it restarts.
  await Bun.sleep(350); // past DISPATCH_GRACE_MS so the job is due
  const config = stack.config();
  const broker = new BrokerConnection(config.amqp.AMQP_URL, silentLogger);
  const publisher = new ConfirmPublisher(broker, topologyFor(config.amqp));
  await publisher.start();
  await broker.start();
  const options = { queueCount: config.amqp.AMQP_WORK_QUEUES, jobsPerMessage: 10, path: "sweep" as const };
  const swept = await sweepOutbox(stack.sql, 10, async (jobs) => {
    const messages = jobs.filter((j) => j.eventId === event.body.id).map(toJobMessage);
    await publishJobs(publisher, messages, options);
    await publishJobs(publisher, messages, options);
  });
  const due = swept.find((j) => j.eventId === event.body.id);
  expect(due).toMatchObject({ reason: "publish", publishable: true });
  await publisher.close();
  await broker.close();
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
  const topology = topologyFor(config.amqp);
  const connection = await amqp.connect(config.amqp.AMQP_URL);
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
