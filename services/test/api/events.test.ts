import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { DEFAULT_APPLICATION_ID } from "../../core/applications/sql.ts";
import { newId } from "../../core/ids.ts";
import { untilLockWaits } from "../support/locks.ts";
import { hookUrl, startApi, type TestApi } from "./harness.ts";

let api: TestApi;
beforeAll(async () => {
  api = await startApi();
});
afterAll(async () => {
  await api.close();
});

async function endpoint(eventTypes: string[], extra: Record<string, unknown> = {}): Promise<string> {
  const res = await api.request("POST", "/endpoints", { body: { url: hookUrl(), eventTypes, ...extra } });
  expect(res.status).toBe(201);
  return res.body.id;
}

async function jobsOf(eventId: string): Promise<string[]> {
  const rows = await api.sql<{ endpointId: string }[]>`select endpoint_id from jobs where event_id = ${eventId} order by endpoint_id`;
  return rows.map((r) => r.endpointId);
}

// Each test uses its own event type namespace so earlier routes do not match its events.
describe("fan-out", () => {
  test("three routed endpoints get three jobs; the response lists them", async () => {
    const ids = [await endpoint(["fan.a"]), await endpoint(["fan.a"]), await endpoint(["fan.a"])];
    await endpoint(["fan.other"]);
    const res = await api.request("POST", "/events", { body: { type: "fan.a", data: { n: 1 } } });
    expect(res.status).toBe(202);
    expect(res.headers.get("idempotent-replayed")).toBeNull();
    expect(res.body).toMatchObject({ type: "fan.a", idempotencyKey: null });
    expect(res.body.id).toMatch(/^evt_[0-9a-f]{32}$/);
    expect(res.body.jobs.map((j: { endpointId: string }) => j.endpointId).sort()).toEqual([...ids].sort());
    expect(await jobsOf(res.body.id)).toEqual([...ids].sort());
    const stored = await api.sql`select id from jobs where event_id = ${res.body.id} order by id`;
    expect(res.body.jobs.map((j: { id: string }) => j.id).sort()).toEqual(stored.map((r) => r.id));
  });

  test("prefix and * routes match; a prefix does not match its own bare name", async () => {
    const prefix = await endpoint(["wild.*"]);
    const deeper = await endpoint(["wild.order.*"]);
    const everything = await endpoint(["*"]);
    const exact = await endpoint(["wild.order.paid"]);

    const paid = await api.request("POST", "/events", { body: { type: "wild.order.paid", data: {} } });
    expect(await jobsOf(paid.body.id)).toEqual([prefix, deeper, everything, exact].sort());

    const bare = await api.request("POST", "/events", { body: { type: "wild", data: {} } });
    expect(await jobsOf(bare.body.id)).toEqual([everything]);

    const other = await api.request("POST", "/events", { body: { type: "wildcat.x", data: {} } });
    expect(await jobsOf(other.body.id)).toEqual([everything]);

    // Later tests must not be matched by this `*` route.
    expect((await api.request("DELETE", `/endpoints/${everything}`)).status).toBe(204);
  });

  test("a disabled endpoint gets no job", async () => {
    const on = await endpoint(["dis.x"]);
    await endpoint(["dis.x"], { enabled: false });
    const res = await api.request("POST", "/events", { body: { type: "dis.x", data: {} } });
    expect(await jobsOf(res.body.id)).toEqual([on]);
    expect(res.body.jobs).toHaveLength(1);
  });

  test("two matching routes to one endpoint make one job", async () => {
    const id = await endpoint(["two.paid", "two.*"]);
    const res = await api.request("POST", "/events", { body: { type: "two.paid", data: {} } });
    expect(await jobsOf(res.body.id)).toEqual([id]);
  });

  test("an event nobody subscribes to is stored with no jobs", async () => {
    const res = await api.request("POST", "/events", { body: { type: "nobody.cares", data: [1, 2] } });
    expect(res.status).toBe(202);
    expect(res.body.jobs).toEqual([]);
    expect(await api.sql`select 1 from events where id = ${res.body.id}`).toHaveLength(1);
  });
});

