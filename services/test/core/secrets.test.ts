import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { ConfigError, loadConfig } from "../../core/config/index.ts";
import { createSql, type Sql } from "../../core/db/client.ts";
import { SecretCipher, encryptedPrefix, isEncrypted, keyIdOf } from "../../core/secrets/cipher.ts";
import {
  decryptHeaders,
  decryptSecrets,
  decryptUrlPassword,
  encryptHeaders,
  encryptSecrets,
  encryptUrlPassword,
} from "../../core/secrets/fields.ts";
import { reencryptEndpoints } from "../../core/secrets/reencrypt.ts";
import { generateSecret } from "../../core/signing/index.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";

// Encryption at rest: the stored form, what decrypts it and what refuses to, the keys' config, and
// re-encryption of a real database's endpoints under a new key.

const newKey = () => randomBytes(32);
const cipherOf = (current: Uint8Array, ...previous: Uint8Array[]) => new SecretCipher(current, previous);

/** `stored` with one byte of its ciphertext flipped, still well-formed. */
function flipByte(stored: string): string {
  const parts = stored.split(":");
  const sealed = Buffer.from(parts[4]!, "base64url");
  sealed[0]! ^= 0x01;
  parts[4] = sealed.toString("base64url");
  return parts.join(":");
}

describe("SecretCipher", () => {
  const key = newKey();
  const cipher = cipherOf(key);

  test("round trip, in one self-describing text value naming the key", async () => {
    for (const plaintext of [generateSecret(), "", "pässwörd: with colons: and ✓"]) {
      const stored = await cipher.encrypt(plaintext);
      expect(stored).toMatch(/^evenc:v1:[0-9a-f]{8}:[A-Za-z0-9_-]{16}:[A-Za-z0-9_-]+$/);
      expect(stored.startsWith(encryptedPrefix(keyIdOf(key)))).toBe(true);
      expect(cipher.keyId).toBe(keyIdOf(key));
      expect(isEncrypted(stored)).toBe(true);
      expect(cipher.isCurrent(stored)).toBe(true);
      expect(await cipher.decrypt(stored)).toBe(plaintext);
    }
    expect(isEncrypted(generateSecret())).toBe(false);
  });

  test("a random IV per value: the same plaintext encrypts differently each time", async () => {
    const secret = generateSecret();
    const [a, b] = await Promise.all([cipher.encrypt(secret), cipher.encrypt(secret)]);
    expect(a).not.toBe(b);
    expect(a.split(":")[3]).not.toBe(b.split(":")[3]);
  });

  test("an altered value fails authentication, without quoting it", async () => {
    const secret = generateSecret();
    const stored = await cipher.encrypt(secret);
    const error = await cipher.decrypt(flipByte(stored)).catch((err: Error) => err);
    expect((error as Error).message).toMatch(/failed authentication/);
    expect((error as Error).message).not.toContain(secret);
    // The IV, the tag (last bytes) and a truncation are covered as well.
    const parts = stored.split(":");
    const iv = Buffer.from(parts[3]!, "base64url");
    iv[5]! ^= 0x80;
    await expect(cipher.decrypt([...parts.slice(0, 3), iv.toString("base64url"), parts[4]].join(":"))).rejects.toThrow(/failed authentication/);
    const sealed = Buffer.from(parts[4]!, "base64url");
    sealed[sealed.length - 1]! ^= 0x01;
    await expect(cipher.decrypt([...parts.slice(0, 4), sealed.toString("base64url")].join(":"))).rejects.toThrow(/failed authentication/);
    await expect(cipher.decrypt(stored.slice(0, 40))).rejects.toThrow(/truncated|malformed/);
    await expect(cipher.decrypt(stored.replace(":v1:", ":v9:"))).rejects.toThrow(/version/);
    await expect(cipher.decrypt(secret)).rejects.toThrow(/not an encrypted value/);
  });

  test("the key id is authenticated: a value relabelled with another configured key's id fails", async () => {
    const other = newKey();
    const both = cipherOf(key, other);
    const stored = await both.encrypt("secret");
    const relabelled = stored.replace(`:${keyIdOf(key)}:`, `:${keyIdOf(other)}:`);
    await expect(both.decrypt(relabelled)).rejects.toThrow(/failed authentication/);
  });

  test("a value under a key that is not configured names the key id, not the key", async () => {
    const stranger = newKey();
    const stored = await cipherOf(stranger).encrypt("secret");
    const error = (await cipher.decrypt(stored).catch((err: Error) => err)) as Error;
    expect(error.message).toContain(`key id ${keyIdOf(stranger)}`);
    expect(error.message).toContain("ENCRYPTION_PREVIOUS_KEYS");
    for (const text of [stranger.toString("base64"), stranger.toString("base64url"), key.toString("base64")])
      expect(error.message).not.toContain(text);
  });

  test("previous keys decrypt but never encrypt", async () => {
    const old = newKey();
    const storedUnderOld = await cipherOf(old).encrypt("from before the rotation");
    const rotated = cipherOf(newKey(), old);
    expect(await rotated.decrypt(storedUnderOld)).toBe("from before the rotation");
    expect(rotated.isCurrent(storedUnderOld)).toBe(false);
    const fresh = await rotated.encrypt("after");
    expect(fresh.split(":")[2]).toBe(rotated.keyId);
    expect(rotated.keyIds).toEqual([rotated.keyId, keyIdOf(old)]);
  });

  test("row helpers: secrets and credential headers encrypted, legacy plaintext still read", async () => {
    const row = { id: "ep_1", secret: generateSecret(), previousSecret: null as string | null };
    const stored = await encryptSecrets(cipher, row);
    expect(stored.id).toBe("ep_1");
    expect(isEncrypted(stored.secret)).toBe(true);
    expect(stored.previousSecret).toBeNull();
    expect(await decryptSecrets(cipher, stored)).toEqual(row);
    // Rows from before encryption read as they are until `reencrypt` rewrites them.
    expect(await decryptSecrets(cipher, { ...row, previousSecret: "whsec_old" })).toEqual({ ...row, previousSecret: "whsec_old" });

    const headers = { Authorization: "Bearer abc", "x-api-key": "k1", "x-tenant": "acme" };
    const storedHeaders = await encryptHeaders(cipher, headers);
    expect(isEncrypted(storedHeaders.Authorization!)).toBe(true);
    expect(isEncrypted(storedHeaders["x-api-key"]!)).toBe(true);
    expect(storedHeaders["x-tenant"]).toBe("acme");
    expect(await decryptHeaders(cipher, storedHeaders)).toEqual(headers);
  });
});

