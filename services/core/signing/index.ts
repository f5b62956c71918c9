import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

/**
 * Standard Webhooks signing (https://www.standardwebhooks.com): secrets are `whsec_` + base64 of
 * 24 random bytes; the signature is base64 HMAC-SHA256, keyed by the decoded secret, over
 * `${webhookId}.${timestampSeconds}.${body}`, sent as `webhook-signature: v1,<signature>`.
 */
export const SECRET_PREFIX = "whsec_";

export function generateSecret(): string {
  return SECRET_PREFIX + randomBytes(24).toString("base64");
}

export function secretKey(secret: string): Buffer {
  return Buffer.from(secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret, "base64");
}

export function sign(key: Buffer, webhookId: string, timestampSeconds: number, body: string): string {
  const mac = createHmac("sha256", key).update(`${webhookId}.${timestampSeconds}.${body}`).digest("base64");
  return `v1,${mac}`;
}

/**
 * A `webhook-signature` value with one `v1,<sig>` entry per key, space-separated as the spec allows:
 * during a secret rotation's grace window the new and the previous secret both sign, so a receiver
 * holding either one verifies the delivery.
 */
export function signWithKeys(keys: readonly Buffer[], webhookId: string, timestampSeconds: number, body: string): string {
  return keys.map((key) => sign(key, webhookId, timestampSeconds, body)).join(" ");
}

/** Checks a `webhook-signature` header (space-separated `v1,<sig>` entries) in constant time. */
export function verify(key: Buffer, webhookId: string, timestampSeconds: number, body: string, header: string): boolean {
  const expected = Buffer.from(sign(key, webhookId, timestampSeconds, body).slice(3), "base64");
  return header.split(" ").some((entry) => {
    const [version, sig] = entry.split(",", 2);
    if (version !== "v1" || !sig) return false;
    const given = Buffer.from(sig, "base64");
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
}
