import type { Sql } from "@evently/core/db/client.ts";
import { RetryPolicySchema, type RetryPolicy } from "@evently/core/delivery/retry-policy.ts";
import { secretKey } from "@evently/core/signing/index.ts";
import type { Logger } from "@evently/core/log.ts";
import { redactUrl } from "@evently/core/redact.ts";
import type { SecretCipher } from "@evently/core/secrets/cipher.ts";
import { decryptHeaders, decryptSecrets, decryptUrlPassword } from "@evently/core/secrets/fields.ts";

/** What a delivery needs to know about its endpoint, with the secrets already decoded. */
export interface DeliveryTarget {
  id: string;
  /** The endpoint's application, recorded on its attempts. */
  appId: string;
  url: string;
  /** `url` as attempts and logs show it (its password redacted): worked out once per cached entry. */
  recordedUrl: string;
  key: Buffer;
  /** The secret a rotation replaced, signing alongside `key` until `previousKeyExpiresAt` (epoch ms). */
  previousKey: Buffer | null;
  previousKeyExpiresAt: number | null;
  headers: Record<string, string>;
  timeoutMs: number | null;
  enabled: boolean;
  /** Held, not attempted, until resumed. */
  paused: boolean;
  /** The endpoint's own retry policy; null: the installation default. */
  retryPolicy: RetryPolicy | null;
  ordering: "unordered" | "fifo";
  /** Most deliveries per second, across all workers; null: unlimited. */
  rateLimitPerSecond: number | null;
}

/**
 * The keys that sign an attempt made at `at`: the current one, then the previous one while its grace
 * window is open. Judged per attempt, not when the entry was cached: no notification marks the end
 * of a window, so a cached entry outlives it.
 */
export function signingKeys(target: DeliveryTarget, at: Date): Buffer[] {
  const previousValid = target.previousKey !== null && target.previousKeyExpiresAt !== null && at.getTime() < target.previousKeyExpiresAt;
  return previousValid ? [target.key, target.previousKey!] : [target.key];
}

export const ENDPOINT_CHANGED_CHANNEL = "evently_endpoint_changed";

/**
 * Endpoints read once and kept until Postgres says they changed (LISTEN/NOTIFY from a trigger on
 * the endpoints table), so a delivery costs no endpoint query. Misses in one batch are loaded with
 * one query. After the notification connection is re-established the whole cache is dropped,
 * because notifications sent while it was down are lost.
 */
export class EndpointCache {
  private readonly entries = new Map<string, DeliveryTarget>();
  private unlisten: (() => Promise<void>) | undefined;
  // Bumped on every change notice: a load that overlapped one may hold stale rows, so is not cached.
  private generation = 0;

  constructor(
    private readonly sql: Sql,
    private readonly log: Logger,
    private readonly cipher: SecretCipher,
  ) {}

  async start(): Promise<void> {
    const listener = await this.sql.listen(
      ENDPOINT_CHANGED_CHANNEL,
      (id) => {
        this.generation++;
        this.entries.delete(id);
      },
      () => {
        this.generation++;
        this.entries.clear();
      },
    );
    this.unlisten = listener.unlisten;
  }

  async stop(): Promise<void> {
    await this.unlisten?.().catch(() => {});
  }

  /** Targets for these ids; ids of deleted endpoints are absent from the result. */
  async getMany(ids: Iterable<string>): Promise<Map<string, DeliveryTarget>> {
    const found = new Map<string, DeliveryTarget>();
    const missing: string[] = [];
    for (const id of new Set(ids)) {
      const hit = this.entries.get(id);
      if (hit) found.set(id, hit);
      else missing.push(id);
    }
    if (missing.length > 0) {
      const generation = this.generation;
      const rows = await this.sql<
        {
          id: string;
          appId: string;
          url: string;
          secret: string;
          previousSecret: string | null;
          previousSecretExpiresAt: Date | null;
          headers: Record<string, string>;
          timeoutMs: number | null;
          enabled: boolean;
          paused: boolean;
          retryPolicy: unknown;
          ordering: "unordered" | "fifo";
          rateLimitPerSecond: number | null;
        }[]
      >`select id, app_id, url, secret, previous_secret, previous_secret_expires_at, headers, timeout_ms, enabled, paused,
               retry_policy, ordering, rate_limit_per_second
        from endpoints where id = any (${missing}::text[])`;
      for (const stored of rows) {
        // Decrypted once per cache fill, not per delivery.
        const row = await decryptSecrets(this.cipher, stored);
        const url = await decryptUrlPassword(this.cipher, row.url);
        const target: DeliveryTarget = {
          id: row.id,
          appId: row.appId,
          url,
          recordedUrl: redactUrl(url),
          key: secretKey(row.secret),
          previousKey: row.previousSecret === null ? null : secretKey(row.previousSecret),
          previousKeyExpiresAt: row.previousSecretExpiresAt?.getTime() ?? null,
          headers: await decryptHeaders(this.cipher, row.headers),
          timeoutMs: row.timeoutMs,
          enabled: row.enabled,
          paused: row.paused,
          // Validated by the API when stored; parsed again for the defaults it fills in.
          retryPolicy: row.retryPolicy === null ? null : RetryPolicySchema.parse(row.retryPolicy),
          ordering: row.ordering,
          rateLimitPerSecond: row.rateLimitPerSecond,
        };
        if (generation === this.generation) this.entries.set(row.id, target);
        found.set(row.id, target);
      }
      this.log.debug("endpoint cache filled", { loaded: rows.length });
    }
    return found;
  }
}
