import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { DEFAULT_APPLICATION_ID } from "../../core/applications/sql.ts";
import { createIndexOnlySql, createSql, type Sql } from "../../core/db/client.ts";
import { INGEST_SESSION, insertEventsWithJobs, type NewEventRow } from "../../core/events/sql.ts";
import { newId } from "../../core/ids.ts";
import { Ingest } from "../../core/ingest/index.ts";
import { createLogger } from "../../core/log.ts";
import { takeDueJobs } from "../../core/outbox/sql.ts";
import type { DeliveryMessage } from "../../core/queue/messages.ts";
import { PostgresTransport } from "../../core/queue/postgres/transport.ts";
import type { CommitConsumer, Received } from "../../core/queue/transport.ts";
import { startApi, type TestApi } from "../api/harness.ts";

/**
 * The Postgres transport's hand-over in a process that both ingests and delivers (role `all`): a
 * commit whose jobs fit in the local worker's room claims them itself, sends no NOTIFY, and ingest
 * hands them over in memory; jobs that do not fit go through the outbox as before, and a claim
 * never handed over lapses like a dead worker's.
 */

let api: TestApi;
const TYPE = "handover.made";

beforeAll(async () => {
  api = await startApi();
  for (const id of ["ep_handover_1", "ep_handover_2"]) {
    await api.sql`insert into endpoints (id, app_id, url, secret) values (${id}, ${DEFAULT_APPLICATION_ID}, 'https://hooks.example.com/handover', 'whsec_test')`;
    await api.sql`insert into routes (id, app_id, endpoint_id, event_type) values (${newId("route")}, ${DEFAULT_APPLICATION_ID}, ${id}, ${TYPE})`;
  }
});
afterAll(async () => {
  await api.close();
});

const row = (): NewEventRow => ({
  id: newId("event"),
  appId: DEFAULT_APPLICATION_ID,
  type: TYPE,
  dataJson: '{"n":1}',
  idempotencyKey: null,
  createdAt: new Date(),
  ttlSeconds: null,
});

interface JobState {
  id: string;
  status: string;
  reason: string | null;
  leaseMs: number | null;
  dueMs: number | null;
}

async function statesOf(jobIds: string[]): Promise<JobState[]> {
  return api.sql<JobState[]>`
    select j.id, j.status, o.reason,
           round(extract(epoch from j.next_attempt_at - now()) * 1000)::int as lease_ms,
           round(extract(epoch from o.due_at - now()) * 1000)::int as due_ms
    from jobs j left join outbox o on o.job_id = j.id where j.id = any (${jobIds}::text[])`;
}

describe("the ingest statement's claim for a local consumer", () => {
  test("jobs that fit are made claimed under the lease, their outbox entry a lease, and nobody is notified", async () => {
    const channel = `evently_test_${newId("event").slice(-8).toLowerCase()}`;
    const heard: string[] = [];
    const listening = await api.sql.listen(channel, (payload) => heard.push(payload));
    try {
      // Two events, two endpoints: four jobs, room for exactly four.
      const fits = await insertEventsWithJobs(api.sql, [row(), row()], 0, channel, { maxJobs: 4, leaseMs: 10_000 });
      expect(fits.jobs).toHaveLength(4);
      expect([...fits.claimedJobIds].sort()).toEqual(fits.jobs.map((j) => j.id).sort());
      for (const state of await statesOf(fits.jobs.map((j) => j.id))) {
        expect(state).toMatchObject({ status: "delivering", reason: "lease" });
        expect(state.leaseMs).toBeGreaterThan(9_000);
        expect(state.dueMs).toBe(state.leaseMs);
      }
      // One job more than the room: the five that fit claimed, the sixth made as usual, and the
      // workers notified for it.
      const over = await insertEventsWithJobs(api.sql, [row(), row(), row()], 0, channel, { maxJobs: 5, leaseMs: 10_000 });
      expect(over.jobs).toHaveLength(6);
      expect(over.claimedJobIds.size).toBe(5);
      for (const state of await statesOf(over.jobs.map((j) => j.id))) {
        if (over.claimedJobIds.has(state.id)) expect(state).toMatchObject({ status: "delivering", reason: "lease" });
        else expect(state).toMatchObject({ status: "pending", reason: "publish" });
      }
      // All or none (RabbitMQ's workers): one job more than the room claims none.
      const whole = await insertEventsWithJobs(api.sql, [row(), row(), row()], 0, channel, { maxJobs: 5, leaseMs: 10_000, allOrNone: true });
      expect(whole.claimedJobIds.size).toBe(0);
      for (const state of await statesOf(whole.jobs.map((j) => j.id))) expect(state).toMatchObject({ status: "pending", reason: "publish" });
      const wholeFits = await insertEventsWithJobs(api.sql, [row(), row()], 0, channel, { maxJobs: 4, leaseMs: 10_000, allOrNone: true });
      expect(wholeFits.claimedJobIds.size).toBe(4);
      // No room: nothing claimed, and the workers notified.
      const none = await insertEventsWithJobs(api.sql, [row()], 0, channel, null);
      expect(none.claimedJobIds.size).toBe(0);
      for (const state of await statesOf(none.jobs.map((j) => j.id))) expect(state).toMatchObject({ status: "pending", reason: "publish" });
      await api.sql`select pg_notify(${channel}, 'fence')`;
      for (let i = 0; i < 100 && !heard.includes("fence"); i++) await Bun.sleep(20);
      expect(heard).toEqual(["", "", "", "fence"]);
    } finally {
      await listening.unlisten();
      await api.sql`delete from outbox where job_id in (select id from jobs where event_type = ${TYPE})`;
    }
  });

  test("a claim made at commit and never handed over lapses, and a take offers the job again", async () => {
    const take = createIndexOnlySql(api.config.database, 1, { pool: "test" });
    try {
      const made = await insertEventsWithJobs(api.sql, [row()], 0, null, { maxJobs: 256, leaseMs: 300 });
      expect(made.claimedJobIds.size).toBe(made.jobs.length);
      const ids = made.jobs.map((j) => j.id).sort();
      // Held: not offered while the lease runs.
      expect((await takeDueJobs(take, { limit: 256, leaseMs: 10_000 })).jobs.filter((j) => ids.includes(j.id))).toEqual([]);
      await Bun.sleep(400);
      const retaken = await takeDueJobs(take, { limit: 256, leaseMs: 10_000, lapsedLeases: true });
      expect(retaken.jobs.map((j) => j.id).sort()).toEqual(ids);
      expect(retaken.jobs.every((j) => j.reason === "lease" && j.payloadJson === '{"n":1}')).toBe(true);
    } finally {
      await take.end();
    }
  });
});

