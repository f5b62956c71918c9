import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { SecretCipher } from "../../core/secrets/cipher.ts";
import { decryptHeaders, decryptSecrets, decryptUrlPassword } from "../../core/secrets/fields.ts";
import { hookUrl, startApi, type TestApi, type TestResponse } from "./harness.ts";

let api: TestApi;
beforeAll(async () => {
  api = await startApi();
});
afterAll(async () => {
  await api.close();
});

const create = (body: Record<string, unknown>) => api.request("POST", "/endpoints", { body: { url: hookUrl(), ...body } });

const cipher = () => SecretCipher.fromConfig(api.config.secrets);

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
    // Stored encrypted (ENCRYPTION_KEY), never as it was shown.
    expect(stored[0]!.secret).toStartWith("evenc:v1:");
    expect(stored[0]!.secret).not.toContain(res.body.secret.slice(6));
    expect(await cipher().decrypt(stored[0]!.secret)).toBe(res.body.secret);

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
      headers: { "x-api_key": "[redacted]", "x-team": "payments" },
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

  test("unknown fields are refused, each named, and nothing is stored", async () => {
    const before = await api.counts();
    const res = await create({ colour: "blue", id: "ep_00000000000000000000000000000000" });
    expect(res.status).toBe(422);
    expect(res.body.errors).toEqual([
      { field: "colour", message: "unknown field" },
      { field: "id", message: "unknown field" },
    ]);
    expect(await api.counts()).toEqual(before);
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

  test("secret rotation keeps the old secret for the grace window: 24h by default, 0 drops it, one kept", async () => {
    const made = await create({});
    const id = made.body.id;
    const stored = async () =>
      decryptSecrets(
        cipher(),
        (
          await api.sql<{ secret: string; previousSecret: string | null; previousSecretExpiresAt: Date | null }[]>`
            select secret, previous_secret, previous_secret_expires_at from endpoints where id = ${id}`
        )[0]!,
      );
    const near = (iso: string, seconds: number) => expect(Math.abs(Date.parse(iso) - (Date.now() + seconds * 1000))).toBeLessThan(10_000);

    // No body, no content type: the default grace.
    const first = await api.request("POST", `/endpoints/${id}/secret/rotate`);
    expect(first.status).toBe(200);
    near(first.body.previousSecretExpiresAt, 86_400);
    expect(await stored()).toMatchObject({ secret: first.body.secret, previousSecret: made.body.secret });
    const read = await api.request("GET", `/endpoints/${id}`);
    expect(read.body.previousSecretExpiresAt).toBe(first.body.previousSecretExpiresAt);
    expect(JSON.stringify(read.body)).not.toContain(made.body.secret);
    expect((await api.request("GET", `/endpoints/${id}/secret`)).body).toEqual({ secret: first.body.secret });

    // Rotating again inside the window: the newest previous secret is kept, the older one dropped.
    const second = await api.request("POST", `/endpoints/${id}/secret/rotate`, { body: { graceSeconds: 60 } });
    expect(second.status).toBe(200);
    near(second.body.previousSecretExpiresAt, 60);
    expect(await stored()).toMatchObject({ secret: second.body.secret, previousSecret: first.body.secret });

    // An empty JSON object is the default too.
    const third = await api.request("POST", `/endpoints/${id}/secret/rotate`, { body: {} });
    near(third.body.previousSecretExpiresAt, 86_400);

    // 0: at once, and no previous secret left.
    const immediate = await api.request("POST", `/endpoints/${id}/secret/rotate`, { body: { graceSeconds: 0 } });
    expect(immediate.status).toBe(200);
    expect(immediate.body.previousSecretExpiresAt).toBeNull();
    expect(await stored()).toEqual({ secret: immediate.body.secret, previousSecret: null, previousSecretExpiresAt: null });
    expect((await api.request("GET", `/endpoints/${id}`)).body.previousSecretExpiresAt).toBeNull();
  });

  test("secret rotation refuses a grace outside 0 to 7 days, and a body that is not JSON", async () => {
    const made = await create({});
    const path = `/endpoints/${made.body.id}/secret/rotate`;
    const before = await api.fingerprint();
    for (const graceSeconds of [-1, 604_801, 1.5, "3600", null]) {
      const res = await api.request("POST", path, { body: { graceSeconds } });
      expect(res.status).toBe(422);
      expect(res.body).toMatchObject({ code: "validation_failed", errors: [{ field: "graceSeconds" }] });
    }
    const asText = await api.request("POST", path, { body: JSON.stringify({ graceSeconds: 0 }), headers: { "content-type": "text/plain" } });
    expect(asText.status).toBe(415);
    // A body with content still needs its content type, even where the body may be left out.
    const untyped = await api.app.handle(new Request(`http://localhost${path}`, {
        method: "POST",
        headers: { authorization: `Bearer ${api.appKey}` },
        body: '{"graceSeconds":0}',
      }),);
    expect(untyped.status).toBe(415);
    expect(await api.fingerprint()).toBe(before);
    // The bounds themselves are accepted.
    expect((await api.request("POST", path, { body: { graceSeconds: 604_800 } })).status).toBe(200);
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

describe("custom headers", () => {
  const refused = (headers: Record<string, string>) => api.request("POST", "/endpoints", { body: { url: hookUrl(), headers } });

  test("names Evently sets or that break framing are a 422 naming headers.<name>; nothing written", async () => {
    const before = await api.fingerprint();
    for (const name of ["User-Agent", "webhook-foo", "Webhook-Signature", "host", "content-length", "Content-Type", "transfer-encoding", "connection"]) {
      const res = await refused({ [name]: "v" });
      expect([name, res.status, res.body.code]).toEqual([name, 422, "validation_failed"]);
      expect(res.body.errors).toEqual([{ field: `headers.${name}`, message: "header is set by Evently and cannot be given" }]);
    }
    expect(await api.fingerprint()).toBe(before);
  });

  test("CR, LF or NUL in a name or value, or a name that is not an HTTP token, is a 422 naming it", async () => {
    const cases: [string, string][] = [
      ["x-a", "v\r\nx-b: injected"],
      ["x-a", "v\nx"],
      ["x-a", "v\rx"],
      ["x-a", "v\u0000x"],
      ["x-a\r\nx-b", "v"],
      ["x-a\u0000", "v"],
      ["x a", "v"],
      ["x:a", "v"],
      ["x-é", "v"],
      ["", "v"],
    ];
    const before = await api.fingerprint();
    for (const [name, value] of cases) {
      const res = await refused({ [name]: value });
      expect([name, value, res.status]).toEqual([name, value, 422]);
      // A NUL is refused before the model sees the body, by the check for what Postgres cannot
      // store, which spells the NUL in the field name its own way.
      const fields = res.body.errors.map((e: { field: string }) => e.field);
      expect(fields).toHaveLength(1);
      if (name.includes("\u0000")) expect(fields[0]).toStartWith(`headers.${name.split("\u0000")[0]}`);
      else expect(fields[0]).toBe(`headers.${name}`);
    }
    expect(await api.fingerprint()).toBe(before);
  });

  test("PATCH validates headers the same way", async () => {
    const ep = (await create({})).body;
    const res = await api.request("PATCH", `/endpoints/${ep.id}`, { body: { headers: { "user-agent": "mine" } } });
    expect(res.status).toBe(422);
    expect(res.body.errors.map((e: { field: string }) => e.field)).toEqual(["headers.user-agent"]);
    expect((await api.request("GET", `/endpoints/${ep.id}`)).body.headers).toEqual({});
  });

  test("ordinary headers, including tabs and printable punctuation in values, are accepted", async () => {
    const res = await create({ headers: { authorization: "Bearer a.b-c_d~", "x-list": "a,\tb; q=0.5" } });
    expect(res.status).toBe(201);
    expect(res.body.headers).toEqual({ authorization: "[redacted]", "x-list": "a,\tb; q=0.5" });
    const [stored] = await api.sql`select headers from endpoints where id = ${res.body.id}`;
    expect(stored!.headers.authorization).toStartWith("evenc:v1:");
    expect(await decryptHeaders(cipher(), stored!.headers)).toEqual({ authorization: "Bearer a.b-c_d~", "x-list": "a,\tb; q=0.5" });
  });
});

describe("credentials in the url and headers", () => {
  const secretHeaders = {
    Authorization: "Bearer tok-1",
    cookie: "session=c-1",
    "x-api-key": "k-1",
    "x-auth-token": "t-1",
    "x-client-secret": "s-1",
    "x-hub-signature": "h-1",
    "x-tenant": "acme",
  };
  /** The row with its url password and credential headers decrypted: they are stored encrypted. */
  const storedRow = async (id: string) => {
    const row = (await api.sql<{ url: string; headers: Record<string, string> }[]>`select url, headers from endpoints where id = ${id}`)[0]!;
    expect(row.url).not.toContain("pw-");
    expect(row.url).not.toContain("p%40ss");
    return { url: await decryptUrlPassword(cipher(), row.url), headers: await decryptHeaders(cipher(), row.headers) };
  };

  test("every read shows the url's password and credential-like header values as [redacted]; the store keeps them", async () => {
    const url = `https://hook-user:p%40ss-1@hooks.example.com/creds/${Date.now()}?q=1`;
    const made = await create({ url, headers: secretHeaders });
    expect(made.status).toBe(201);
    const redactedUrl = url.replace(":p%40ss-1@", ":[redacted]@");
    const redactedHeaders = {
      authorization: "[redacted]",
      cookie: "[redacted]",
      "x-api-key": "[redacted]",
      "x-auth-token": "[redacted]",
      "x-client-secret": "[redacted]",
      "x-hub-signature": "[redacted]",
      "x-tenant": "acme",
    };
    const id = made.body.id;
    const got = await api.request("GET", `/endpoints/${id}`);
    const patched = await api.request("PATCH", `/endpoints/${id}`, { body: { description: "d" } });
    const listed = await api.request("GET", "/endpoints?limit=250");
    const fromList = listed.body.data.find((e: { id: string }) => e.id === id);
    for (const body of [made.body, got.body, patched.body, fromList]) {
      expect(body.url).toBe(redactedUrl);
      expect(body.headers).toEqual(redactedHeaders);
      for (const leaked of ["p%40ss-1", "p@ss-1", "tok-1", "c-1", "k-1", "t-1", "s-1", "h-1"]) expect(JSON.stringify(body)).not.toContain(leaked);
    }
    const stored = await storedRow(id);
    expect(stored.url).toBe(url);
    expect(stored.headers).toEqual(Object.fromEntries(Object.entries(secretHeaders).map(([k, v]) => [k.toLowerCase(), v])));
  });

  test("an endpoint read and PATCHed back whole keeps its real credentials; new values replace them", async () => {
    const url = `https://hook-user:pw-2@hooks.example.com/creds/${Date.now()}`;
    const id = (await create({ url, headers: { authorization: "Bearer tok-2", "x-tenant": "acme" } })).body.id;
    const read = (await api.request("GET", `/endpoints/${id}`)).body;
    const back = await api.request("PATCH", `/endpoints/${id}`, {
      body: { url: read.url, headers: { ...read.headers, "x-tenant": "globex" }, description: "round trip" },
    });
    expect(back.status).toBe(200);
    expect(back.body.headers).toEqual({ authorization: "[redacted]", "x-tenant": "globex" });
    expect(await storedRow(id)).toEqual({ url, headers: { authorization: "Bearer tok-2", "x-tenant": "globex" } });

    // A changed path keeps the password too; a real new value replaces the stored one.
    const moved = await api.request("PATCH", `/endpoints/${id}`, {
      body: { url: read.url.replace("/creds/", "/moved/"), headers: { Authorization: "Bearer tok-3" } },
    });
    expect(moved.status).toBe(200);
    expect(await storedRow(id)).toEqual({ url: url.replace("/creds/", "/moved/"), headers: { authorization: "Bearer tok-3" } });
  });

  test("[redacted] with nothing to keep, or a url for another host or user, is a 422; nothing written", async () => {
    const id = (await create({ url: `https://u:pw-3@hooks.example.com/x`, headers: { authorization: "Bearer tok-4" } })).body.id;
    const before = await api.fingerprint();
    const cases: [string, Record<string, unknown>, string][] = [
      ["POST", { url: hookUrl(), headers: { authorization: "[redacted]" } }, "headers.authorization"],
      ["POST", { url: "https://u:[redacted]@hooks.example.com/x" }, "url"],
      ["PATCH", { headers: { "x-api-key": "[redacted]" } }, "headers.x-api-key"],
      ["PATCH", { url: "https://u:[redacted]@other.example.com/x" }, "url"],
      ["PATCH", { url: "https://someone-else:[redacted]@hooks.example.com/x" }, "url"],
      ["PATCH", { url: "http://u:[redacted]@hooks.example.com/x" }, "url"],
    ];
    for (const [method, body, field] of cases) {
      const res = await api.request(method, method === "POST" ? "/endpoints" : `/endpoints/${id}`, { body });
      expect([method, body, res.status]).toEqual([method, body, 422]);
      expect(res.body.errors.map((e: { field: string }) => e.field)).toEqual([field]);
    }
    expect(await api.fingerprint()).toBe(before);
  });
  test("stored credential headers follow the url to another origin only when given again", async () => {
    const id = (await create({ url: "https://hooks.example.com/a", headers: { authorization: "Bearer tok-5", "x-tenant": "t" } })).body.id;
    const before = await api.fingerprint();
    for (const body of [
      { url: "https://attacker.example.net/a" },
      { url: "https://attacker.example.net/a", headers: { authorization: "[redacted]", "x-tenant": "t" } },
      { url: "http://hooks.example.com/a" }, // another scheme is another origin
    ]) {
      const res = await api.request("PATCH", `/endpoints/${id}`, { body });
      expect([body, res.status]).toEqual([body, 422]);
      expect(res.body.errors.map((e: { field: string }) => e.field)).toEqual(["headers.authorization"]);
    }
    expect(await api.fingerprint()).toBe(before);
    // The same origin keeps them; a new origin takes new values, or none.
    expect((await api.request("PATCH", `/endpoints/${id}`, { body: { url: "https://hooks.example.com/b" } })).status).toBe(200);
    const moved = await api.request("PATCH", `/endpoints/${id}`, {
      body: { url: "https://new.example.org/a", headers: { authorization: "Bearer tok-6", "x-tenant": "t" } },
    });
    expect(moved.status).toBe(200);
    expect((await storedRow(id)).headers).toEqual({ authorization: "Bearer tok-6", "x-tenant": "t" });
    const dropped = await api.request("PATCH", `/endpoints/${id}`, { body: { url: "https://third.example.org/", headers: { "x-tenant": "t" } } });
    expect(dropped.status).toBe(200);
  });
});

describe("SSRF check on endpoint urls (DELIVERY_ALLOW_PRIVATE_NETWORKS=false)", () => {
  let guarded: TestApi;
  beforeAll(async () => {
    guarded = await startApi({ env: { DELIVERY_ALLOW_PRIVATE_NETWORKS: "false" } });
  });
  afterAll(async () => {
    await guarded.close();
  });

  const blocked: [url: string, why: string][] = [
    ["http://127.0.0.1/", "(loopback)"],
    ["http://10.0.0.1/", "(private)"],
    ["http://169.254.169.254/", "(cloud metadata)"],
    ["http://[::1]/", "(loopback)"],
    ["http://[::ffff:127.0.0.1]/", "(loopback)"],
    // Spellings the URL parser turns into 127.0.0.1.
    ["http://127.1/", "(loopback)"],
    ["http://0x7f.1/", "(loopback)"],
    ["http://2130706433/", "(loopback)"],
    ["http://localhost/", "localhost resolves to"],
  ];

  function expectBlocked(res: TestResponse, url: string, why: string) {
    expect([url, res.status, res.body.code]).toEqual([url, 422, "blocked_address"]);
    expect(res.body.errors).toHaveLength(1);
    expect(res.body.errors[0].field).toBe("url");
    expect(res.body.errors[0].message).toContain(why);
    expect(res.body.errors[0].message).toContain("DELIVERY_ALLOW_PRIVATE_NETWORKS=true");
    expect(res.body.detail).toStartWith("url: ");
  }

  test("create with a non-public address is a 422 blocked_address naming url and why; nothing written", async () => {
    const before = await guarded.fingerprint();
    for (const [url, why] of blocked) {
      expectBlocked(await guarded.request("POST", "/endpoints", { body: { url, eventTypes: ["order.*"] } }), url, why);
    }
    expect(await guarded.fingerprint()).toBe(before);
  });

  test("PATCH to a non-public address is refused the same way and changes nothing", async () => {
    const ep = (await guarded.request("POST", "/endpoints", { body: { url: "https://93.184.216.34/hooks" } })).body;
    const before = await guarded.fingerprint();
    for (const [url, why] of blocked) {
      expectBlocked(await guarded.request("PATCH", `/endpoints/${ep.id}`, { body: { url, description: "changed" } }), url, why);
    }
    expect(await guarded.fingerprint()).toBe(before);
  });

  test("a public literal address is accepted on create and PATCH", async () => {
    const created = await guarded.request("POST", "/endpoints", { body: { url: "https://93.184.216.34/" } });
    expect(created.status).toBe(201);
    const patched = await guarded.request("PATCH", `/endpoints/${created.body.id}`, { body: { url: "http://[2606:4700:4700::1111]:8080/x" } });
    expect(patched.status).toBe(200);
    expect(patched.body.url).toBe("http://[2606:4700:4700::1111]:8080/x");
  });

  test("a name that does not resolve is accepted (the worker checks again before each delivery)", async () => {
    const res = await guarded.request("POST", "/endpoints", { body: { url: "https://hooks.invalid/x" } });
    expect(res.status).toBe(201);
  });

  test("with DELIVERY_ALLOW_PRIVATE_NETWORKS=true the same urls are accepted", async () => {
    for (const [url] of blocked) {
      const res = await api.request("POST", "/endpoints", { body: { url } });
      expect([url, res.status]).toEqual([url, 201]);
    }
  });
});
