import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { hookUrl, startApi, type TestApi } from "./harness.ts";

let api: TestApi;
beforeAll(async () => {
  api = await startApi();
});
afterAll(async () => {
  await api.close();
});

const create = (body: Record<string, unknown>) => api.request("POST", "/endpoints", { body: { url: hookUrl(), ...body } });

describe("endpoints CRUD", () => {
  test("create returns the endpoint with its secret once, with defaults filled in", async () => {
    const url = hookUrl();
    const res = await api.request("POST", "/endpoints", { body: { url } });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({
      url,
      description: "",
      enabled: true,
      timeoutMs: null,
      rateLimitPerSecond: null,
      headers: {},
      metadata: {},
      eventTypes: [],
    });
    expect(res.body.id).toMatch(/^ep_[0-9a-f]{32}$/);
    expect(res.body.secret).toMatch(/^whsec_/);
    expect(new Date(res.body.createdAt).toISOString()).toBe(res.body.createdAt);

    const stored = await api.sql<{ secret: string }[]>`select secret from endpoints where id = ${res.body.id}`;
    expect(stored[0]!.secret).toBe(res.body.secret);

    const got = await api.request("GET", `/endpoints/${res.body.id}`);
    expect(got.status).toBe(200);
    expect(got.body.secret).toBeUndefined();
    const { secret: _secret, ...withoutSecret } = res.body;
    expect(got.body).toEqual(withoutSecret);
  });

  test("every field round-trips, header names lower-cased, user keys left as sent", async () => {
    const res = await create({
      description: "orders service",
      headers: { "X-Api_Key": "k", "x-team": "payments" },
      timeoutMs: 2500,
      metadata: { owner_team: "payments", "ends_": "x" },
      enabled: false,
      rateLimitPerSecond: 20,
      eventTypes: ["order.*", "invoice.paid", "order.*"],
    });
    expect(res.status).toBe(201);
    const got = await api.request("GET", `/endpoints/${res.body.id}`);
    expect(got.body).toMatchObject({
      description: "orders service",
      headers: { "x-api_key": "k", "x-team": "payments" },
      timeoutMs: 2500,
      metadata: { owner_team: "payments", "ends_": "x" },
      enabled: false,
      rateLimitPerSecond: 20,
      eventTypes: ["invoice.paid", "order.*"],
    });
    const routes = await api.sql`select event_type from routes where endpoint_id = ${res.body.id} order by event_type`;
    expect(routes.map((r) => r.eventType)).toEqual(["invoice.paid", "order.*"]);
  });

  test("a url over 2048 characters is a 422 naming url", async () => {
    const before = await api.counts();
    const res = await api.request("POST", "/endpoints", { body: { url: `https://a.example/${"x".repeat(2048)}` } });
    expect(res.status).toBe(422);
    expect(res.body.errors.map((e: { field: string }) => e.field)).toEqual(["url"]);
    expect(await api.counts()).toEqual(before);
  });

  test("unknown fields are ignored, not stored and not an error", async () => {
    const res = await create({ colour: "blue" });
    expect(res.status).toBe(201);
    expect(res.body.colour).toBeUndefined();
  });

  test("PATCH changes only the given fields; null resets nullable ones", async () => {
    const made = await create({ description: "before", timeoutMs: 1000, metadata: { a: "1" } });
    const id = made.body.id;
    const patched = await api.request("PATCH", `/endpoints/${id}`, { body: { description: "after", timeoutMs: null } });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({ description: "after", timeoutMs: null, metadata: { a: "1" }, url: made.body.url });
    expect(Date.parse(patched.body.updatedAt)).toBeGreaterThanOrEqual(Date.parse(made.body.updatedAt));

    const empty = await api.request("PATCH", `/endpoints/${id}`, { body: {} });
    expect(empty.status).toBe(200);
    expect(empty.body.description).toBe("after");
  });

  test("PATCH eventTypes replaces the routes, keeping ids of the ones that stay", async () => {
    const made = await create({ eventTypes: ["a.one", "b.*"] });
    const id = made.body.id;
    const [kept] = await api.sql`select id from routes where endpoint_id = ${id} and event_type = 'b.*'`;
    const res = await api.request("PATCH", `/endpoints/${id}`, { body: { eventTypes: ["b.*", "c.three"] } });
    expect(res.status).toBe(200);
    expect(res.body.eventTypes).toEqual(["b.*", "c.three"]);
    const [still] = await api.sql`select id from routes where endpoint_id = ${id} and event_type = 'b.*'`;
    expect(still!.id).toBe(kept!.id);

    const cleared = await api.request("PATCH", `/endpoints/${id}`, { body: { eventTypes: [] } });
    expect(cleared.body.eventTypes).toEqual([]);
  });

  test("DELETE removes the endpoint and its routes; a second DELETE is 404", async () => {
    const made = await create({ eventTypes: ["x.y"] });
    const id = made.body.id;
    const res = await api.request("DELETE", `/endpoints/${id}`);
    expect(res.status).toBe(204);
    expect(res.text).toBe("");
    expect((await api.request("GET", `/endpoints/${id}`)).status).toBe(404);
    expect(await api.sql`select 1 from routes where endpoint_id = ${id}`).toHaveLength(0);
    const again = await api.request("DELETE", `/endpoints/${id}`);
    expect(again.status).toBe(404);
    expect(again.body.code).toBe("not_found");
  });

  test("secret: read, rotate (a new one, stored), unknown endpoint 404", async () => {
    const made = await create({});
    const id = made.body.id;
    const read = await api.request("GET", `/endpoints/${id}/secret`);
    expect(read.status).toBe(200);
    expect(read.body).toEqual({ secret: made.body.secret });

    const rotated = await api.request("POST", `/endpoints/${id}/secret/rotate`);
    expect(rotated.status).toBe(200);
    expect(rotated.body.secret).toMatch(/^whsec_/);
    expect(rotated.body.secret).not.toBe(made.body.secret);
    expect((await api.request("GET", `/endpoints/${id}/secret`)).body.secret).toBe(rotated.body.secret);

    for (const path of ["/endpoints/ep_00000000000000000000000000000000/secret", "/endpoints/junk/secret/rotate"]) {
      const res = await api.request(path.endsWith("rotate") ? "POST" : "GET", path);
      expect(res.status).toBe(404);
      expect(res.body.code).toBe("not_found");
    }
  });

  test("unknown or malformed ids are 404 on every endpoint route", async () => {
    for (const id of ["ep_ffffffffffffffffffffffffffffffff", "nope", "rt_00000000000000000000000000000000"]) {
      for (const [method, body] of [["GET"], ["PATCH", { description: "x" }], ["DELETE"]] as const) {
        const res = await api.request(method, `/endpoints/${id}`, { body });
        expect(res.status).toBe(404);
        expect(res.body).toEqual({ code: "not_found", detail: `endpoint ${id} does not exist` });
      }
    }
  });
});

