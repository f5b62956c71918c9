import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { DEFAULT_APPLICATION_ID } from "../../core/applications/sql.ts";
import { createIndexOnlySql, createSql, type Sql } from "../../core/db/client.ts";
import { INGEST_SESSION } from "../../core/events/sql.ts";
import { newId } from "../../core/ids.ts";
import { Ingest } from "../../core/ingest/index.ts";
import { createLogger } from "../../core/log.ts";
import type { JobMessage } from "../../core/queue/messages.ts";
import { PostgresTransport, type PostgresTransportOptions } from "../../core/queue/postgres/transport.ts";
import { pollUntil } from "../support/poll.ts";
import { startApi, type TestApi } from "../api/harness.ts";

/**
 * A worker connected for the hand-over (Postgres transport) leaves the room it granted to the API's
 * commits while they are using it: its own take, woken by the outbox's NOTIFY, does not fill that
 * room first. At the edge of a worker's capacity that race made commits stop handing over, and the
 * take's path costs more per job. Jobs left in the outbox still go out within a poll interval.
 */

let api: TestApi;
let sql: Sql;
let ingestSql: Sql;
const TYPE = "handover.held";
const POLL_MS = 3000;

beforeAll(async () => {
  api = await startApi();
  for (const id of ["ep_held_1", "ep_held_2"]) {
    await api.sql`insert into endpoints (id, app_id, url, secret) values (${id}, ${DEFAULT_APPLICATION_ID}, 'https://hooks.example.com/held', 'whsec_test')`;
    await api.sql`insert into routes (id, app_id, endpoint_id, event_type) values (${newId("route")}, ${DEFAULT_APPLICATION_ID}, ${id}, ${TYPE})`;
  }
  sql = createSql(api.config.database, { pool: "test" });
  ingestSql = createSql(api.config.database, { pool: "test", max: 2, connection: INGEST_SESSION });
});
afterAll(async () => {
  await ingestSql.end();
  await sql.end();
  await api.close();
});

const input = () => ({ appId: DEFAULT_APPLICATION_ID, type: TYPE, dataJson: '{"n":1}', idempotencyKey: null });

/**
 * An API side (a hub served on a port, an ingest that hands over to it, one that goes through the
 * outbox) and a worker connected to it, with room for four jobs; `hold` says which messages the
 * handler keeps until the end, the others settle at once.
 */
async function setUp(hold: (message: number) => boolean) {
  const options: PostgresTransportOptions = { pollIntervalMs: POLL_MS, takeBatch: 4, maxInFlight: 4, claimLeaseMs: 10_000 };
  const connectTakes = () => createIndexOnlySql(api.config.database, 1, { pool: "test" });
  const apiSide = new PostgresTransport(sql, connectTakes, options, createLogger("error"));
  const hub = apiSide.acceptHandovers(["token"]);
  const server = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: (request, server) => hub.upgrade(request, server), websocket: hub.websocket });
  const ingest = (consumer: "hub" | null) =>
    new Ingest(ingestSql, { publishGraceMs: 0, commitNotify: apiSide.commitNotify, publish: () => {}, commitConsumer: () => (consumer ? hub : null) }, api.config.ingest);

  const worker = new PostgresTransport(sql, connectTakes, { ...options, handoverFrom: { url: `http://127.0.0.1:${server.port}`, token: "token" } }, createLogger("error"));
  const received: JobMessage[] = [];
  const held: (() => void)[] = [];
  let messages = 0;
  const stop = await worker.consume((message) => {
    received.push(...message.jobs);
    return hold(messages++) ? new Promise<void>((resolve) => held.push(resolve)) : Promise.resolve();
  });
  // The worker's first grant, all four: seen as room the hub can reserve.
  await pollUntil(() => {
    const reservation = hub.reserve();
    reservation?.release();
    return reservation?.jobs === 4;
  }, { timeoutMs: 5000, what: "the worker's grant" });
  return {
    handedOver: ingest("hub"),
    throughOutbox: ingest(null),
    received,
    receivedIds: () => received.map((j) => j.jobId).sort(),
    settleHeld: () => held.splice(0).forEach((settle) => settle()),
    close: async () => {
      held.splice(0).forEach((settle) => settle());
      await stop();
      hub.stop();
      await server.stop(true);
    },
  };
}

const jobIds = (accepted: { jobs: { id: string }[] }[]) => accepted.flatMap((a) => a.jobs.map((j) => j.id)).sort();

describe("a worker's take beside the hand-over", () => {
  test("room granted to commits in use is left to them; what went to the outbox is taken once the room is free", async () => {
    const w = await setUp(() => true);
    try {
      const first = await w.handedOver.accept([input()]);
      await pollUntil(() => w.received.length === 2, { timeoutMs: 5000, what: "the first event's jobs, handed over" });

      // Two more events' jobs through the outbox: the NOTIFY wakes the worker, whose free room (two)
      // is what it granted the commits and they have not used yet.
      const queued = await w.throughOutbox.accept([input(), input()]);
      await Bun.sleep(500);
      expect(w.receivedIds()).toEqual(jobIds(first));

      // The next commit gets that room.
      const second = await w.handedOver.accept([input()]);
      await pollUntil(() => w.received.length === 4, { timeoutMs: 5000, what: "the second event's jobs, handed over" });
      expect(w.receivedIds()).toEqual(jobIds([...first, ...second]));

      // The worker frees its room and the commits stop: the take gets it within a poll interval.
      w.settleHeld();
      await pollUntil(() => w.received.length === 8, { timeoutMs: POLL_MS + 3000, what: "the outbox's jobs, taken" });
      expect(w.receivedIds()).toEqual(jobIds([...first, ...second, ...queued]));
    } finally {
      await w.close();
    }
  }, 30_000);

  test("while commits keep using the room, jobs in the outbox wait a poll interval, not longer", async () => {
    // The first message stays in hand, so the worker's free room is what it grants the commits.
    const w = await setUp((message) => message === 0);
    let streaming = true;
    try {
      await w.handedOver.accept([input()]);
      await pollUntil(() => w.received.length === 2, { timeoutMs: 5000, what: "the first event's jobs, handed over" });
      const stream = (async () => {
        while (streaming) {
          await w.handedOver.accept([input()]);
          await Bun.sleep(100);
        }
      })();
      await Bun.sleep(300);
      const queuedAt = performance.now();
      const queued = jobIds(await w.throughOutbox.accept([input()]));
      const takenAfter = await pollUntil(() => queued.every((id) => w.receivedIds().includes(id)) && performance.now() - queuedAt, {
        timeoutMs: POLL_MS + 3000,
        what: "the outbox's jobs, taken while commits go on",
      });
      streaming = false;
      await stream;
      expect(takenAfter).toBeGreaterThan(1000);
      expect(takenAfter).toBeLessThan(POLL_MS + 1500);
    } finally {
      streaming = false;
      await w.close();
    }
  }, 30_000);
});
