import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { DEFAULT_APPLICATION_ID } from "../../core/applications/sql.ts";
import type { Config } from "../../core/config/index.ts";
import { createIndexOnlySql, createSql, type Sql } from "../../core/db/client.ts";
import { insertEndpoint } from "../../core/endpoints/sql.ts";
import { newId } from "../../core/ids.ts";
import { Ingest } from "../../core/ingest/index.ts";
import { silentLogger } from "../../core/log.ts";
import type { DeliveryMessage, JobMessage } from "../../core/queue/messages.ts";
import type { JobTransport, Received } from "../../core/queue/transport.ts";
import { insertRoute } from "../../core/routes/sql.ts";
import { PostgresTransport } from "../../core/queue/postgres/transport.ts";
import { createTransport } from "../../runtime.ts";
import { pollUntil } from "../support/poll.ts";
import { createTestStack, TEST_TRANSPORTS, type TestStack } from "../support/stack.ts";

/**
 * The queue transport's contract, run against each implementation: what ingest hands over arrives
 * at a consumer as the message ingest built (claimed, where the transport claims as it takes); a
 * message whose handling fails is offered again; jobs committed while nobody consumed are
 * delivered once a consumer starts; stopping waits for messages in hand. The pipeline is left out:
 * the handler here only records what it got.
 */
/** An endpoint nobody calls (handlers here never send), routed `eventType`. */
async function subscribeOn(sql: Sql, eventType: string): Promise<string> {
  const id = newId("endpoint");
  await insertEndpoint(sql, DEFAULT_APPLICATION_ID, id, "whsec_dGVzdA==", {
    url: "http://127.0.0.1:9/never-called",
    description: "",
    enabled: true,
    retryPolicy: null,
    ordering: "unordered",
    ttlSeconds: null,
    timeoutMs: 1000,
    headers: {},
    rateLimitPerSecond: null,
    metadata: {},
  });
  await insertRoute(sql, DEFAULT_APPLICATION_ID, id, eventType);
  return id;
}

for (const kind of TEST_TRANSPORTS) {
  describe(`queue transport contract [${kind}]`, () => {
    let sql: Sql;
    let config: Config;
    let transport: JobTransport;
    let ingest: Ingest;
    let cleanup: () => Promise<void>;

    beforeAll(async () => {
      // The stack supplies this transport's settings and cleans up its AMQP names; no roles run.
      // The shortest claim lease: a failed message's jobs come back when their claims lapse.
      const stack = await createTestStack({ AMQP_PUBLISH_GRACE_MS: "200", WORKER_LEASE_MS: "3000" }, kind);
      config = stack.config();
      sql = createSql(config.database, { pool: "test" });
      transport = createTransport(config, sql, silentLogger);
      await transport.start(5000);
      ingest = new Ingest(sql, transport, config.ingest);
      cleanup = async () => {
        await transport.stop();
        await sql.end();
        await stack.stop();
      };
    });

    afterAll(() => cleanup());

    const subscribe = (eventType: string) => subscribeOn(sql, eventType);

    async function accept(type: string, count: number): Promise<string[]> {
      const accepted = await ingest.accept(
        Array.from({ length: count }, (_, i) => ({ appId: DEFAULT_APPLICATION_ID, type, dataJson: JSON.stringify({ i }), idempotencyKey: null })),
      );
      return accepted.flatMap((a) => a.jobs.map((j) => j.id));
    }

    function collect(received: JobMessage[], reject?: (job: JobMessage) => boolean, claims?: (boolean | undefined)[]) {
      return async (message: DeliveryMessage, about: Received) => {
        received.push(...message.jobs);
        claims?.push(about.claimed);
        if (reject && message.jobs.some(reject)) throw new Error("handling failed");
      };
    }

    test("jobs committed before anyone consumed arrive once a consumer starts, as ingest built them", async () => {
      const endpointId = await subscribe("contract.early");
      const jobIds = await accept("contract.early", 5);
      const received: JobMessage[] = [];
      const claims: (boolean | undefined)[] = [];
      const stop = await transport.consume(collect(received, undefined, claims));
      try {
        await pollUntil(() => received.filter((j) => jobIds.includes(j.jobId)).length >= 5, { what: "five jobs", timeoutMs: 10_000 });
        const ours = received.filter((j) => jobIds.includes(j.jobId));
        expect(new Set(ours.map((j) => j.jobId))).toEqual(new Set(jobIds));
        for (const job of ours) {
          expect(job).toMatchObject({ endpointId, attempt: 0 });
          expect(JSON.parse(job.body)).toMatchObject({ id: job.eventId, type: "contract.early", data: { i: expect.any(Number) } });
        }
        // The Postgres transport claims what it takes and says so; through RabbitMQ the handler claims.
        const statuses = await sql<{ status: string }[]>`select distinct status from jobs where id = any (${jobIds}::text[])`;
        expect(statuses.map((r) => r.status)).toEqual([kind === "postgres" ? "delivering" : "pending"]);
        expect(new Set(claims)).toEqual(new Set([kind === "postgres" ? true : undefined]));
      } finally {
        await stop();
      }
    });

    test("a message whose handling failed is offered again", async () => {
      await subscribe("contract.retry");
      const [jobId] = await accept("contract.retry", 1);
      const received: JobMessage[] = [];
      let failures = 0;
      const stop = await transport.consume(collect(received, (job) => job.jobId === jobId && failures++ === 0));
      try {
        await pollUntil(() => received.filter((j) => j.jobId === jobId).length >= 2, { what: "the job offered twice", timeoutMs: 15_000 });
      } finally {
        await stop();
      }
    });

    test("stopping lets a message in hand settle before it returns", async () => {
      await subscribe("contract.stop");
      let settled = false;
      let started = false;
      const stop = await transport.consume(async (message) => {
        if (!message.jobs.some((j) => JSON.parse(j.body).type === "contract.stop")) return;
        started = true;
        await Bun.sleep(300);
        settled = true;
      });
      await accept("contract.stop", 1);
      await pollUntil(() => started, { what: "a message in hand", timeoutMs: 10_000 });
      await stop();
      expect(settled).toBe(true);
    });
  });
}

