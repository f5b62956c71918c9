import type { Sql } from "../db/client.ts";

/**
 * The two kinds of bucket, same shape and same statements: one per application for ingest
 * (`ingest_rate_buckets`, migration 0005), one per endpoint for delivery (`delivery_rate_buckets`,
 * migration 0008). Each statement is written out per table, so each stays one static, prepared text.
 */
export type BucketKind = "ingest" | "delivery";

export interface ClaimRequest {
  /** The application (ingest) or endpoint (delivery) whose bucket is claimed from. */
  key: string;
  limitPerSecond: number;
  /** Events the claim asks for: a chunk, or more when waiting requests need more. */
  want: number;
  /** Fewest events worth granting: the request that made the claim is admitted whole or not at all. */
  need: number;
  /** Most the bucket holds for this claim: the burst allowance, or `want` when that is larger. */
  capacity: number;
}

/** What one claim on a bucket got (see migration 0005). */
export interface Claim {
  /** Events granted: `want`, or what the bucket held if that was less but at least `need`, else 0. */
  granted: number;
  /** Milliseconds until the bucket, refilling, holds `want` events again (0 when it already does). */
  readyMs: number;
}

/**
 * Claims up to `want` events from the application's (or endpoint's) bucket, in one statement. The
 * row lock serialises concurrent claims, and each takes only what the bucket holds, so claims from
 * all processes together never take more than the limit per second plus one bucketful.
 *
 * The level is `(now - empty_at) * limit`, capped at `capacity`. `now` is the database's clock, read
 * in the SELECT for a new row (an application never seen, or idle long enough to be cleaned up: a
 * full bucket) and again in SET, which runs after the row lock is taken, so a claim that waited on
 * the lock sees the time it runs at. SET reads the clock once, in its sub-select. `readyMs` is read
 * last, so a caller counting it from the moment it sent the claim asks again early, never late.
 *
 * A single-row upsert on the primary key: there is no plan to go stale, so it stays prepared.
 */
export async function claimTokens(sql: Sql, kind: BucketKind, request: ClaimRequest): Promise<Claim> {
  const { key, limitPerSecond: limit, want, need, capacity } = request;
  const [row] =
    kind === "ingest"
      ? await sql<Claim[]>`
    insert into ingest_rate_buckets as b (app_id, empty_at, granted)
    select ${key}, c.now - (${capacity}::int - least(${want}::int, ${capacity}::int))::float8 / ${limit}::int,
           least(${want}::int, ${capacity}::int)
    from (select extract(epoch from clock_timestamp())::float8 as now) c
    on conflict (app_id) do update set (empty_at, granted) = (
      select s.now - (s.level - s.grant) / ${limit}::int, s.grant
      from (select c.now, l.level,
                   case when l.level >= ${need}::int then least(${want}::int, floor(l.level)::int) else 0 end as grant
            from (select extract(epoch from clock_timestamp())::float8 as now) c,
            lateral (select least(${capacity}::float8, greatest(0, (c.now - b.empty_at) * ${limit}::int)) as level) l) s)
    returning granted,
      greatest(0, ceil((empty_at + ${want}::float8 / ${limit}::int - extract(epoch from clock_timestamp())::float8) * 1000))::int
        as "readyMs"`
      : await sql<Claim[]>`
    insert into delivery_rate_buckets as b (endpoint_id, empty_at, granted)
    select ${key}, c.now - (${capacity}::int - least(${want}::int, ${capacity}::int))::float8 / ${limit}::int,
           least(${want}::int, ${capacity}::int)
    from (select extract(epoch from clock_timestamp())::float8 as now) c
    on conflict (endpoint_id) do update set (empty_at, granted) = (
      select s.now - (s.level - s.grant) / ${limit}::int, s.grant
      from (select c.now, l.level,
                   case when l.level >= ${need}::int then least(${want}::int, floor(l.level)::int) else 0 end as grant
            from (select extract(epoch from clock_timestamp())::float8 as now) c,
            lateral (select least(${capacity}::float8, greatest(0, (c.now - b.empty_at) * ${limit}::int)) as level) l) s)
    returning granted,
      greatest(0, ceil((empty_at + ${want}::float8 / ${limit}::int - extract(epoch from clock_timestamp())::float8) * 1000))::int
        as "readyMs"`;
  return row!;
}

/**
 * Deletes up to `limit` rows whose bucket has been refilling for `idleSeconds`. From one second on
 * such a bucket is full (it holds at most a second's worth), which is what a missing row means, so
 * this loses nothing. Rows locked by a claim right now are skipped. Several processes may run it.
 */
export async function deleteIdleBuckets(sql: Sql, kind: BucketKind, idleSeconds: number, limit: number): Promise<number> {
  const deleted =
    kind === "ingest"
      ? await sql`
    delete from ingest_rate_buckets where app_id in (
      select app_id from ingest_rate_buckets
      where empty_at < extract(epoch from clock_timestamp())::float8 - ${idleSeconds}::int
      limit ${limit}::int for update skip locked)`
      : await sql`
    delete from delivery_rate_buckets where endpoint_id in (
      select endpoint_id from delivery_rate_buckets
      where empty_at < extract(epoch from clock_timestamp())::float8 - ${idleSeconds}::int
      limit ${limit}::int for update skip locked)`;
  return deleted.count;
}
