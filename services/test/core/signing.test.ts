import { expect, test } from "bun:test";
import { Webhook } from "standardwebhooks";
import { generateSecret, secretKey, sign, signWithKeys, verify } from "../../core/signing/index.ts";
import { signingKeys, type DeliveryTarget } from "../../worker/endpoint-cache.ts";

test("signatures verify with the standardwebhooks reference implementation", () => {
  const secret = generateSecret();
  expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{32}$/);
  const body = JSON.stringify({ id: "evt_1", type: "a.b", timestamp: new Date().toISOString(), data: { x: 1 } });
  const ts = Math.floor(Date.now() / 1000);
  const signature = sign(secretKey(secret), "job_1", ts, body);
  const headers = { "webhook-id": "job_1", "webhook-timestamp": String(ts), "webhook-signature": signature };
  expect(new Webhook(secret).verify(body, headers)).toEqual(JSON.parse(body));
  expect(() => new Webhook(generateSecret()).verify(body, headers)).toThrow();
  expect(() => new Webhook(secret).verify(body + " ", headers)).toThrow();
});

test("verify accepts any matching v1 entry and rejects tampering", () => {
  const key = secretKey(generateSecret());
  const sig = sign(key, "id", 100, "body");
  expect(verify(key, "id", 100, "body", `v1,AAAA ${sig}`)).toBe(true);
  expect(verify(key, "id", 101, "body", sig)).toBe(false);
  expect(verify(key, "id", 100, "body", "v2," + sig.slice(3))).toBe(false);
});

test("signWithKeys signs once per key, in order, and each secret verifies the header alone", () => {
  const [current, previous] = [generateSecret(), generateSecret()];
  const body = '{"x":1}';
  const ts = Math.floor(Date.now() / 1000);
  const header = signWithKeys([secretKey(current), secretKey(previous)], "job_1", ts, body);
  expect(header).toBe(`${sign(secretKey(current), "job_1", ts, body)} ${sign(secretKey(previous), "job_1", ts, body)}`);
  const headers = { "webhook-id": "job_1", "webhook-timestamp": String(ts), "webhook-signature": header };
  for (const secret of [current, previous]) expect(new Webhook(secret).verify(body, headers)).toEqual({ x: 1 });
  expect(() => new Webhook(generateSecret()).verify(body, headers)).toThrow();
});

test("signingKeys adds the previous key only before its expiry", () => {
  const key = secretKey(generateSecret());
  const previousKey = secretKey(generateSecret());
  const at = new Date("2026-12-01T00:00:00Z");
  const target: DeliveryTarget = { id: "ep_1", appId: "app_1", url: "https://a.example", recordedUrl: "https://a.example", key, previousKey, previousKeyExpiresAt: at.getTime() + 1, headers: {}, timeoutMs: null, enabled: true, paused: false, retryPolicy: null, ordering: "unordered", rateLimitPerSecond: null };
  expect(signingKeys(target, at)).toEqual([key, previousKey]);
  expect(signingKeys({ ...target, previousKeyExpiresAt: at.getTime() }, at)).toEqual([key]);
  expect(signingKeys({ ...target, previousKey: null, previousKeyExpiresAt: null }, at)).toEqual([key]);
});