describe("secrets config", () => {
  const base64 = newKey().toString("base64");
  const base64url = newKey().toString("base64url");

  function problemsOf(env: Record<string, string>): string[] {
    try {
      loadConfig(env);
    } catch (err) {
      if (err instanceof ConfigError) return err.problems;
      throw err;
    }
    return [];
  }

  test("keys in base64 or base64url, previous keys as a comma-separated list", () => {
    const config = loadConfig({ ENCRYPTION_KEY: base64, ENCRYPTION_PREVIOUS_KEYS: ` ${base64url} , ${base64.replace(/=$/, "")}` });
    expect(config.secrets.ENCRYPTION_KEY).toBe(base64);
    expect(config.secrets.ENCRYPTION_PREVIOUS_KEYS).toEqual([base64url, base64.replace(/=$/, "")]);
    const cipher = SecretCipher.fromConfig(config.secrets);
    expect(cipher.keyId).toBe(keyIdOf(Buffer.from(base64, "base64")));
    // The unpadded copy of the current key is the same key: kept once.
    expect(cipher.keyIds).toEqual([keyIdOf(Buffer.from(base64, "base64")), keyIdOf(Buffer.from(base64url, "base64url"))]);
  });

  test("unset: the schema allows it, the cipher refuses to start without a key", () => {
    const config = loadConfig({});
    expect(config.secrets.ENCRYPTION_KEY).toBeUndefined();
    expect(config.secrets.ENCRYPTION_PREVIOUS_KEYS).toEqual([]);
    expect(() => SecretCipher.fromConfig(config.secrets)).toThrow(/ENCRYPTION_KEY is not set/);
  });

  test("a key of the wrong length stops startup naming the variable", () => {
    const [problem] = problemsOf({ ENCRYPTION_KEY: randomBytes(16).toString("base64") });
    expect(problem).toStartWith("ENCRYPTION_KEY: decodes to 16 bytes; a key is exactly 32");
    expect(problemsOf({ ENCRYPTION_KEY: randomBytes(33).toString("base64url") })[0]).toContain("decodes to 33 bytes");
  });

  test("a key that is not base64 stops startup naming the variable", () => {
    // Mixes both alphabets (`-_` of base64url, `+/` of base64): fixed bytes, so it always holds a `-`.
    const mixed = `${Buffer.alloc(32, 0xfb).toString("base64url").slice(0, 20)}+/${base64url.slice(22)}`;
    for (const bad of ["not base64 at all!", mixed, `${base64.slice(0, 42)}=x`, "a=bc"])
      expect(problemsOf({ ENCRYPTION_KEY: bad })).toEqual([expect.stringMatching(/^ENCRYPTION_KEY: is not base64 or base64url/)]);
  });

  test("a bad previous key names the variable and which entry", () => {
    const problems = problemsOf({ ENCRYPTION_KEY: base64, ENCRYPTION_PREVIOUS_KEYS: `${base64url},${randomBytes(24).toString("base64")}` });
    expect(problems).toEqual([expect.stringMatching(/^ENCRYPTION_PREVIOUS_KEYS: key 2 decodes to 24 bytes/)]);
  });
});