describe("idempotency", () => {
  test("the same key twice: one event row, jobs once, the original answered with the header", async () => {
    await endpoint(["idem.x"]);
    const body = { type: "idem.x", data: { v: 1, w: [1, 2] }, idempotencyKey: "key-body-1" };
    const first = await api.request("POST", "/events", { body });
    const before = await api.counts();
    // The same request: key order and white space do not make it another one.
    const second = await api.request("POST", "/events", { body: `{"idempotencyKey":"key-body-1","data":{"w":[1, 2], "v":1},"type":"idem.x"}` });
    expect(second.status).toBe(202);
    expect(second.headers.get("idempotent-replayed")).toBe("true");
    expect(second.body).toEqual(first.body);
    expect(await api.counts()).toEqual(before);
    const rows = await api.sql`select payload::text as p from events where idempotency_key = 'key-body-1'`;
    expect(rows).toHaveLength(1);
    expect(JSON.parse(rows[0]!.p)).toEqual({ v: 1, w: [1, 2] });
  });

  test("a key reused with another type or data is a 422 idempotency_key_reused and writes nothing", async () => {
    await endpoint(["idem.r", "idem.other"]);
    const body = { type: "idem.r", data: { v: 1 }, idempotencyKey: "key-reused-1" };
    expect((await api.request("POST", "/events", { body })).status).toBe(202);
    const before = await api.fingerprint();
    const otherData = await api.request("POST", "/events", { body: { ...body, data: { v: 2 } } });
    expect(otherData.status).toBe(422);
    expect(otherData.body).toMatchObject({ code: "idempotency_key_reused", errors: [{ field: "idempotencyKey" }] });
    const otherType = await api.request("POST", "/events", { body: { type: "idem.other", data: { v: 1 } }, headers: { "Idempotency-Key": "key-reused-1" } });
    expect(otherType.status).toBe(422);
    expect(otherType.body).toMatchObject({ code: "idempotency_key_reused", errors: [{ field: "Idempotency-Key" }] });
    const batch = await api.request("POST", "/events/batch", {
      body: { events: [{ type: "idem.r", data: { fresh: true } }, { ...body, data: { v: 3 } }] },
    });
    expect(batch.status).toBe(422);
    expect(batch.body).toMatchObject({ code: "idempotency_key_reused", errors: [{ field: "events.1.idempotencyKey" }] });
    const inBatch = await api.request("POST", "/events/batch", {
      body: { events: [{ type: "idem.r", data: { a: 1 }, idempotencyKey: "key-new" }, { type: "idem.r", data: { a: 2 }, idempotencyKey: "key-new" }] },
    });
    expect(inBatch.status).toBe(422);
    expect(inBatch.body.errors[0].field).toBe("events.1.idempotencyKey");
    expect(await api.fingerprint()).toBe(before);
  });

  test("the Idempotency-Key header works alone and agrees with the body field", async () => {
    const headers = { "Idempotency-Key": "key-header-1" };
    const first = await api.request("POST", "/events", { body: { type: "idem.h", data: {} }, headers });
    expect(first.status).toBe(202);
    expect(first.body.idempotencyKey).toBe("key-header-1");
    const second = await api.request("POST", "/events", {
      body: { type: "idem.h", data: {}, idempotencyKey: "key-header-1" },
      headers,
    });
    expect(second.headers.get("idempotent-replayed")).toBe("true");
    expect(second.body.id).toBe(first.body.id);
    const viaBodyOnly = await api.request("POST", "/events", { body: { type: "idem.h", data: {}, idempotencyKey: "key-header-1" } });
    expect(viaBodyOnly.body.id).toBe(first.body.id);
  });

  test("header and body keys that differ are a 422 and write nothing", async () => {
    const before = await api.counts();
    const res = await api.request("POST", "/events", {
      body: { type: "idem.m", data: {}, idempotencyKey: "a" },
      headers: { "Idempotency-Key": "b" },
    });
    expect(res.status).toBe(422);
    expect(res.body.errors[0].field).toBe("idempotencyKey");
    const tooLong = await api.request("POST", "/events", {
      body: { type: "idem.m", data: {} },
      headers: { "Idempotency-Key": "k".repeat(256) },
    });
    expect(tooLong.status).toBe(422);
    expect(tooLong.body.errors[0].field).toBe("Idempotency-Key");
    expect(await api.counts()).toEqual(before);
  });

  test("concurrent requests with one key make one event", async () => {
    await endpoint(["idem.race"]);
    const results = await Promise.all(
      Array.from({ length: 10 }, () =>
        api.request("POST", "/events", { body: { type: "idem.race", data: {}, idempotencyKey: "race-1" } }),
      ),
    );
    expect(new Set(results.map((r) => r.body.id)).size).toBe(1);
    expect(results.filter((r) => r.headers.get("idempotent-replayed") === null)).toHaveLength(1);
    const [row] = await api.sql`select count(*)::int as n from jobs j join events e on e.id = j.event_id where e.idempotency_key = 'race-1'`;
    expect(row!.n).toBe(1);
  });
});