describe("endpoint list", () => {
  test("pages newest first with nextCursor until the end, each endpoint once", async () => {
    const made: string[] = [];
    for (let i = 0; i < 5; i++) made.push((await create({ description: `page-${i}` })).body.id);
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res: Awaited<ReturnType<TestApi["request"]>> = await api.request(
        "GET",
        `/endpoints?limit=2${cursor ? `&cursor=${cursor}` : ""}`,
      );
      expect(res.status).toBe(200);
      expect(res.body.data.length).toBeLessThanOrEqual(2);
      for (const e of res.body.data) expect(e.secret).toBeUndefined();
      seen.push(...res.body.data.map((e: { id: string }) => e.id));
      cursor = res.body.nextCursor;
      pages++;
    } while (cursor && pages < 100);
    const total = (await api.counts()).endpoints;
    expect(seen).toHaveLength(total);
    expect(new Set(seen).size).toBe(total);
    expect(seen).toEqual([...seen].sort().reverse());
    // The five just made are the newest, in reverse creation order.
    expect(seen.slice(0, 5)).toEqual([...made].reverse());
  });

  test("a full last page still says there is no next one", async () => {
    const total = (await api.counts()).endpoints;
    const res = await api.request("GET", `/endpoints?limit=${total}`);
    expect(res.body.data).toHaveLength(total);
    expect(res.body.nextCursor).toBeNull();
  });

  test("bad limit or cursor is a 422 naming it", async () => {
    for (const [query, field] of [
      ["limit=0", "limit"],
      ["limit=251", "limit"],
      ["limit=abc", "limit"],
      ["cursor=evt_00000000000000000000000000000000", "cursor"],
      ["cursor=garbage", "cursor"],
    ]) {
      const res = await api.request("GET", `/endpoints?${query}`);
      expect(res.status).toBe(422);
      expect(res.body.code).toBe("validation_failed");
      expect(res.body.errors.map((e: { field: string }) => e.field)).toEqual([field]);
    }
  });
});