describe("the Postgres transport's consumer", () => {
  let stack: TestStack;
  let config: Config;
  let sql: Sql;
  let takes = 0;
  beforeAll(async () => {
    stack = await createTestStack({}, "postgres");
    config = stack.config();
    sql = createSql(config.database, { pool: "test" });
  });
  afterAll(async () => {
    await sql.end();
    await stack.stop();
  });

  /**
   * A transport whose takes are counted (every take goes through the consumer's own connection),
   * polling far less often than a test lasts: after its first take, only a notification or room
   * freed should make it take again.
   */
  function countedTransport(maxInFlight: number): { transport: PostgresTransport; ingest: Ingest } {
    const connectTakes = () => {
      const takeSql = createIndexOnlySql(config.database, 1, { pool: "test" });
      return new Proxy(takeSql, {
        get: (target, key, receiver) =>
          key === "unsafe" ? (...args: Parameters<Sql["unsafe"]>) => (takes++, target.unsafe(...args)) : Reflect.get(target, key, receiver),
      });
    };
    const transport = new PostgresTransport(sql, connectTakes, { pollIntervalMs: 60_000, takeBatch: 256, maxInFlight, claimLeaseMs: 30_000 }, silentLogger);
    return { transport, ingest: new Ingest(sql, transport, config.ingest) };
  }

  test("takes again when news comes, not each time a message settles", async () => {
    const { transport, ingest } = countedTransport(512);
    let settled = 0;
    const stop = await transport.consume(async () => {
      await Bun.sleep(200);
      settled++;
    });
    try {
      await pollUntil(() => takes >= 1, { what: "the first take" });
      await Bun.sleep(100);
      const before = takes;
      await subscribeOn(sql, "consumer.wake");
      await ingest.accept([{ appId: DEFAULT_APPLICATION_ID, type: "consumer.wake", dataJson: "{}", idempotencyKey: null }]);
      await pollUntil(() => settled === 1, { what: "the message settled" });
      await Bun.sleep(300);
      // The notification's take; a settled message (with room to spare) wakes nothing.
      expect(takes - before).toBe(1);
    } finally {
      await stop();
      await transport.stop();
    }
  });

  test("a consumer holding all it may takes more as soon as a message settles", async () => {
    const { transport, ingest } = countedTransport(1);
    await subscribeOn(sql, "consumer.full");
    const received: string[] = [];
    const stop = await transport.consume(async (message) => {
      received.push(...message.jobs.map((job) => job.jobId));
      await Bun.sleep(200);
    });
    try {
      const accepted = await ingest.accept(
        [1, 2, 3].map(() => ({ appId: DEFAULT_APPLICATION_ID, type: "consumer.full", dataJson: "{}", idempotencyKey: null })),
      );
      const started = Date.now();
      await pollUntil(() => received.length === 3, { what: "three jobs, one at a time", timeoutMs: 5000 });
      // One in hand at a time, each taken when the one before settled: far sooner than the poll.
      expect(new Set(received)).toEqual(new Set(accepted.flatMap((a) => a.jobs.map((j) => j.id))));
      expect(Date.now() - started).toBeLessThan(2000);
    } finally {
      await stop();
      await transport.stop();
    }
  });
});
