import { expect, test } from "bun:test";
import { Webhook } from "standardwebhooks";
import { generateSecret, secretKey, sign, verify } from "../../core/signing/index.ts";

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
