import { secretKey, verify } from "../../services/core/signing/index.ts";

/**
 * Secrets the sink checks signatures with. A secret is either global (tried on every delivery) or
 * bound to a scope: the last path segment of `/hooks/<scope>`. Endpoint secrets are only known after
 * the endpoint is created, so a load script picks a scope first, creates the endpoint with url
 * `<sink>/hooks/<scope>`, then registers the returned secret under that scope. Scoped lookups cost
 * one HMAC per delivery however many endpoints share the sink; global secrets cost one each.
 */
export class SecretRegistry {
  private readonly global: Buffer[] = [];
  private readonly scoped = new Map<string, Buffer>();

  add(secret: string, scope?: string): void {
    const key = secretKey(secret);
    if (key.length === 0) throw new Error("secret decodes to zero bytes");
    if (scope) this.scoped.set(scope, key);
    else if (!this.global.some((k) => k.equals(key))) this.global.push(key);
  }

  clear(): void {
    this.global.length = 0;
    this.scoped.clear();
  }

  get size(): number {
    return this.global.length + this.scoped.size;
  }

  /** Keys for a delivery to `scope`; empty when the sink knows no secret that applies. */
  keysFor(scope: string): readonly Buffer[] {
    const key = scope ? this.scoped.get(scope) : undefined;
    return key ? [key] : this.global;
  }
}

export type CheckResult = "ok" | "missing_headers" | "bad_timestamp" | "stale_timestamp" | "bad_signature";

/**
 * The Standard Webhooks receiver checks: headers present, timestamp within `toleranceS` of now (0
 * turns the window off, e.g. when replaying old deliveries) and a `v1` signature matching one key.
 */
export function checkDelivery(
  keys: readonly Buffer[],
  webhookId: string | null,
  timestampHeader: string | null,
  signatureHeader: string | null,
  body: string,
  nowMs: number,
  toleranceS: number,
): CheckResult {
  if (!webhookId || !timestampHeader || !signatureHeader) return "missing_headers";
  const ts = Number(timestampHeader);
  if (!Number.isInteger(ts) || ts <= 0) return "bad_timestamp";
  if (toleranceS > 0 && Math.abs(nowMs / 1000 - ts) > toleranceS) return "stale_timestamp";
  for (const key of keys) if (verify(key, webhookId, ts, body, signatureHeader)) return "ok";
  return "bad_signature";
}

const TIMESTAMP_KEY = '"timestamp":"';
const DATA_KEY = '"data":';

/**
 * Event creation time (epoch ms) from the delivery envelope
 * `{"id":…,"type":…,"timestamp":"<ISO>","data":…}` without parsing the payload.
 *
 * Why the fast path is safe: inside a JSON string every `"` is escaped, so the byte sequences
 * `"timestamp":"` and `"data":` can only occur where a string is followed by `:`, i.e. in object
 * keys. Before the top-level `data` key the only keys are the envelope's own, so when the first
 * `"timestamp":"` precedes the first `"data":` it is the envelope's. Any other layout (data first,
 * whitespace after the colon, no timestamp) takes the JSON.parse fallback, so the result never
 * depends on field order.
 */
export function envelopeTimestampMs(body: string): number | undefined {
  const at = body.indexOf(TIMESTAMP_KEY);
  if (at >= 0) {
    const data = body.indexOf(DATA_KEY);
    if (data < 0 || at < data) {
      const start = at + TIMESTAMP_KEY.length;
      const end = body.indexOf('"', start);
      if (end > start && end - start <= 40) {
        const ms = Date.parse(body.slice(start, end));
        if (!Number.isNaN(ms)) return ms;
      }
    }
  }
  try {
    const parsed: unknown = JSON.parse(body);
    const ts = (parsed as { timestamp?: unknown } | null)?.timestamp;
    if (typeof ts !== "string") return undefined;
    const ms = Date.parse(ts);
    return Number.isNaN(ms) ? undefined : ms;
  } catch {
    return undefined;
  }
}