describe("batch", () => {
  test("accepts many events at once, each with its jobs and replay flag", async () => {
    const id = await endpoint(["batch.*"]);
    await api.request("POST", "/events", { body: { type: "batch.seen", data: {}, idempotencyKey: "batch-seen" } });
    const res = await api.request("POST", "/events/batch", {
      body: {
        events: [
          { type: "batch.one", data: { i: 1 } },
          { type: "batch.two", data: [2] },
          { type: "batch.seen", data: {}, idempotencyKey: "batch-seen" },
          { type: "elsewhere", data: {} },
        ],
      },
    });
    expect(res.status).toBe(202);
    expect(res.body.data).toHaveLength(4);
    expect(res.body.data.map((e: { type: string }) => e.type)).toEqual(["batch.one", "batch.two", "batch.seen", "elsewhere"]);
    expect(res.body.data.map((e: { replayed: boolean }) => e.replayed)).toEqual([false, false, true, false]);
    expect(res.body.data[0].jobs).toEqual([{ id: expect.stringMatching(/^job_/), endpointId: id }]);
    expect(res.body.data[2].jobs).toHaveLength(1); // the original's job, not a new one
    expect(res.body.data[3].jobs).toEqual([]);
    const [{ n }] = (await api.sql`select count(*)::int as n from events where idempotency_key = 'batch-seen'`) as unknown as [{ n: number }];
    expect(n).toBe(1);
  });

  test("two batches that share keys in opposite orders deadlock in Postgres; the failed one is retried, both 202", async () => {
    await endpoint(["cross.*"]);
    const event = (key: string) => ({ type: "cross.x", data: { key }, idempotencyKey: key });
    let first!: Promise<{ status: number; body: any }>;
    let second!: Promise<{ status: number; body: any }>;
    // A transaction holding "cross-held" stops `first` after it inserted "cross-a". `second` (big
    // enough to commit alongside, see INGEST_OVERLAP_MIN_EVENTS) inserts "cross-b" and waits for
    // `first`'s "cross-a". Released, `first` goes on to "cross-b" and waits for `second`: a cycle.
    await api.sql
      .begin(async (tx) => {
        await tx`insert into events (id, app_id, type, payload, idempotency_key, created_at)
                 values (${newId("event")}, ${DEFAULT_APPLICATION_ID}, 'cross.x', '{}', 'cross-held', now())`;
        first = api.request("POST", "/events/batch", { body: { events: [event("cross-a"), event("cross-held"), event("cross-b")] } });
        await untilLockWaits(api.sql, 1);
        const filler = Array.from({ length: 40 }, (_, i) => event(`cross-fill-${i}`));
        second = api.request("POST", "/events/batch", { body: { events: [event("cross-b"), event("cross-a"), ...filler] } });
        await untilLockWaits(api.sql, 2);
        throw new Error("release");
      })
      .catch((err) => expect(String(err)).toContain("release"));
    const [a, b] = await Promise.all([first, second]);
    expect([a.status, b.status]).toEqual([202, 202]);
    const [row] = await api.sql`select count(*)::int as n from events where idempotency_key like 'cross-%'`;
    expect(row!.n).toBe(43);
    // Whichever committed second answers the shared keys as replays of the first's events.
    const ids = (res: { body: any }, key: string) => res.body.data.find((e: { idempotencyKey: string }) => e.idempotencyKey === key).id;
    expect(ids(a, "cross-a")).toBe(ids(b, "cross-a"));
    expect(ids(a, "cross-b")).toBe(ids(b, "cross-b"));
  });
});

