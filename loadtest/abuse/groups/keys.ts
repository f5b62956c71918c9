import { randomBytes } from "node:crypto";
import type { ApiOperation } from "../../../services/http/operation.ts";
import type { Context } from "../context.ts";
import { pollUntil, type Res } from "../probe.ts";

const GROUP = "keys";

/** Any path of a route, its ids filled with well-formed ids nobody has (auth comes before the lookup). */
const pathOf = (route: ApiOperation, appId: string) =>
  route.path.replace(/:(\w+)/g, (_, param: string) => (param === "keyId" ? "key_00000000000000000000000000000000" : param === "id" && route.path.startsWith("/applications") ? appId : "ep_00000000000000000000000000000000"));

const bodyOf = (route: ApiOperation) => (route.body && !route.bodyOptional ? {} : undefined);

/**
 * Keys that must open nothing: none, malformed, wrong, revoked, expired, of a deleted application;
 * an application key on the admin routes; the admin key without naming an application. Every
 * non-public route of the table gets the missing-key and wrong-key cases.
 */
export async function keyCases(ctx: Context): Promise<void> {
  const { suite, a, adminKey, table } = ctx;
  const guarded = table.filter((r) => (r.access ?? "application") !== "public");
  const wrongKey = `evk_${randomBytes(32).toString("base64url")}`;
  const unauthorized = { status: 401, code: "unauthorized" };

  for (const route of guarded) {
    const path = pathOf(route, a.id);
    const body = bodyOf(route);
    const label = `${route.method} ${route.path}`;
    const noKey = await suite.refuse(GROUP, `${label} without a key`, { method: route.method, path, key: null, body }, unauthorized);
    if (noKey.status === 401) suite.control(GROUP, `${label}: the 401 carries WWW-Authenticate`, noKey.headers.get("www-authenticate")?.startsWith("Bearer") === true, noKey.headers.get("www-authenticate") ?? "none");
    await suite.refuse(GROUP, `${label} with an unknown key`, { method: route.method, path, key: wrongKey, body }, unauthorized);
    if (route.access === "admin") {
      await suite.refuse(GROUP, `${label} with an application key`, { method: route.method, path, key: a.key, body }, { status: 403, code: "forbidden" });
    } else {
      await suite.refuse(GROUP, `${label} with the admin key, no Evently-Application`, { method: route.method, path, key: adminKey, body }, { status: 422, code: "validation_failed", field: "Evently-Application" });
    }
  }

  // Malformed and near-miss keys, on one application route and one admin route.
  const near: [string, Record<string, string>][] = [
    ["a Basic credential", { authorization: `Basic ${Buffer.from(`${a.key}:`).toString("base64")}` }],
    ["the key without the Bearer scheme", { authorization: a.key }],
    ["Bearer with nothing after it", { authorization: "Bearer " }],
    ["two keys", { authorization: `Bearer ${wrongKey} ${a.key}` }],
    ["the key with one character changed", { authorization: `Bearer ${a.key.slice(0, -1)}${a.key.endsWith("A") ? "B" : "A"}` }],
    ["the key with a character added", { authorization: `Bearer ${a.key}x` }],
    ["the key cut short", { authorization: `Bearer ${a.key.slice(0, -1)}` }],
    ["the key's prefix alone", { authorization: `Bearer ${a.key.slice(0, 12)}` }],
    ["the key in upper case", { authorization: `Bearer ${a.key.toUpperCase()}` }],
    ["a 16 KiB key", { authorization: `Bearer evk_${"A".repeat(16 * 1024)}` }],
    ["the admin key with one character changed", { authorization: `Bearer ${adminKey.slice(0, -1)}${adminKey.endsWith("0") ? "1" : "0"}` }],
    ["the admin key cut short", { authorization: `Bearer ${adminKey.slice(0, -1)}` }],
    ["the admin key with a character added", { authorization: `Bearer ${adminKey}0` }],
    ["the key in a cookie", { cookie: `authorization=Bearer ${a.key}` }],
    ["the key as X-Api-Key", { "x-api-key": a.key }],
  ];
  for (const [name, headers] of near) {
    // A header past the server's limit is refused before any route sees it: 431.
    const expect = name.includes("16 KiB") ? { status: [401, 431] } : unauthorized;
    await suite.refuse(GROUP, `GET /endpoints with ${name}`, { method: "GET", path: "/endpoints", key: null, headers }, expect);
  }
  await suite.refuse(GROUP, "GET /applications with the admin key cut short", { method: "GET", path: "/applications", key: `${adminKey.slice(0, -1)}` }, unauthorized);
  await suite.refuse(GROUP, "GET /endpoints with the key in the query string", { method: "GET", path: `/endpoints?api_key=${encodeURIComponent(a.key)}`, key: null }, { status: [401, 422] });

  await revokedKey(ctx);
  await expiredKey(ctx);
  await deletedApplication(ctx);
}

