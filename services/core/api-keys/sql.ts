import type { Sql, TxSql } from "../db/client.ts";

type Db = Sql | TxSql;

/** A key as lists show it: never the key itself, which is stored only as a digest. */
export interface ApiKeyRow {
  id: string;
  appId: string;
  name: string;
  prefix: string;
  createdAt: Date;
  expiresAt: Date | null;
  revokedAt: Date | null;
  lastUsedAt: Date | null;
}

const columns = (sql: Db) => sql`id, app_id, name, prefix, created_at, expires_at, revoked_at, last_used_at`;

export async function insertApiKey(
  sql: Db,
  key: { id: string; appId: string; name: string; prefix: string; hash: string; expiresAt: Date | null },
): Promise<ApiKeyRow> {
  const [row] = await sql<ApiKeyRow[]>`
    insert into api_keys (id, app_id, name, prefix, key_hash, expires_at)
    values (${key.id}, ${key.appId}, ${key.name}, ${key.prefix}, ${key.hash}, ${key.expiresAt})
    returning ${columns(sql)}`;
  return row!;
}

/** Newest first; `before` is the last id of the previous page. Revoked keys are listed too. */
export async function listApiKeys(sql: Db, appId: string, page: { before?: string; limit: number }): Promise<ApiKeyRow[]> {
  return sql<ApiKeyRow[]>`
    select ${columns(sql)} from api_keys
    where app_id = ${appId} ${page.before ? sql`and id < ${page.before}` : sql``}
    order by id desc
    limit ${page.limit}`;
}

export async function findApiKey(sql: Db, appId: string, id: string): Promise<ApiKeyRow | null> {
  const [row] = await sql<ApiKeyRow[]>`select ${columns(sql)} from api_keys where app_id = ${appId} and id = ${id}`;
  return row ?? null;
}

/** Revokes the key (it stays listed, with revokedAt); revoking again keeps the first time. Null when unknown. */
export async function revokeApiKey(sql: Db, appId: string, id: string): Promise<ApiKeyRow | null> {
  const [row] = await sql<ApiKeyRow[]>`
    update api_keys set revoked_at = coalesce(revoked_at, now())
    where app_id = ${appId} and id = ${id}
    returning ${columns(sql)}`;
  return row ?? null;
}

/** What authenticating a key needs: its application, its validity and the application's ingest limit. */
export interface KeyGrant {
  keyId: string;
  appId: string;
  /** The application's uid, so a header naming it by uid is recognised as its own. */
  uid: string | null;
  expiresAt: Date | null;
  revokedAt: Date | null;
  rateLimitPerSecond: number | null;
}

/** The grants of these key digests, by digest; digests of no key are absent. */
export async function findGrantsByHash(sql: Db, hashes: string[]): Promise<Map<string, KeyGrant>> {
  const rows = await sql<(KeyGrant & { keyHash: string })[]>`
    select k.key_hash, k.id as key_id, k.app_id, a.uid, k.expires_at, k.revoked_at, a.rate_limit_per_second
    from api_keys k join applications a on a.id = k.app_id
    where k.key_hash = any (${hashes}::text[])`;
  return new Map(rows.map(({ keyHash, ...grant }) => [keyHash, grant]));
}

/**
 * Records when keys were last used. Written in batches by the API (a write per request would put a
 * round trip back on the ingest path), so last_used_at is exact to the flush interval.
 */
export async function touchApiKeys(sql: Db, uses: { id: string; at: Date }[]): Promise<void> {
  if (uses.length === 0) return;
  await sql`
    update api_keys k set last_used_at = greatest(k.last_used_at, u.at)
    from unnest(${uses.map((u) => u.id)}::text[], ${uses.map((u) => u.at.toISOString())}::timestamptz[]) as u (id, at)
    where k.id = u.id`;
}
