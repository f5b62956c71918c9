import { findGrantsByHash, touchApiKeys, type KeyGrant } from "@evently/core/api-keys/sql.ts";
import { hashApiKey, looksLikeApiKey } from "@evently/core/api-keys/keys.ts";
import { findApplication } from "@evently/core/applications/sql.ts";
import type { Sql } from "@evently/core/db/client.ts";
import { ForbiddenError, NotFoundError, UnauthorizedError, ValidationError } from "@evently/core/errors.ts";
import type { Logger } from "@evently/core/log.ts";
import { adminKeyMatcher, bearerToken, missingKey, type Authenticate } from "../../http/auth.ts";
import type { AppScope } from "../../http/operation.ts";

/** With the admin key, names the application a request acts on (its id or uid). */
export const APPLICATION_HEADER = "Evently-Application";
/** Notified by triggers on api_keys and applications (migration 0004). */
export const AUTH_CHANGED_CHANNEL = "evently_auth_changed";

/** How often last-used times are written; lists show them this exact. */
const TOUCH_INTERVAL_MS = 10_000;
/** Lookups that found nothing are remembered this long, so a flood of bad keys costs no queries. */
const MISS_TTL_MS = 60_000;
/** Entries beyond this drop the cache (keys are few; this bounds memory under a flood of junk). */
const MAX_ENTRIES = 50_000;

interface GrantEntry {
  grant: KeyGrant | null;
  at: number;
}

/**
 * Checks keys without a database round trip per request: keys (by digest) and applications (by id
 * or uid) are read once and kept until Postgres says they changed (LISTEN/NOTIFY from triggers), so
 * a revoked key is refused within a notification's delay. Notifications sent while the listening
 * connection was down are lost, so after it is re-established every cached entry is read again, in
 * one query. Until that succeeds the entries keep serving: dropping them instead would turn a
 * database restart, which ingest rides out by retrying, into a burst of 503s on authentication.
 */
