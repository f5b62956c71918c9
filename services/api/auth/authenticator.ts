import { findGrantsByHash, touchApiKeys, type KeyGrant } from "@evently/core/api-keys/sql.ts";
import { hashApiKey, looksLikeApiKey } from "@evently/core/api-keys/keys.ts";
import { findApplication, type ApplicationRow } from "@evently/core/applications/sql.ts";
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

/** A lookup's answer, null when nothing was found, and when it was made (misses age out). */
interface Cached<V> {
  value: V | null;
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
  private readonly grants = new Map<string, Cached<KeyGrant>>();
  private readonly applications = new Map<string, Cached<AppScope>>();
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

  private grant(token: string): Promise<KeyGrant | null> {
    const hash = hashApiKey(token);
    return this.cached(this.grants, hash, async () => (await findGrantsByHash(this.sql, [hash])).get(hash) ?? null);
  }

  private async application(idOrUid: string): Promise<AppScope> {
    const scope = await this.cached(this.applications, idOrUid, async () => scopeOf(await findApplication(this.sql, idOrUid)));
    if (!scope) throw new NotFoundError("application", idOrUid);
    return scope;
  }

  /**
   * `map`'s entry for `key`, else what `load` finds, remembered: a hit until a change notice drops
   * it, a miss for MISS_TTL_MS. A load that overlapped a change notice may have read stale rows, so
   * its answer is used but not kept.
   */
  private async cached<V>(map: Map<string, Cached<V>>, key: string, load: () => Promise<V | null>): Promise<V | null> {
    const hit = map.get(key);
    if (hit && (hit.value !== null || Date.now() - hit.at < MISS_TTL_MS)) return hit.value;
    const generation = this.generation;
    const value = await load();
    if (generation === this.generation) {
      if (map.size >= MAX_ENTRIES) map.clear();
      map.set(key, { value, at: Date.now() });
    }
    return value;
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
        for (const hash of hashes) this.grants.set(hash, { value: grants.get(hash) ?? null, at });
        names.forEach((name, i) => this.applications.set(name, { value: scopeOf(apps[i] ?? null), at }));
        return;
      } catch (err) {
        this.log.warn("could not re-read cached API keys; serving them as cached meanwhile", { error: (err as Error).message });
        await Bun.sleep(delay);
        if (generation !== this.generation) return;
      }
    }
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

const scopeOf = (row: ApplicationRow | null): AppScope | null => row && { id: row.id, rateLimitPerSecond: row.rateLimitPerSecond };