describe("reading events", () => {
  test("GET /events/:id returns data as sent (keys untouched) and its jobs with their state", async () => {
    const id = await endpoint(["read.x"]);
    const text = '{"order_id":7,"trailing_":true,"nested":{"snake_case":["a_b"]},"ünï":"ok","__proto__":{"kept":1}}';
    const data = JSON.parse(text);
    const made = await api.request("POST", "/events", {
      body: `{"type":"read.x","idempotencyKey":"read-1","data":${text}}`,
    });
    const res = await api.request("GET", `/events/${made.body.id}`);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ id: made.body.id, type: "read.x", idempotencyKey: "read-1", timestamp: made.body.timestamp });
    expect(res.body.data).toEqual(data);
    expect(Object.keys(res.body.data)).toContain("__proto__");
    expect(res.body.jobs).toHaveLength(1);
    expect(res.body.jobs[0]).toMatchObject({
      id: made.body.jobs[0].id,
      eventId: made.body.id,
      endpointId: id,
      eventType: "read.x",
      status: "pending",
      attemptCount: 0,
      nextAttemptAt: null,
      lastAttemptAt: null,
      deliveredAt: null,
    });
  });

  test("unknown event ids are 404", async () => {
    for (const id of ["evt_00000000000000000000000000000000", "evt_x", "job_00000000000000000000000000000000"]) {
      const res = await api.request("GET", `/events/${id}`);
      expect(res.status).toBe(404);
      expect(res.body.code).toBe("not_found");
    }
  });

  test("list filters by eventType pattern and time, pages with cursors, leaves data out", async () => {
    const made: string[] = [];
    for (const type of ["list.a.one", "list.a.two", "list.b", "list.a.three"]) {
      made.push((await api.request("POST", "/events", { body: { type, data: { type } } })).body.id);
    }
    const exact = await api.request("GET", "/events?eventType=list.b");
    expect(exact.body.data.map((e: { id: string }) => e.id)).toEqual([made[2]]);
    expect(exact.body.data[0].data).toBeUndefined();

    const prefix = await api.request("GET", "/events?eventType=list.a.*&limit=2");
    expect(prefix.body.data.map((e: { id: string }) => e.id)).toEqual([made[3], made[1]]);
    const rest = await api.request("GET", `/events?eventType=list.a.*&limit=2&cursor=${prefix.body.nextCursor}`);
    expect(rest.body.data.map((e: { id: string }) => e.id)).toEqual([made[0]]);
    expect(rest.body.nextCursor).toBeNull();

    // Only the underscore-free prefix matches: `_` is no wildcard.
    const underscore = await api.request("GET", "/events?eventType=list_a.*");
    expect(underscore.body.data).toEqual([]);

    const [first] = await api.sql<{ createdAt: Date }[]>`select created_at from events where id = ${made[0]!}`;
    const future = new Date(Date.now() + 3_600_000).toISOString();
    expect((await api.request("GET", `/events?since=${future}`)).body.data).toEqual([]);
    const until = await api.request("GET", `/events?eventType=list.*&until=${encodeURIComponent(first!.createdAt.toISOString())}`);
    expect(until.body.data.map((e: { id: string }) => e.id)).not.toContain(made[0]);
    const since = await api.request("GET", `/events?eventType=list.*&since=${encodeURIComponent(first!.createdAt.toISOString())}`);
    expect(since.body.data.map((e: { id: string }) => e.id)).toContain(made[0]);

    for (const [query, field] of [
      ["eventType=bad type", "eventType"],
      ["eventType=order.*.paid", "eventType"],
      ["type=order.*", "type"], // the old name: refused rather than ignored, which listed every event
      ["since=yesterday", "since"],
      ["until=2024-13-01T00:00:00Z", "until"],
      ["cursor=ep_00000000000000000000000000000000", "cursor"],
    ] as const) {
      const res = await api.request("GET", `/events?${encodeURI(query)}`);
      expect(res.status).toBe(422);
      expect(res.body.errors.map((e: { field: string }) => e.field)).toEqual([field]);
    }
  });
});

describe("TTL", () => {
  const expiryOf = async (eventId: string) =>
    (await api.sql<{ endpointId: string; ttlMs: number | null }[]>`
      select endpoint_id, (extract(epoch from expires_at - created_at) * 1000)::int as ttl_ms from jobs
      where event_id = ${eventId} order by endpoint_id`).map((r) => [r.endpointId, r.ttlMs]);

  test("an event's ttlSeconds, else its endpoint's, sets when each job expires; none: never", async () => {
    const plain = await endpoint(["ttl.a"]);
    const short = await endpoint(["ttl.a"], { ttlSeconds: 60 });
    const own = await api.request("POST", "/events", { body: { type: "ttl.a", data: {}, ttlSeconds: 5 } });
    expect(own.status).toBe(202);
    expect(await expiryOf(own.body.id)).toEqual([[plain, 5000], [short, 5000]].sort());
    const inherited = await api.request("POST", "/events", { body: { type: "ttl.a", data: {} } });
    expect(await expiryOf(inherited.body.id)).toEqual([[plain, null], [short, 60_000]].sort());
    const job = await api.request("GET", `/jobs/${inherited.body.jobs.find((j: { endpointId: string }) => j.endpointId === short).id}`);
    expect(Date.parse(job.body.expiresAt) - Date.parse(job.body.createdAt)).toBe(60_000);
  });

  test("a ttlSeconds out of range is 422 naming the field, and nothing is written", async () => {
    for (const ttlSeconds of [0, -1, 1.5, 2_592_001, "60"]) {
      const res = await api.request("POST", "/events", { body: { type: "ttl.bad", data: {}, ttlSeconds } });
      expect(res.status).toBe(422);
      expect(JSON.stringify(res.body)).toContain("ttlSeconds");
    }
    expect((await api.sql`select 1 from events where type = 'ttl.bad'`).length).toBe(0);
  });
});
