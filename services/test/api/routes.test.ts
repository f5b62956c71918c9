import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { hookUrl, startApi, type TestApi } from "./harness.ts";

let api: TestApi;
let endpointId: string;
beforeAll(async () => {
  api = await startApi();
  endpointId = (await api.request("POST", "/endpoints", { body: { url: hookUrl() } })).body.id;
});
afterAll(async () => {
  await api.close();
});

describe("routes", () => {
  test("create, get, list by endpoint, delete", async () => {
    const created = await api.request("POST", "/routes", { body: { endpointId, eventType: "order.paid" } });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ endpointId, eventType: "order.paid" });
    expect(created.body.id).toMatch(/^rt_[0-9a-f]{32}$/);

    const got = await api.request("GET", `/routes/${created.body.id}`);
    expect(got.status).toBe(200);
    expect(got.body).toEqual(created.body);

    const listed = await api.request("GET", `/routes?endpointId=${endpointId}`);
    expect(listed.body.data.map((r: { id: string }) => r.id)).toContain(created.body.id);

    // The endpoint shows its routes too.
    expect((await api.request("GET", `/endpoints/${endpointId}`)).body.eventTypes).toContain("order.paid");

    const deleted = await api.request("DELETE", `/routes/${created.body.id}`);
    expect(deleted.status).toBe(204);
    expect((await api.request("GET", `/routes/${created.body.id}`)).status).toBe(404);
    expect((await api.request("DELETE", `/routes/${created.body.id}`)).status).toBe(404);
  });

  test("accepts exact types, prefix patterns and *", async () => {
    for (const eventType of ["a", "order.paid", "order.*", "a.b-c.d_e:f.*", "*"]) {
      const res = await api.request("POST", "/routes", { body: { endpointId, eventType } });
      expect(res.status).toBe(201);
      expect(res.body.eventType).toBe(eventType);
    }
  });

  test("refuses malformed patterns with 422 naming eventType, writing nothing", async () => {
    const before = await api.fingerprint();
    for (const eventType of ["", "order.", ".order", "order..paid", "order.*.paid", "or*der", "order.pa*", "**", "order paid", "é.x", "a".repeat(201), 5]) {
      const res = await api.request("POST", "/routes", { body: { endpointId, eventType } });
      expect(res.status).toBe(422);
      expect(res.body.code).toBe("validation_failed");
      expect(res.body.errors.map((e: { field: string }) => e.field)).toEqual(["eventType"]);
    }
    expect(await api.fingerprint()).toBe(before);
  });

  test("a duplicate route is 409 conflict", async () => {
    const first = await api.request("POST", "/routes", { body: { endpointId, eventType: "dup.type" } });
    expect(first.status).toBe(201);
    const before = await api.counts();
    const second = await api.request("POST", "/routes", { body: { endpointId, eventType: "dup.type" } });
    expect(second.status).toBe(409);
    expect(second.body.code).toBe("conflict");
    expect(await api.counts()).toEqual(before);
  });

  test("an unknown or malformed endpointId is 422 naming endpointId", async () => {
    const before = await api.counts();
    for (const id of ["ep_00000000000000000000000000000000", "ep_nope", "rt_00000000000000000000000000000000"]) {
      const res = await api.request("POST", "/routes", { body: { endpointId: id, eventType: "a.b" } });
      expect(res.status).toBe(422);
      expect(res.body.code).toBe("validation_failed");
      expect(res.body.errors[0].field).toBe("endpointId");
    }
    const missing = await api.request("POST", "/routes", { body: { eventType: "a.b" } });
    expect(missing.status).toBe(422);
    expect(missing.body.errors).toEqual([{ field: "endpointId", message: "required" }]);
    expect(await api.counts()).toEqual(before);
  });

  test("list pages with cursors and filters by endpoint", async () => {
    const other = (await api.request("POST", "/endpoints", { body: { url: hookUrl(), eventTypes: ["o.1", "o.2", "o.3"] } }))
      .body.id;
    const first = await api.request("GET", `/routes?endpointId=${other}&limit=2`);
    expect(first.status).toBe(200);
    expect(first.body.data).toHaveLength(2);
    expect(first.body.data.every((r: { endpointId: string }) => r.endpointId === other)).toBe(true);
    expect(first.body.nextCursor).toBe(first.body.data[1].id);
    const second = await api.request("GET", `/routes?endpointId=${other}&limit=2&cursor=${first.body.nextCursor}`);
    expect(second.body.data).toHaveLength(1);
    expect(second.body.nextCursor).toBeNull();
    const types = [...first.body.data, ...second.body.data].map((r: { eventType: string }) => r.eventType).sort();
    expect(types).toEqual(["o.1", "o.2", "o.3"]);

    const all = await api.request("GET", "/routes?limit=250");
    expect(all.body.data.length).toBe((await api.counts()).routes);

    const bad = await api.request("GET", "/routes?endpointId=nope");
    expect(bad.status).toBe(422);
    expect(bad.body.errors[0].field).toBe("endpointId");
  });

  test("unknown route ids are 404", async () => {
    for (const id of ["rt_00000000000000000000000000000000", "garbage", "ep_00000000000000000000000000000000"]) {
      const res = await api.request("GET", `/routes/${id}`);
      expect(res.status).toBe(404);
      expect(res.body.code).toBe("not_found");
    }
  });
});
