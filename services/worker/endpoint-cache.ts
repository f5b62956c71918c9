import type { Sql } from "@evently/core/db/client.ts";
import { secretKey } from "@evently/core/signing/index.ts";
import type { Logger } from "@evently/core/log.ts";

/** What a delivery needs to know about its endpoint, with the secret already decoded. */
export interface DeliveryTarget {
  id: string;
  url: string;
  key: Buffer;
  headers: Record<string, string>;
  timeoutMs: number | null;
  enabled: boolean;
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
        { id: string; url: string; secret: string; headers: Record<string, string>; timeoutMs: number | null; enabled: boolean }[]
      >`select id, url, secret, headers, timeout_ms, enabled from endpoints where id = any (${missing}::text[])`;
      for (const row of rows) {
        const target: DeliveryTarget = {
          id: row.id,
          url: row.url,
          key: secretKey(row.secret),
          headers: row.headers,
          timeoutMs: row.timeoutMs,
          enabled: row.enabled,
        };
        if (generation === this.generation) this.entries.set(row.id, target);
        found.set(row.id, target);
      }
      this.log.debug("endpoint cache filled", { loaded: rows.length });
    }
    return found;
  }
}
