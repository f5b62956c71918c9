import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { OUTBOX_CHANNEL } from "../../core/outbox/sql.ts";
import { decodeDeliveryMessage, type JobMessage } from "../../core/queue/messages.ts";
import { HANDOVER_PATH, handoverTokens } from "../../core/queue/handover.ts";
import type { RunningRoles } from "../../runtime.ts";
import { captureLog, type LogLine } from "../support/log.ts";
import { pollUntil } from "../support/poll.ts";
import { startReceiver, type Receiver } from "../support/receiver.ts";
import { createTestStack, describeEachTransport, type TestStack } from "../support/stack.ts";

/**
 * The hand-over between separate processes: a worker connected to an API (QUEUE_HANDOVER_URL) gets
 * the jobs that API's commits claim for it over the connection, with no NOTIFY and no take on the
 * Postgres transport, and no publish and no claim statement on RabbitMQ; a connection without the
 * token is refused; and jobs claimed for a worker that went away are delivered by another once
 * their claims lapse (taken again, or published again by the dispatcher).
 */

describeEachTransport("a worker connected to the API for the hand-over", (transport) => {
  let stack: TestStack;
  let receiver: Receiver;
  let api: RunningRoles;
  let apiLines: LogLine[] = [];
  const TYPE = "handover.remote";

  beforeAll(async () => {
    receiver = startReceiver();
    // Short leases, so a claim left behind lapses within the test's time.
    stack = await createTestStack({ WORKER_LEASE_MS: "3000" }, transport);
    const captured = captureLog();
    apiLines = captured.lines;
    api = await stack.start("api", {}, captured.log);
    await stack.subscribe(api, `${receiver.url}/remote`, TYPE);
  });
  afterAll(async () => {
    await stack.stop();
    await receiver.stop();
  }, 90_000);

  const workersLeft = () => apiLines.filter((l) => l.msg === "a worker left the hand-over").length;

  /** Every notification on the outbox channel while `run` runs, up to a fence sent after it. */
  async function notificationsDuring(run: () => Promise<void>): Promise<string[]> {
    const heard: string[] = [];
    const listening = await stack.sql.listen(OUTBOX_CHANNEL, (payload) => heard.push(payload));
    try {
      await run();
      await stack.sql`select pg_notify(${OUTBOX_CHANNEL}, 'fence')`;
      await pollUntil(() => heard.includes("fence"), { timeoutMs: 5000 });
      return heard.filter((payload) => payload !== "fence");
    } finally {
      await listening.unlisten();
    }
  }

  const post = async (n: number, to = api) => {
    const response = await stack.api(to, "POST", "/events", { type: TYPE, data: { n } });
    expect(response.status).toBe(202);
    return response.body.id as string;
  };

    test("gets the API's new jobs over the connection: delivered, signed, with no NOTIFY and no broker", async () => {
      // On RabbitMQ, through an API that cannot reach the broker: only the hand-over can carry its jobs.
      const noBroker = transport === "rabbitmq" ? await stack.start("api", { AMQP_URL: "amqp://guest:guest@127.0.0.1:1" }) : null;
      const from = noBroker ?? api;
      const workerLog = captureLog();
      const worker = await stack.start("worker", { QUEUE_HANDOVER_URL: from.url }, workerLog.log);
      try {
        // It logs the connection just before it sends its first grant; give that frame a moment.
        await pollUntil(() => workerLog.lines.some((l) => l.msg === "connected for the hand-over"), { timeoutMs: 5000 });
        await Bun.sleep(100);
        const ids: string[] = [];
        const notified = await notificationsDuring(async () => {
          for (let i = 0; i < 5; i++) ids.push(await post(i, from));
          await pollUntil(() => receiver.on("/remote").length >= 5, { timeoutMs: 10_000 });
        });
        expect(notified).toEqual([]);
        const delivered = receiver.on("/remote").map((r) => JSON.parse(r.body).id);
        expect(delivered.sort()).toEqual([...ids].sort());
        expect(receiver.on("/remote").every((r) => r.headers["webhook-signature"]?.startsWith("v1,"))).toBe(true);
        // Each job recorded once, delivered: the outcomes are written in batches after the receipt.
        const jobs = await pollUntil(
          async () => {
            const rows = await stack.sql<{ status: string; attempts: number }[]>`
              select j.status, (select count(*)::int from attempts a where a.job_id = j.id) as attempts
              from jobs j where j.event_id = any (${ids}::text[])`;
            return rows.every((j) => j.status === "delivered") && rows;
          },
          { timeoutMs: 5000, what: "the outcomes recorded" },
        );
        expect(jobs).toHaveLength(5);
        expect(jobs.every((j) => j.attempts === 1)).toBe(true);
      } finally {
        const leftBefore = workersLeft();
        await worker.stop();
        if (noBroker) await noBroker.stop();
        else await pollUntil(() => workersLeft() > leftBefore, { timeoutMs: 5000 });
      }
    });

    test("a connection without the workers' token is refused, naming what it needs", async () => {
      const url = `${api.url}${HANDOVER_PATH}`;
      const upgrade = { connection: "Upgrade", upgrade: "websocket", "sec-websocket-version": "13", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==" };
      for (const authorization of [undefined, "Bearer not-the-token", `Bearer ${stack.appKey}`]) {
        const response = await fetch(url, { headers: authorization ? { ...upgrade, authorization } : upgrade });
        expect(response.status).toBe(401);
        expect((await response.json()).code).toBe("unauthorized");
      }
    });

    test("jobs claimed for a worker that went away are delivered by another once the claims lapse", async () => {
      // A worker that grants room, takes one message and disappears without handling it.
      const token = handoverTokens(stack.config().secrets)[0]!;
      const socket = new WebSocket(`${api.url.replace("http", "ws")}${HANDOVER_PATH}`, { headers: { authorization: `Bearer ${token}` } } as unknown as string[]);
      socket.binaryType = "arraybuffer";
      const taken: JobMessage[] = [];
      socket.onmessage = (event) => taken.push(...(decodeDeliveryMessage(Buffer.from(event.data as ArrayBuffer))?.jobs ?? []));
      await new Promise((resolve) => (socket.onopen = resolve));
      socket.send(JSON.stringify({ granted: 1 }));
      await Bun.sleep(100);
      const before = receiver.on("/remote").length;
      const id = await post(100);
      await pollUntil(() => taken.length === 1, { timeoutMs: 5000 });
      expect(taken[0]!.eventId).toBe(id);
      socket.close();
      const [claimed] = await stack.sql<{ status: string; reason: string }[]>`
        select j.status, o.reason from jobs j join outbox o on o.job_id = j.id where j.event_id = ${id}`;
      expect(claimed).toEqual({ status: "delivering", reason: "lease" });
      // Its room used up, the next event's job went the usual way: it waits for a take, or in the broker.
      const second = await post(101);
      const [pending] = await stack.sql<{ status: string }[]>`select status from jobs where event_id = ${second}`;
      expect(pending!.status).toBe("pending");
      // A worker with no hand-over delivers both: the second at once, the first once its lease lapsed
      // (on RabbitMQ the dispatcher publishes it then).
      const started = Date.now();
      const worker = await stack.start("worker");
      const dispatcher = transport === "rabbitmq" ? await stack.start("dispatcher") : null;
      try {
        await pollUntil(() => receiver.on("/remote").length >= before + 2, { timeoutMs: 15_000 });
        const delivered = receiver.on("/remote").slice(before).map((r) => JSON.parse(r.body).id);
        expect(delivered.sort()).toEqual([id, second].sort());
        expect(Date.now() - started).toBeGreaterThan(1000); // the first waited for its claim to lapse
      } finally {
        await dispatcher?.stop();
        await worker.stop();
      }
    });

    test("an API that stops closes the hand-over first, so it stops promptly; its worker goes on the usual way", async () => {
      const other = captureLog();
      const second = await stack.start("api", {}, other.log);
      const worker = await stack.start("worker", { QUEUE_HANDOVER_URL: second.url });
      try {
        await pollUntil(() => other.lines.some((l) => l.msg === "a worker connected for the hand-over"), { timeoutMs: 5000 });
        const started = Date.now();
        await second.stop();
        expect(Date.now() - started).toBeLessThan(3000);
        const before = receiver.on("/remote").length;
        const id = await post(200);
        await pollUntil(() => receiver.on("/remote").length > before, { timeoutMs: 5000 });
        expect(JSON.parse(receiver.on("/remote").at(-1)!.body).id).toBe(id);
      } finally {
        await worker.stop();
      }
    });
});