export class Authenticator {
  private readonly grants = new Map<string, GrantEntry>();
  private readonly applications = new Map<string, { scope: (AppScope & { uid: string | null }) | null; at: number }>();
  /** Key id → when it last authenticated (epoch ms), written out by flushUses. */
  private readonly uses = new Map<string, number>();
  private readonly isAdmin: (token: string) => boolean;
  // Bumped on every change notice: a load that overlapped one may hold stale rows, so is not cached.
  private generation = 0;
  private unlisten: (() => Promise<void>) | undefined;
  private touchTimer: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly sql: Sql,
    adminKey: string,
    private readonly log: Logger,
  ) {
    this.isAdmin = adminKeyMatcher(adminKey);
  }

  async start(): Promise<void> {
    const drop = () => {
      this.generation++;
      this.grants.clear();
      this.applications.clear();
    };
    const listener = await this.sql.listen(AUTH_CHANGED_CHANNEL, drop, () => void this.reread());
    this.unlisten = listener.unlisten;
    this.touchTimer = setInterval(() => void this.flushUses(), TOUCH_INTERVAL_MS);
    this.touchTimer.unref?.();
  }

  async stop(): Promise<void> {
    clearInterval(this.touchTimer);
    await this.flushUses();
    await this.unlisten?.().catch(() => {});
  }

  readonly authenticate: Authenticate = async (request, access) => {
    const token = bearerToken(request);
    if (token === null) throw missingKey();
    const named = request.headers.get(APPLICATION_HEADER);
    // Application keys first: they carry the ingest traffic, and their shape tells them apart (the
    // admin key may not look like one: config/schema.ts), so they skip the admin comparison.
    if (looksLikeApiKey(token)) return this.asApplication(token, access, named);
    if (!this.isAdmin(token)) throw new UnauthorizedError("unknown API key");
    if (access === "admin") return null;
    if (named === null) {
      throw new ValidationError([
        { field: APPLICATION_HEADER, message: "is required with the admin key: name the application to act on (its id or uid)" },
      ]);
    }
    return this.application(named);
  };

  private async asApplication(token: string, access: "admin" | "application", named: string | null): Promise<AppScope> {
    const grant = await this.grant(token);
    if (!grant) throw new UnauthorizedError("unknown API key");
    if (grant.revokedAt !== null) throw new UnauthorizedError("this API key was revoked");
    const now = Date.now();
    if (grant.expiresAt !== null && grant.expiresAt.getTime() <= now) throw new UnauthorizedError("this API key has expired");
    this.uses.set(grant.keyId, now);
    if (access === "admin") throw new ForbiddenError("this route needs the admin key; application keys act on their own application only");
    // A header naming another application reads exactly like one naming nothing that exists.
    if (named !== null && named !== grant.appId && named !== grant.uid) throw new NotFoundError("application", named);
    return { id: grant.appId, rateLimitPerSecond: grant.rateLimitPerSecond };
  }

  private async grant(token: string): Promise<GrantEntry["grant"]> {
    const hash = hashApiKey(token);
    const hit = this.grants.get(hash);
    if (hit && (hit.grant !== null || Date.now() - hit.at < MISS_TTL_MS)) return hit.grant;
    const generation = this.generation;
    const found = (await findGrantsByHash(this.sql, [hash])).get(hash) ?? null;
    if (generation === this.generation) this.remember(this.grants, hash, { grant: found, at: Date.now() });
    return found;
  }

  /** Reads every cached entry again (after the listening connection came back); retried until it succeeds. */
  private async reread(): Promise<void> {
    if (this.grants.size === 0 && this.applications.size === 0) return;
    this.generation++;
    const generation = this.generation;
    for (let delay = 250; ; delay = Math.min(delay * 2, 5000)) {
      try {
        const hashes = [...this.grants.keys()];
        const grants = await findGrantsByHash(this.sql, hashes);
        const names = [...this.applications.keys()];
        const apps = await Promise.all(names.map((name) => findApplication(this.sql, name)));
        if (generation !== this.generation) return; // a change notice came meanwhile and dropped everything
        const at = Date.now();
        for (const hash of hashes) this.grants.set(hash, { grant: grants.get(hash) ?? null, at });
        names.forEach((name, i) => {
          const row = apps[i];
          this.applications.set(name, { scope: row ? { id: row.id, uid: row.uid, rateLimitPerSecond: row.rateLimitPerSecond } : null, at });
        });
        return;
      } catch (err) {
        this.log.warn("could not re-read cached API keys; serving them as cached meanwhile", { error: (err as Error).message });
        await Bun.sleep(delay);
        if (generation !== this.generation) return;
      }
    }
  }

  private async application(idOrUid: string): Promise<AppScope> {
    const hit = this.applications.get(idOrUid);
    let scope = hit && (hit.scope !== null || Date.now() - hit.at < MISS_TTL_MS) ? hit.scope : undefined;
    if (scope === undefined) {
      const generation = this.generation;
      const row = await findApplication(this.sql, idOrUid);
      scope = row ? { id: row.id, uid: row.uid, rateLimitPerSecond: row.rateLimitPerSecond } : null;
      if (generation === this.generation) this.remember(this.applications, idOrUid, { scope, at: Date.now() });
    }
    if (!scope) throw new NotFoundError("application", idOrUid);
    return { id: scope.id, rateLimitPerSecond: scope.rateLimitPerSecond };
  }

  private remember<V>(map: Map<string, V>, key: string, value: V): void {
    if (map.size >= MAX_ENTRIES) map.clear();
    map.set(key, value);
  }

  private async flushUses(): Promise<void> {
    if (this.uses.size === 0) return;
    const batch = [...this.uses].map(([id, at]) => ({ id, at: new Date(at) }));
    this.uses.clear();
    try {
      await touchApiKeys(this.sql, batch);
    } catch (err) {
      // Last-used times are informational: a lost flush is logged, not retried.
      this.log.warn("could not record API key use", { error: (err as Error).message });
    }
  }
}
