import { afterAll, beforeAll, expect, test } from "bun:test";
import { DEFAULT_APPLICATION_ID } from "../../core/applications/sql.ts";
import { insertEventsWithJobs, type NewEventRow } from "../../core/events/sql.ts";
import { newId } from "../../core/ids.ts";
import { startApi, type TestApi } from "../api/harness.ts";

/**
 * The ingest statement's fan-out for one commit group that mixes applications, types, TTLs and
 * overlapping routes, as group commit makes them: routes are looked up once per (application, type)
 * of the group, and every event must still get exactly its own application's jobs.
 */

let api: TestApi;
const OTHER_APP = "app_fanout_other";

beforeAll(async () => {
  api = await startApi();
  await api.sql`insert into applications (id, name) values (${OTHER_APP}, 'other')`;
  const endpoint = (id: string, appId: string, enabled = true, ttlSeconds: number | null = null) =>
    api.sql`insert into endpoints (id, app_id, url, secret, enabled, ttl_seconds)
            values (${id}, ${appId}, 'https://hooks.example.com/fanout', 'whsec_test', ${enabled}, ${ttlSeconds})`;
  await endpoint("ep_fan_a1", DEFAULT_APPLICATION_ID);
  await endpoint("ep_fan_a2", DEFAULT_APPLICATION_ID, true, 60);
  await endpoint("ep_fan_a3", DEFAULT_APPLICATION_ID, false);
  await endpoint("ep_fan_b1", OTHER_APP);
  const route = (endpointId: string, appId: string, eventType: string) =>
    api.sql`insert into routes (id, app_id, endpoint_id, event_type) values (${newId("route")}, ${appId}, ${endpointId}, ${eventType})`;
  // a1 is reached by two patterns of order.paid; a3 is disabled; b1 belongs to the other application.
  await route("ep_fan_a1", DEFAULT_APPLICATION_ID, "order.*");
  await route("ep_fan_a1", DEFAULT_APPLICATION_ID, "*");
  await route("ep_fan_a2", DEFAULT_APPLICATION_ID, "order.paid");
  await route("ep_fan_a3", DEFAULT_APPLICATION_ID, "*");
  await route("ep_fan_b1", OTHER_APP, "order.paid");
});
afterAll(async () => {
  await api.close();
});

test("one group of several applications and types: each event gets its own application's endpoints, once each", async () => {
  const createdAt = new Date("2026-01-01T00:00:00Z");
  const row = (appId: string, type: string, ttlSeconds: number | null = null): NewEventRow => ({
    id: newId("event"),
    appId,
    type,
    dataJson: "{}",
    idempotencyKey: null,
    createdAt,
    ttlSeconds,
  });
  const rows = [
    row(DEFAULT_APPLICATION_ID, "order.paid"),
    row(DEFAULT_APPLICATION_ID, "order.paid", 5),
    row(DEFAULT_APPLICATION_ID, "user.created"),
    row(OTHER_APP, "order.paid"),
    row(OTHER_APP, "user.created"),
  ];
  const batch = await insertEventsWithJobs(api.sql, rows, 0);
  expect(batch.insertedEventIds.size).toBe(5);

  const jobsOf = (eventId: string) =>
    batch.jobs
      .filter((j) => j.eventId === eventId)
      .map((j) => ({ endpointId: j.endpointId, expiresAt: j.expiresAt?.toISOString() ?? null }))
      .sort((a, b) => a.endpointId.localeCompare(b.endpointId));
  const at = (seconds: number) => new Date(createdAt.getTime() + seconds * 1000).toISOString();
  expect(jobsOf(rows[0]!.id)).toEqual([
    { endpointId: "ep_fan_a1", expiresAt: null },
    { endpointId: "ep_fan_a2", expiresAt: at(60) },
  ]);
  // The event's TTL wins over the endpoint's.
  expect(jobsOf(rows[1]!.id)).toEqual([
    { endpointId: "ep_fan_a1", expiresAt: at(5) },
    { endpointId: "ep_fan_a2", expiresAt: at(5) },
  ]);
  expect(jobsOf(rows[2]!.id)).toEqual([{ endpointId: "ep_fan_a1", expiresAt: null }]);
  expect(jobsOf(rows[3]!.id)).toEqual([{ endpointId: "ep_fan_b1", expiresAt: null }]);
  expect(jobsOf(rows[4]!.id)).toEqual([]);
  expect(batch.jobs).toHaveLength(6);

  // What was returned is what was stored: jobs of the event's application, each with its outbox entry.
  const stored = await api.sql<{ appId: string; eventAppId: string; outbox: number }[]>`
    select j.app_id, e.app_id as event_app_id, (select count(*)::int from outbox o where o.job_id = j.id) as outbox
    from jobs j join events e on e.app_id = j.app_id and e.id = j.event_id
    where j.event_id in ${api.sql(rows.map((r) => r.id))}`;
  expect(stored).toHaveLength(6);
  for (const s of stored) {
    expect(s.appId).toBe(s.eventAppId);
    expect(s.outbox).toBe(1);
  }
});

test("a group of many events of one type makes one job per event and routed endpoint", async () => {
  const rows: NewEventRow[] = Array.from({ length: 300 }, (_, i) => ({
    id: newId("event"),
    appId: i % 3 === 0 ? OTHER_APP : DEFAULT_APPLICATION_ID,
    type: "order.paid",
    dataJson: `{"n":${i}}`,
    idempotencyKey: null,
    createdAt: new Date(),
    ttlSeconds: null,
  }));
  const batch = await insertEventsWithJobs(api.sql, rows, 0);
  expect(batch.insertedEventIds.size).toBe(300);
  // 100 events of the other application reach b1; 200 of the default reach a1 and a2.
  expect(batch.jobs).toHaveLength(100 + 200 * 2);
  const pairs = new Set(batch.jobs.map((j) => `${j.eventId} ${j.endpointId}`));
  expect(pairs.size).toBe(batch.jobs.length);
});

test("the statement notifies its channel once when it makes jobs, and not when it makes none or has no channel", async () => {
  const channel = `evently_test_${newId("event").slice(-8).toLowerCase()}`;
  const heard: string[] = [];
  const listening = await api.sql.listen(channel, (payload) => heard.push(payload));
  try {
    const row = (appId: string, type: string): NewEventRow => ({
      id: newId("event"), appId, type, dataJson: "{}", idempotencyKey: null, createdAt: new Date(), ttlSeconds: null,
    });
    // Three events with jobs: one notification for the statement.
    await insertEventsWithJobs(api.sql, [row(DEFAULT_APPLICATION_ID, "order.paid"), row(DEFAULT_APPLICATION_ID, "order.paid"), row(OTHER_APP, "order.paid")], 0, channel);
    // An event no endpoint subscribes to; jobs without a channel.
    const quiet = await insertEventsWithJobs(api.sql, [row(OTHER_APP, "nobody.listens")], 0, channel);
    expect(quiet.jobs).toEqual([]);
    expect((await insertEventsWithJobs(api.sql, [row(DEFAULT_APPLICATION_ID, "order.paid")], 0)).jobs.length).toBeGreaterThan(0);
    // Notifications arrive in commit order: once this one is in, every earlier one is.
    await api.sql`select pg_notify(${channel}, 'fence')`;
    for (let i = 0; i < 100 && !heard.includes("fence"); i++) await Bun.sleep(20);
    expect(heard).toEqual(["", "fence"]);
  } finally {
    await listening.unlisten();
  }
});