/** Polls `path` with `key` until a 401, for at most `ms`: revocation travels by LISTEN/NOTIFY. */
async function untilRefused(ctx: Context, key: string, ms: number): Promise<{ res: Res; afterMs: number } | undefined> {
  const started = Date.now();
  return pollUntil(async () => {
    const res = await ctx.suite.send({ method: "GET", path: "/endpoints", key });
    return res.status === 200 ? undefined : { res, afterMs: Date.now() - started };
  }, ms, 25);
}

async function revokedKey(ctx: Context): Promise<void> {
  const { suite, adminKey } = ctx;
  const c = await ctx.createApp("abuse revoked");
  const before = await suite.send({ method: "GET", path: "/endpoints", key: c.key });
  suite.control(GROUP, "a key works before it is revoked", before.status === 200, `${before.status}`);
  const revoke = await suite.send({ method: "DELETE", path: `/applications/${c.id}/api-keys/${c.keyId}`, key: adminKey });
  suite.control(GROUP, "the admin key revokes it", revoke.status === 204, `${revoke.status} ${revoke.text}`);
  const refused = await untilRefused(ctx, c.key, 2000);
  const last = refused?.res ?? (await suite.send({ method: "GET", path: "/endpoints", key: c.key }));
  suite.judge(GROUP, "a revoked key, within 2 s of revocation", `GET /endpoints with a key revoked ${refused ? `${refused.afterMs} ms` : "2 s"} before`, last, { status: 401, code: "unauthorized" });
}

async function expiredKey(ctx: Context): Promise<void> {
  const { suite, adminKey } = ctx;
  const c = await ctx.createApp("abuse expiring");
  const expiresAt = new Date(Date.now() + 1500);
  const made = await suite.send({ method: "POST", path: `/applications/${c.id}/api-keys`, key: adminKey, body: { name: "short-lived", expiresAt: expiresAt.toISOString() } });
  const key: string = made.json?.key;
  const before = await suite.send({ method: "GET", path: "/endpoints", key });
  suite.control(GROUP, "a key works before it expires", made.status === 201 && before.status === 200, `POST api-keys ${made.status}; GET /endpoints ${before.status}`);
  await Bun.sleep(Math.max(0, expiresAt.getTime() - Date.now()) + 50);
  await suite.refuse(GROUP, "an expired key", { method: "GET", path: "/endpoints", key }, { status: 401, code: "unauthorized" });
  await suite.refuse(
    GROUP,
    "a key made already expired",
    { method: "POST", path: `/applications/${c.id}/api-keys`, key: adminKey, body: { name: "expired", expiresAt: new Date(Date.now() - 60_000).toISOString() } },
    { status: 422, code: "validation_failed", field: "expiresAt" },
  );
}

async function deletedApplication(ctx: Context): Promise<void> {
  const { suite, adminKey } = ctx;
  const d = await ctx.createApp("abuse deleted");
  const gone = await suite.send({ method: "DELETE", path: `/applications/${d.id}`, key: adminKey });
  suite.control(GROUP, "the admin key deletes an application", gone.status === 204, `${gone.status} ${gone.text}`);
  const refused = await untilRefused(ctx, d.key, 2000);
  const last = refused?.res ?? (await suite.send({ method: "GET", path: "/endpoints", key: d.key }));
  suite.judge(GROUP, "the key of a deleted application, within 2 s", "GET /endpoints with the key of a deleted application", last, { status: 401, code: "unauthorized" });
  await suite.refuse(GROUP, "the admin key acting as a deleted application", { method: "GET", path: "/endpoints", key: adminKey, headers: { "evently-application": d.id } }, { status: 404, code: "not_found" });
}
