import type { Sql, TxSql } from "../db/client.ts";
import { lostLockRace } from "../db/errors.ts";
import { UnavailableError } from "../errors.ts";
import { isId } from "../ids.ts";
import { deleteJobsOf } from "../jobs/sql.ts";

type Db = Sql | TxSql;

/** What a uid may be (the table's check constraint says the same); never `app_…`, which is an id. */
export const UID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;

/** The application every installation has; rows from before applications existed belong to it. */
export const DEFAULT_APPLICATION_ID = "app_00000000000000000000000000000000";

/** The columns a caller may set. */
export interface ApplicationValues {
  name: string;
  uid: string | null;
  metadata: Record<string, string>;
  rateLimitPerSecond: number | null;
}

export interface ApplicationRow extends ApplicationValues {
  id: string;
  createdAt: Date;
  updatedAt: Date;
}

interface RawApplicationRow extends Omit<ApplicationRow, "metadata"> {
  metadataJson: string;
}

// metadata is read as text and parsed here, so user keys come back verbatim (see endpoints/sql.ts).
const selectApplications = (sql: Db) => sql`
  select id, uid, name, metadata::text as metadata_json, rate_limit_per_second, created_at, updated_at
  from applications`;

const fromRaw = ({ metadataJson, ...rest }: RawApplicationRow): ApplicationRow => ({ ...rest, metadata: JSON.parse(metadataJson) });

/** Unique uid is left to the database (23505), so two concurrent creates cannot both take it. */
export async function insertApplication(sql: Db, id: string, values: ApplicationValues): Promise<ApplicationRow> {
  const [row] = await sql<RawApplicationRow[]>`
    insert into applications (id, uid, name, metadata, rate_limit_per_second)
    values (${id}, ${values.uid}, ${values.name}, ${sql.json(values.metadata)}, ${values.rateLimitPerSecond})
    returning id, uid, name, metadata::text as metadata_json, rate_limit_per_second, created_at, updated_at`;
  return fromRaw(row!);
}

/** By id (`app_…`) or by uid: a uid never starts with `app_` (a check constraint), so the two cannot clash. */
export async function findApplication(sql: Db, idOrUid: string): Promise<ApplicationRow | null> {
  // Anything that is neither (a NUL, a stray byte) names no application; Postgres need not see it.
  if (!isId("application", idOrUid) && !UID_PATTERN.test(idOrUid)) return null;
  const [row] = isId("application", idOrUid)
    ? await sql<RawApplicationRow[]>`${selectApplications(sql)} where id = ${idOrUid}`
    : await sql<RawApplicationRow[]>`${selectApplications(sql)} where uid = ${idOrUid}`;
  return row ? fromRaw(row) : null;
}

/** Newest first; `before` is the last id of the previous page. */
export async function listApplications(sql: Db, page: { before?: string; limit: number }): Promise<ApplicationRow[]> {
  const rows = await sql<RawApplicationRow[]>`
    ${selectApplications(sql)}
    ${page.before ? sql`where id < ${page.before}` : sql``}
    order by id desc
    limit ${page.limit}`;
  return rows.map(fromRaw);
}

/** Locks the row for a read-modify-write, so concurrent partial updates do not lose each other. */
export async function lockApplication(tx: TxSql, id: string): Promise<ApplicationRow | null> {
  const [row] = await tx<RawApplicationRow[]>`${selectApplications(tx)} where id = ${id} for update`;
  return row ? fromRaw(row) : null;
}

export async function updateApplication(sql: Db, id: string, values: ApplicationValues): Promise<ApplicationRow> {
  const [row] = await sql<RawApplicationRow[]>`
    update applications
    set name = ${values.name}, uid = ${values.uid}, metadata = ${sql.json(values.metadata)},
        rate_limit_per_second = ${values.rateLimitPerSecond}, updated_at = now()
    where id = ${id}
    returning id, uid, name, metadata::text as metadata_json, rate_limit_per_second, created_at, updated_at`;
  return fromRaw(row!);
}

/** How long deleteApplication waits for an endpoint's lock before it rolls back and tries again, and how often. */
const DELETE_LOCK_TIMEOUT_MS = 200;
const DELETE_TRIES = 20;

/**
 * Deletes the application and everything in it: keys, endpoints, routes, events, jobs, attempts,
 * outbox entries. Events, jobs, attempts and outbox entries are deleted here; keys, endpoints and
 * routes by cascade from the application. Events carry no foreign key to the application, jobs none
 * to their event or endpoint, attempts and outbox entries none to their job, since checking one per
 * written row cost ingest and delivery (migrations 0006, 0013, 0014, 0016 and 0017). The
 * application is locked first, which holds off new endpoints, and then its endpoints, which waits
 * for any ingest that routed to them and holds off new jobs.
 *
 * The delete locks the endpoints in id order, but an ingest fanning out to several locks them in the
 * order it probes its routes, so the two can deadlock. The delete then gives way: it waits for an
 * endpoint's lock at most DELETE_LOCK_TIMEOUT_MS, under Postgres' deadlock_timeout (1 s unless
 * changed), so it fails before the deadlock check would fail the ingest, whose group holds other
 * requests' events too. It rolls back and starts again.
 */
export async function deleteApplication(sql: Sql, id: string): Promise<boolean> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await sql.begin(async (tx) => {
        const [found] = await tx`select id from applications where id = ${id} for update`;
        if (found === undefined) return false;
        await tx`select set_config('lock_timeout', ${`${DELETE_LOCK_TIMEOUT_MS}ms`}, true)`;
        await tx`select count(*) from (select id from endpoints where app_id = ${id} order by id for update) locked`;
        // Holding the endpoints, the delete waits for no ingest any more, and giving way later would
        // throw its work away: the rest waits as long as it must (workers hold jobs only briefly).
        await tx`set local lock_timeout to default`;
        await deleteJobsOf(tx, { appId: id });
        await tx`delete from applications where id = ${id}`;
        await tx`delete from events where app_id = ${id}`;
        return true;
      });
    } catch (err) {
      if (!lostLockRace(err)) throw err;
      if (attempt >= DELETE_TRIES) throw new UnavailableError(`application ${id} kept receiving events while it was being deleted; try again`);
      await Bun.sleep(DELETE_LOCK_TIMEOUT_MS * Math.random());
    }
  }
}
