import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { asAdminOf, TEST_ADMIN_KEY } from "../support/keys.ts";
import { pollUntil } from "../support/poll.ts";
import { hookUrl, routeTable, startApi, type TestApi } from "./harness.ts";

let api: TestApi;
beforeAll(async () => {
  api = await startApi({ renderMetrics: async () => "m 1\n" });
});
afterAll(async () => {
  await api.close();
});

const admin = { key: TEST_ADMIN_KEY };

async function newApplication(body: Record<string, unknown> = {}): Promise<{ id: string; uid: string | null }> {
  const res = await api.request("POST", "/applications", { ...admin, body: { name: "Customer", ...body } });
  expect(res.status).toBe(201);
  return res.body;
}

async function newKey(app: string, body: Record<string, unknown> = {}): Promise<{ id: string; key: string; prefix: string }> {
  const res = await api.request("POST", `/applications/${app}/api-keys`, { ...admin, body: { name: "svc", ...body } });
  expect(res.status).toBe(201);
  return res.body;
}

describe("keys", () => {
  test("no key, a wrong one or a malformed header is 401 with WWW-Authenticate, and writes nothing", async () => {
    const before = await api.fingerprint();
    const wrong = [
      null,
      "evk_" + "A".repeat(43),
      "not-a-key",
      `${TEST_ADMIN_KEY}x`,
      `Basic ${TEST_ADMIN_KEY}`,
    ];
    for (const key of wrong) {
      const headers: Record<string, string> = key?.startsWith("Basic") ? { authorization: key } : {};
      const res = await api.request("POST", "/endpoints", { key: key?.startsWith("Basic") ? null : key, headers, body: { url: hookUrl() } });
      expect(res.status).toBe(401);
      expect(res.body.code).toBe("unauthorized");
      expect(res.headers.get("www-authenticate")).toStartWith('Bearer realm="evently"');
    }
    // The key is checked before the body is read: a broken body still gets the 401.
    expect((await api.request("POST", "/events", { key: null, body: "{" })).status).toBe(401);
    expect(await api.fingerprint()).toEqual(before);
  });

  test("health, readiness, metrics and the OpenAPI document need no key", async () => {
    for (const path of ["/health", "/ready", "/openapi", "/metrics", "/health/"]) {
      expect((await api.request("GET", path, { key: null })).status).toBe(200);
    }
  });

  test("an application key is shown once, stored as a digest, listed without it, and works at once", async () => {
    const app = await newApplication({ uid: "customer-1" });
    const created = await newKey(app.id, { name: "billing" });
    expect(created.key).toMatch(/^evk_[A-Za-z0-9_-]{43}$/);
    expect(created.key.startsWith(created.prefix)).toBe(true);
    const [stored] = await api.sql`select key_hash from api_keys where id = ${created.id}`;
    expect(stored!.keyHash).toMatch(/^[0-9a-f]{64}$/);
    expect(stored!.keyHash).not.toContain(created.key.slice(4));

    const listed = await api.request("GET", "/applications/customer-1/api-keys", admin);
    expect(listed.status).toBe(200);
    expect(listed.body.data).toHaveLength(1);
    expect(listed.body.data[0]).toMatchObject({ id: created.id, name: "billing", prefix: created.prefix, revokedAt: null });
    expect(JSON.stringify(listed.body)).not.toContain(created.key);

    const endpoint = await api.request("POST", "/endpoints", { key: created.key, body: { url: hookUrl() } });
    expect(endpoint.status).toBe(201);
    // The admin key acts on the application named by id or uid, and sees the same.
    for (const name of [app.id, "customer-1"]) {
      const seen = await api.request("GET", "/endpoints", { key: null, headers: asAdminOf(name) });
      expect(seen.body.data.map((e: { id: string }) => e.id)).toEqual([endpoint.body.id]);
    }
    // The default application's key does not see it.
    expect((await api.request("GET", `/endpoints/${endpoint.body.id}`)).status).toBe(404);
  });

  test("the admin key must name the application on application routes; an unknown one is 404", async () => {
    const missing = await api.request("GET", "/endpoints", admin);
    expect(missing.status).toBe(422);
    expect(missing.body.errors[0].field).toBe("Evently-Application");
    const unknown = await api.request("GET", "/endpoints", { key: null, headers: asAdminOf("nobody-here") });
    expect(unknown.status).toBe(404);
  });

  test("an application key naming another application in the header is 404, as if it did not exist", async () => {
    const other = await newApplication({ uid: "customer-other" });
    for (const name of [other.id, "customer-other"]) {
      const res = await api.request("GET", "/endpoints", { headers: { "evently-application": name } });
      expect(res.status).toBe(404);
    }
    expect((await api.request("GET", "/endpoints", { headers: { "evently-application": "default" } })).status).toBe(200);
  });

  test("a revoked key is refused at once; it stays listed with revokedAt", async () => {
    const app = await newApplication();
    const { id, key } = await newKey(app.id);
    expect((await api.request("GET", "/endpoints", { key })).status).toBe(200); // cached now
    expect((await api.request("DELETE", `/applications/${app.id}/api-keys/${id}`, admin)).status).toBe(204);
    // The cache drops on the notification, which arrives within milliseconds.
    const refused = await pollUntil(
      async () => {
        const res = await api.request("GET", "/endpoints", { key });
        return res.status === 401 && res;
      },
      { timeoutMs: 2000, what: "the revoked key to be refused" },
    );
    expect(refused.body.detail).toContain("revoked");
    const listed = await api.request("GET", `/applications/${app.id}/api-keys`, admin);
    expect(listed.body.data[0].revokedAt).not.toBeNull();
    expect((await api.request("DELETE", `/applications/${app.id}/api-keys/${id}`, admin)).status).toBe(204);
  });

  test("an expired key is refused; expiry must be in the future", async () => {
    const app = await newApplication();
    const past = await api.request("POST", `/applications/${app.id}/api-keys`, {
      ...admin,
      body: { name: "x", expiresAt: new Date(Date.now() - 1000).toISOString() },
    });
    expect(past.status).toBe(422);
    const { key } = await newKey(app.id, { expiresAt: new Date(Date.now() + 800).toISOString() });
    expect((await api.request("GET", "/endpoints", { key })).status).toBe(200);
    await Bun.sleep(900);
    const res = await api.request("GET", "/endpoints", { key });
    expect(res.status).toBe(401);
    expect(res.body.detail).toContain("expired");
  });

  test("deleting an application deletes its keys and everything in it", async () => {
    const app = await newApplication();
    const { key } = await newKey(app.id);
    const endpoint = await api.request("POST", "/endpoints", { key, body: { url: hookUrl(), eventTypes: ["*"] } });
    expect((await api.request("POST", "/events", { key, body: { type: "a.b", data: {} } })).status).toBe(202);
    expect((await api.request("DELETE", `/applications/${app.id}`, admin)).status).toBe(204);
    await pollUntil(async () => (await api.request("GET", "/endpoints", { key })).status === 401, { timeoutMs: 2000 });
    for (const table of ["endpoints", "routes", "events", "jobs", "api_keys"]) {
      const [row] = await api.sql`select count(*)::int as n from ${api.sql(table)} where app_id = ${app.id}`;
      expect(row!.n).toBe(0);
    }
    expect(endpoint.status).toBe(201);
    expect((await api.request("GET", `/applications/${app.id}`, admin)).status).toBe(404);
  });
});