describe("ingest with a Postgres-transport consumer in the same process", () => {
  let sql: Sql;
  let ingestSql: Sql;
  beforeAll(() => {
    sql = createSql(api.config.database, { pool: "test" });
    ingestSql = createSql(api.config.database, { pool: "test", max: 2, connection: INGEST_SESSION });
  });
  afterAll(async () => {
    await ingestSql.end();
    await sql.end();
  });

  /**
   * A consumer with room for `maxInFlight` jobs whose handler holds every message until `settle`,
   * polling only once a minute: a job it gets within the test's time came by hand-over or NOTIFY.
   */
  async function consumer(maxInFlight: number) {
    const transport = new PostgresTransport(sql, () => createIndexOnlySql(api.config.database, 1, { pool: "test" }), {
      pollIntervalMs: 60_000,
      takeBatch: 256,
      maxInFlight,
      claimLeaseMs: 10_000,
      handOverLocally: true,
    }, createLogger("error"));
    const received: { message: DeliveryMessage; received: Received }[] = [];
    const held: (() => void)[] = [];
    const stop = await transport.consume((message, how) => {
      received.push({ message, received: how });
      return new Promise<void>((resolve) => held.push(resolve));
    });
    let handedOver = 0;
    // The transport's own consumer, counted as ingest hands jobs to it.
    const local = transport.commitConsumer()!;
    const counted: CommitConsumer = {
      leaseMs: local.leaseMs,
      reserve: () => {
        const reservation = local.reserve();
        return reservation && {
          jobs: reservation.jobs,
          release: () => reservation.release(),
          handOver: (jobs) => {
            handedOver += jobs.length;
            reservation.handOver(jobs);
          },
        };
      },
    };
    const ingest = new Ingest(ingestSql, { publishGraceMs: 0, commitNotify: transport.commitNotify, publish: () => {}, commitConsumer: () => counted }, api.config.ingest);
    const jobsReceived = () => received.flatMap((r) => r.message.jobs);
    const waitForJobs = async (n: number) => {
      for (let i = 0; i < 250 && jobsReceived().length < n; i++) await Bun.sleep(20);
      return jobsReceived();
    };
    const close = async () => {
      for (const settle of held) settle();
      await stop();
    };
    return { ingest, received, waitForJobs, handedOver: () => handedOver, close };
  }

  const input = () => ({ appId: DEFAULT_APPLICATION_ID, type: TYPE, dataJson: '{"n":2}', idempotencyKey: null });

  test("an event's jobs reach the worker claimed, by hand-over, and are held as leases", async () => {
    const c = await consumer(512);
    try {
      const [accepted] = await c.ingest.accept([input()]);
      const jobs = await c.waitForJobs(2);
      expect(jobs.map((j) => j.jobId).sort()).toEqual(accepted!.jobs.map((j) => j.id).sort());
      expect(jobs.every((j) => j.eventId === accepted!.id && j.attempt === 0)).toBe(true);
      expect(c.received.every((r) => r.received.claimed === true)).toBe(true);
      expect(c.handedOver()).toBe(2);
      for (const state of await statesOf(accepted!.jobs.map((j) => j.id))) expect(state).toMatchObject({ status: "delivering", reason: "lease" });
    } finally {
      await c.close();
    }
  });

  test("jobs beyond the worker's room go through the outbox: the commit claims what fits and notifies for the rest", async () => {
    const c = await consumer(3);
    try {
      // Two events of two jobs each in one group: four jobs, room for three.
      const accepted = await c.ingest.accept([input(), input()]);
      const jobs = await c.waitForJobs(3);
      expect(c.handedOver()).toBe(3);
      expect(jobs).toHaveLength(3);
      const ids = accepted.flatMap((a) => a.jobs.map((j) => j.id));
      const states = await statesOf(ids);
      expect(states.filter((s) => s.status === "delivering" && s.reason === "lease")).toHaveLength(3);
      expect(states.filter((s) => s.status === "pending" && s.reason === "publish")).toHaveLength(1);
    } finally {
      await c.close();
    }
  });
});
