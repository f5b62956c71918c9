import { expect, test } from "bun:test";
import { pollUntil } from "../support/poll.ts";
import { describeEachTransport, useTestStack } from "../support/stack.ts";

/**
 * Every connection says which pool it belongs to (its application_name, core/db/client.ts), so an
 * operator reading pg_stat_activity, and the bench splitting Postgres's CPU, can tell the group
 * commits from the takes, the claims and attempt writes, and each role's own pool.
 */
describeEachTransport("connection pool names", (transport) => {
  const roles = transport === "rabbitmq" ? (["api", "worker", "dispatcher"] as const) : (["api", "worker"] as const);
  const s = useTestStack(transport, {}, [...roles]);

  test("each pool's connections carry its name, and every connection of the stack has one", async () => {
    await s.subscribe(`${s.receiver.url}/pools`, "pool.named");
    const res = await s.api("POST", "/events", { type: "pool.named", data: {} });
    expect(res.status).toBe(202);
    await pollUntil(() => s.receiver.on("/pools").length === 1, { what: "delivery" });

    const names = async () =>
      (
        await s.sql<{ name: string }[]>`
          select distinct application_name as name from pg_stat_activity
          where datname = current_database() and pid <> pg_backend_pid() and backend_type = 'client backend'`
      )
        .map((r) => r.name)
        .sort();
    const own = transport === "rabbitmq" ? ["evently-outbox-clear", "evently-dispatcher"] : ["evently-take"];
    const expected = ["evently-api", "evently-worker", "evently-ingest", "evently-delivery", ...own].sort();
    // Pools connect lazily; the delivery above has used each of them once.
    await pollUntil(async () => (await names()).join() === expected.join(), { what: `pools ${expected.join(", ")}` }).catch(() => {});
    expect(await names()).toEqual(expected);
  });
});