describe("reencryptEndpoints", () => {
  const APP = "app_00000000000000000000000000000000"; // the default application (migration 0004)
  let db: TestDatabase;
  let sql: Sql;
  const oldKey = newKey();
  const currentKey = newKey();
  const beforeRotation = cipherOf(oldKey);
  const cipher = cipherOf(currentKey, oldKey);
  // What each endpoint's secrets are, whatever their stored form.
  const originals = new Map<string, { secret: string; previousSecret: string | null }>();

  async function insert(id: string, secret: string, previousSecret: string | null) {
    await sql`
      insert into endpoints (id, app_id, url, secret, previous_secret, previous_secret_expires_at, updated_at)
      values (${id}, ${APP}, 'https://example.com/hook', ${secret}, ${previousSecret},
              ${previousSecret === null ? null : new Date(Date.now() + 86_400_000)}, '2026-01-01T00:00:00Z')`;
  }

  async function stored() {
    const rows = await sql<{ id: string; secret: string; previousSecret: string | null; updatedAt: Date }[]>`
      select id, secret, previous_secret, updated_at from endpoints order by id`;
    return rows.map((row) => ({ ...row }));
  }

  beforeAll(async () => {
    db = await createTestDatabase();
    sql = createSql({ DATABASE_URL: db.url, DATABASE_POOL_MAX: 4 }, { pool: "test" });
    // Plaintext from before encryption, values under the old key, and some already under the current one.
    for (let i = 0; i < 23; i++) {
      const id = `ep_${String(i).padStart(3, "0")}`;
      const plain = { secret: generateSecret(), previousSecret: i % 3 === 0 ? generateSecret() : null };
      originals.set(id, plain);
      const writer = i % 4 === 0 ? cipher : beforeRotation;
      const row = i % 2 === 0 ? await encryptSecrets(writer, plain) : plain;
      await insert(id, row.secret, row.previousSecret);
    }
  });
  afterAll(async () => {
    await sql.end();
    await db.drop();
  });

  test("rewrites every secret not under the current key, in batches, and only those", async () => {
    const before = await stored();
    const untouched = before.filter((row) => cipher.isCurrent(row.secret) && (row.previousSecret === null || cipher.isCurrent(row.previousSecret)));
    expect(untouched.length).toBeGreaterThan(0);
    const batches: number[] = [];
    const result = await reencryptEndpoints(sql, cipher, { batchSize: 4, onBatch: (n) => batches.push(n) });
    expect(result).toEqual({ rewritten: before.length - untouched.length, remaining: 0 });
    expect(batches.length).toBeGreaterThan(1);

    const after = await stored();
    for (const row of after) {
      expect(row.secret.startsWith(encryptedPrefix(cipher.keyId))).toBe(true);
      if (row.previousSecret !== null) expect(row.previousSecret.startsWith(encryptedPrefix(cipher.keyId))).toBe(true);
      // Only the current key is needed from now on: the old one can be dropped.
      expect(await decryptSecrets(cipherOf(currentKey), row)).toMatchObject(originals.get(row.id)!);
      // How a secret is stored is not an endpoint change the API reports.
      expect(row.updatedAt.toISOString()).toBe("2026-01-01T00:00:00.000Z");
    }
    for (const row of untouched) expect(after.find((r) => r.id === row.id)).toEqual(row);
  });

  test("idempotent: a second run rewrites nothing", async () => {
    const before = await stored();
    expect(await reencryptEndpoints(sql, cipher, { batchSize: 4 })).toEqual({ rewritten: 0, remaining: 0 });
    expect(await stored()).toEqual(before);
  });

  test("skips rows another transaction holds and reports them; the next run finishes", async () => {
    await insert("ep_busy", "whsec_busy", null);
    await insert("ep_free", "whsec_free", null);
    let release!: () => void;
    let locked!: () => void;
    const isLocked = new Promise<void>((resolve) => (locked = resolve));
    const holder = sql.begin(async (tx) => {
      await tx`select 1 from endpoints where id = 'ep_busy' for update`;
      locked();
      await new Promise<void>((resolve) => (release = resolve));
    });
    await isLocked;
    expect(await reencryptEndpoints(sql, cipher)).toEqual({ rewritten: 1, remaining: 1 });
    release();
    await holder;
    expect(await reencryptEndpoints(sql, cipher)).toEqual({ rewritten: 1, remaining: 0 });
    const [busy] = await sql<{ secret: string }[]>`select secret from endpoints where id = 'ep_busy'`;
    expect(await cipher.decrypt(busy!.secret)).toBe("whsec_busy");
  });

  test("credential header values and a url's password are rewritten too; other headers are left alone", async () => {
    // As an endpoint written before encryption arrived holds them, then one written under the old key.
    const plainUrl = "https://hook-user:p%40ss-1@example.com/hook?q=1";
    const headers = { authorization: "Bearer tok-1", "x-api-key": "k-1", "x-tenant": "acme" };
    await sql`insert into endpoints (id, app_id, url, secret, headers)
              values ('ep_creds_plain', ${APP}, ${plainUrl}, ${await cipher.encrypt("whsec_c")}, ${sql.json(headers)})`;
    const oldHeaders = await encryptHeaders(beforeRotation, headers);
    await sql`insert into endpoints (id, app_id, url, secret, headers)
              values ('ep_creds_old', ${APP}, ${await encryptUrlPassword(beforeRotation, plainUrl)},
                      ${await cipher.encrypt("whsec_c")}, ${sql.json(oldHeaders)})`;
    expect(await reencryptEndpoints(sql, cipher)).toEqual({ rewritten: 2, remaining: 0 });
    const rows = await sql<{ url: string; headersJson: string }[]>`
      select url, headers::text as headers_json from endpoints where id like 'ep_creds_%'`;
    for (const row of rows) {
      const stored = JSON.parse(row.headersJson) as Record<string, string>;
      expect(stored.authorization).toStartWith(encryptedPrefix(cipher.keyId));
      expect(stored["x-api-key"]).toStartWith(encryptedPrefix(cipher.keyId));
      expect(stored["x-tenant"]).toBe("acme");
      expect(row.url).not.toContain("p%40ss-1");
      expect(row.url).toContain(encryptedPrefix(cipher.keyId).replaceAll(":", "%3A"));
      expect(await decryptHeaders(cipherOf(currentKey), stored)).toEqual(headers);
      expect(await decryptUrlPassword(cipherOf(currentKey), row.url)).toBe(plainUrl);
    }
    expect(await reencryptEndpoints(sql, cipher)).toEqual({ rewritten: 0, remaining: 0 });
    await sql`delete from endpoints where id like 'ep_creds_%'`;
  });

  test("a value under a key no longer configured stops the run, naming the endpoint and key id", async () => {
    const lost = newKey();
    await insert("ep_lost", await cipherOf(lost).encrypt("whsec_lost"), null);
    const error = (await reencryptEndpoints(sql, cipher).catch((err: Error) => err)) as Error;
    expect(error.message).toContain("endpoint ep_lost, secret:");
    expect(error.message).toContain(`key id ${keyIdOf(lost)}`);
    expect(error.message).not.toContain("whsec_lost");
    await sql`delete from endpoints where id = 'ep_lost'`;
  });
});
