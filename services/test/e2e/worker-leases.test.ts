import { afterAll, beforeAll, expect, test } from "bun:test";
import { createSql } from "../../core/db/client.ts";
import { silentLogger } from "../../core/log.ts";
import { LeaseKeeper } from "../../worker/delivery/leases.ts";
import { pollUntil } from "../support/poll.ts";
import { stall, startReceiver, type Receiver } from "../support/receiver.ts";
import { createTestStack, describeEachTransport, type TestStack } from "../support/stack.ts";

// The promise the leases make: a SIGKILLed worker's in-flight jobs are delivered within this of the kill.
const RECOVERY_BOUND_MS = 15_000;

describeEachTransport("worker leases", (transport) => {
  let stack: TestStack;
  let receiver: Receiver;
  const workers: ReturnType<typeof Bun.spawn>[] = [];

  beforeAll(async () => {
    receiver = startReceiver();
    // The product's defaults for everything the recovery time is made of (WORKER_LEASE_MS is left
    // unset), not the test stack's quicker sweeps and polls.
    stack = await createTestStack({ DISPATCH_INTERVAL_MS: "500", QUEUE_POLL_INTERVAL_MS: "1000" }, transport);
  });

  afterAll(async () => {
    for (const w of workers) w.kill("SIGKILL");
    await stack.stop();
    await receiver.stop();
  });

  const spawnWorker = (env: Record<string, string> = {}) => {
    const worker = Bun.spawn([process.execPath, "services/main.ts", "worker"], {
      env: { ...process.env, ...stack.env, ...env },
      stdout: "ignore",
      stderr: "ignore",
    });
    workers.push(worker);
    return worker;
  };

  const post = (api: Parameters<TestStack["api"]>[0], type: string, count: number) =>
    Promise.all(Array.from({ length: count }, (_, i) => stack.api(api, "POST", "/events", { type, data: { i } })));

  test("a SIGKILLed worker's in-flight jobs are delivered by the other worker within 15 s", async () => {
    const api = await stack.start("api");
    const dispatcher = await stack.start("dispatcher");
    let killedAt = 0;
    // A slow receiver: requests of the doomed worker are held open until it dies; afterwards every
    // delivery still takes a second. The endpoint's timeout is long, so only the lease brings them back.
    receiver.respond("/slow", async (req) => {
      await stall(req, killedAt ? 1000 : 60_000);
      return new Response("ok");
    });
    await stack.subscribe(api, `${receiver.url}/slow`, "lease.kill", { timeoutMs: 60_000 });

    const doomed = spawnWorker();
    const first = await post(api, "lease.kill", 10);
    expect(first.map((r) => r.status)).toEqual(Array(10).fill(202));
    await pollUntil(() => receiver.on("/slow").length >= 10, { what: "the first worker delivering every job", timeoutMs: 15_000 });
    spawnWorker();
    await post(api, "lease.kill", 5);
    await Bun.sleep(1000);

    const inFlight = await stack.sql<{ id: string }[]>`select id from jobs where event_type = 'lease.kill' and status = 'delivering'`;
    expect(inFlight.length).toBeGreaterThanOrEqual(10);
    doomed.kill("SIGKILL");
    await doomed.exited;
    killedAt = Date.now();

    const ids = inFlight.map((r) => r.id);
    await pollUntil(async () => {
      const [row] = await stack.sql<{ n: number }[]>`select count(*)::int as n from jobs where id = any (${ids}) and status = 'delivered'`;
      return row!.n === ids.length;
    }, { what: "every job in flight at the kill delivered", timeoutMs: RECOVERY_BOUND_MS + 5000, intervalMs: 100 });
    const [last] = await stack.sql<{ at: Date }[]>`select max(delivered_at) as at from jobs where id = any (${ids})`;
    const recoveryMs = last!.at.getTime() - killedAt;
    console.log(`[${transport}] in-flight jobs of the killed worker delivered ${recoveryMs} ms after the kill`);
    expect(recoveryMs).toBeLessThan(RECOVERY_BOUND_MS);
    // The killed worker's jobs went out twice (the cut-off try and the real one), under one webhook-id.
    const twice = ids.filter((id) => receiver.on("/slow").filter((r) => r.headers["webhook-id"] === id).length === 2);
    expect(twice.length).toBeGreaterThanOrEqual(10);
    for (const w of workers) w.kill("SIGKILL");
    await Promise.all([api.stop(), dispatcher.stop()]);
  }, 60_000);

  test("a live worker renews its claims: a delivery slower than the lease is made once", async () => {
    // A 3 s lease (the least WORKER_LEASE_MS allows) against a 7 s delivery, with a second worker
    // ready: without renewals the claim would lapse twice over.
    const env = { WORKER_LEASE_MS: "3000", QUEUE_POLL_INTERVAL_MS: "100", DISPATCH_INTERVAL_MS: "100" };
    const api = await stack.start("api", env);
    await stack.start("dispatcher", env);
    receiver.respond("/renewed", async (req) => {
      await stall(req, 7000);
      return new Response("ok");
    });
    await stack.subscribe(api, `${receiver.url}/renewed`, "lease.renew", { timeoutMs: 30_000 });
    await stack.start("worker", env);
    await stack.start("worker", env);
    const [event] = await post(api, "lease.renew", 1);
    const jobId = event!.body.jobs[0].id as string;
    await pollUntil(() => receiver.on("/renewed").length === 1, { what: "the delivery under way" });
    const [claimed] = await stack.sql<{ at: Date }[]>`select next_attempt_at as at from jobs where id = ${jobId}`;
    await Bun.sleep(3500);
    const [renewed] = await stack.sql<{ status: string; at: Date }[]>`select status, next_attempt_at as at from jobs where id = ${jobId}`;
    expect(renewed!.status).toBe("delivering");
    expect(renewed!.at.getTime()).toBeGreaterThan(claimed!.at.getTime());
    expect(renewed!.at.getTime()).toBeGreaterThan(Date.now());

    await pollUntil(async () => {
      const [job] = await stack.sql`select status from jobs where id = ${jobId}`;
      return job?.status === "delivered";
    }, { what: "the job delivered", timeoutMs: 10_000 });
    expect(receiver.on("/renewed")).toHaveLength(1);
    const [left] = await stack.sql<{ n: number }[]>`select count(*)::int as n from outbox where job_id = ${jobId}`;
    expect(left!.n).toBe(0);
  }, 30_000);
});

test("a lease renewal that fails (database unreachable) is logged, not thrown", async () => {
  const sql = createSql({ DATABASE_URL: "postgres://postgres@127.0.0.1:1/none", DATABASE_POOL_MAX: 1 }, { pool: "test", connect_timeout: 1 });
  const keeper = new LeaseKeeper(sql, silentLogger, { leaseMs: 3000 });
  keeper.hold("job_x");
  await keeper.renew();
  keeper.release("job_x");
  expect(keeper.size).toBe(0);
  await sql.end({ timeout: 1 });
});
