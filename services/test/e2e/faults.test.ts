import { expect, test } from "bun:test";
import postgres from "postgres";
import { pollUntil } from "../support/poll.ts";
import { describeEachTransport, useTestStack } from "../support/stack.ts";

describeEachTransport("faults", (transport) => {
  const e2e = useTestStack(
    transport,
    // A cut can lose the answer to a take or a claim; the shortest claim lease makes their recovery quick.
    { AMQP_PUBLISH_GRACE_MS: "500", RETRY_SCHEDULE: "100ms,200ms,400ms,800ms,1s,1s,1s", WORKER_LEASE_MS: "3000" },
  );

  const setup = (path: string, type: string) => e2e.subscribe(`${e2e.receiver.url}${path}`, type);

  /**
   * Posts `count` events in waves while `fault` runs part-way through. Returns the accepted ids and,
   * for every request that was not accepted, why (status and body, or the client error).
   */
  async function publishThrough(type: string, count: number, fault: () => Promise<void>): Promise<{ accepted: Set<string>; refused: string[] }> {
    const accepted = new Set<string>();
    const refused: string[] = [];
    let faulted: Promise<void> | undefined;
    for (let i = 0; i < count; i += 10) {
      if (i === count / 2) faulted = fault();
      const wave = await Promise.all(
        Array.from({ length: 10 }, (_, k) =>
          e2e.api("POST", "/events", { type, data: { n: i + k } }).catch((err: unknown) => String(err)),
        ),
      );
      for (const res of wave) {
        if (typeof res === "string") refused.push(res);
        else if (res.status === 202) accepted.add(res.body.id);
        else refused.push(`${res.status} ${JSON.stringify(res.body)}`);
      }
      await Bun.sleep(20);
    }
    await faulted;
    return { accepted, refused };
  }

  /** Waits until the receiver has had every accepted event at `path`. */
  async function allDelivered(path: string, accepted: Set<string>, when: string): Promise<void> {
    await pollUntil(() => {
      const got = new Set(e2e.receiver.on(path).map((r) => JSON.parse(r.body).id));
      return [...accepted].every((id) => got.has(id));
    }, { what: `all accepted events delivered ${when}`, timeoutMs: 30_000 });
  }

  // The Postgres transport has no broker link to lose; its database cut is the test below.
  if (transport === "rabbitmq")
  test("every event accepted while RabbitMQ connections are dropped is delivered", async () => {
    await setup("/broker-fault", "fault.broker");
    const { accepted, refused } = await publishThrough("fault.broker", 200, async () => {
      const run = Bun.spawn(["rabbitmqctl", "close_all_connections", "evently fault test"], { stdout: "ignore", stderr: "ignore" });
      expect(await run.exited).toBe(0);
    });
    // The API keeps accepting while the broker link is down: events wait in the outbox.
    expect(refused).toEqual([]);
    expect(accepted.size).toBe(200);
    await allDelivered("/broker-fault", accepted, "after the broker link came back");
  });

  test("every event accepted around a loss of all database connections is delivered", async () => {
    await setup("/db-fault", "fault.db");
    const { accepted, refused } = await publishThrough("fault.db", 200, async () => {
      // What a database restart looks like from our side: every connection is cut at once.
      const admin = postgres("postgres://postgres@127.0.0.1:5432/postgres", { max: 1, onnotice: () => {} });
      const cut = await admin`select pg_terminate_backend(pid) from pg_stat_activity where datname = ${e2e.stack.db.name}`;
      await admin.end();
      expect(cut.length).toBeGreaterThan(0);
    });
    // Ingest retries a cut connection before answering. Should the pool's reconnects fail too (a
    // loaded machine), the API answers the documented 503 `unavailable`, nothing written, which a
    // producer retries; anything else (a 500, a hang, a dropped connection) fails the test.
    expect(refused.filter((r) => !r.startsWith('503 {"code":"unavailable"'))).toEqual([]);
    expect(accepted.size).toBe(200 - refused.length);
    expect(accepted.size).toBeGreaterThan(100);
    await allDelivered("/db-fault", accepted, "after the database came back");
    // The receiver hears of a delivery before the worker has recorded it.
    await pollUntil(async () => {
      const [row] = await e2e.sql<{ n: number }[]>`
        select count(*)::int as n from jobs where event_type = 'fault.db' and status = 'delivered'`;
      return row!.n === accepted.size;
    }, { what: "every delivery recorded" });
  });
});