describe("applications", () => {
  test("uids are unique, never look like ids, and address the application everywhere an id does", async () => {
    const app = await newApplication({ uid: "acme.prod", metadata: { plan: "pro" }, rateLimitPerSecond: 100 });
    expect(app).toMatchObject({ uid: "acme.prod", metadata: { plan: "pro" }, rateLimitPerSecond: 100 });
    const clash = await api.request("POST", "/applications", { ...admin, body: { name: "x", uid: "acme.prod" } });
    expect(clash.status).toBe(409);
    const idLike = await api.request("POST", "/applications", { ...admin, body: { name: "x", uid: "app_123" } });
    expect(idLike.status).toBe(422);
    expect(idLike.body.errors[0].field).toBe("uid");
    const patched = await api.request("PATCH", "/applications/acme.prod", { ...admin, body: { name: "Acme", rateLimitPerSecond: null } });
    expect(patched.body).toMatchObject({ id: app.id, name: "Acme", uid: "acme.prod", rateLimitPerSecond: null });
    expect((await api.request("GET", `/applications/${app.id}`, admin)).body.name).toBe("Acme");
  });

  test("the default application exists and holds what the default key writes", async () => {
    const res = await api.request("GET", "/applications/default", admin);
    expect(res.status).toBe(200);
    expect(res.body.id).toBe("app_00000000000000000000000000000000");
  });

  test("every admin route refuses application keys with 403, naming no resource", async () => {
    const table = routeTable(api.config);
    const adminRoutes = table.filter((r) => r.access === "admin");
    expect(adminRoutes.length).toBeGreaterThanOrEqual(8);
    const before = await api.fingerprint();
    for (const route of adminRoutes) {
      const path = route.path.replace(/:(\w+)/g, "default");
      const res = await api.request(route.method, path, route.body ? { body: {} } : {});
      expect([route.method, route.path, res.status]).toEqual([route.method, route.path, 403]);
      expect(res.body.code).toBe("forbidden");
    }
    expect(await api.fingerprint()).toEqual(before);
  });
});

describe("ingest rate limit", () => {
  test("beyond the application's events per second: 429 with Retry-After, nothing written; a batch over the limit is 422", async () => {
    const app = await newApplication({ rateLimitPerSecond: 20 });
    const { key } = await newKey(app.id);
    const tooBig = await api.request("POST", "/events/batch", {
      key,
      body: { events: Array.from({ length: 21 }, () => ({ type: "rl.x", data: {} })) },
    });
    expect(tooBig.status).toBe(422);
    expect(tooBig.body.errors[0].field).toBe("events");

    const statuses: number[] = [];
    let refused: Awaited<ReturnType<typeof api.request>> | undefined;
    for (let i = 0; i < 60 && !refused; i++) {
      const res = await api.request("POST", "/events", { key, body: { type: "rl.x", data: { i } } });
      statuses.push(res.status);
      if (res.status === 429) refused = res;
    }
    expect(refused).toBeDefined();
    expect(refused!.body.code).toBe("rate_limited");
    expect(Number(refused!.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    const accepted = statuses.filter((s) => s === 202).length;
    const [stored] = await api.sql`select count(*)::int as n from events where app_id = ${app.id}`;
    expect(stored!.n).toBe(accepted);
    // Other applications are not held back by this one's limit.
    expect((await api.request("POST", "/events", { body: { type: "rl.x", data: {} } })).status).toBe(202);
  });
});
