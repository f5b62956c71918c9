import type { PendingQuery, Row } from "postgres";
import type { Sql, TxSql } from "../db/client.ts";
import { patternMatch } from "../event-types.ts";
import { newId } from "../ids.ts";

/** A route subscribes an endpoint to an event type pattern: `order.paid`, `order.*` or `*`. */
export interface RouteRow {
  id: string;
  endpointId: string;
  eventType: string;
  createdAt: Date;
}

type Db = Sql | TxSql;

/**
 * Inserts one route. Unique (app_id, event_type, endpoint_id) and the endpoint foreign key are left
 * to the database (23505 / 23503), so two concurrent requests cannot both succeed; the key is
 * (app_id, endpoint_id), so another application's endpoint is as unknown as a missing one.
 */
export async function insertRoute(sql: Db, appId: string, endpointId: string, eventType: string): Promise<RouteRow> {
  const [row] = await sql<RouteRow[]>`
    insert into routes (id, app_id, endpoint_id, event_type)
    values (${newId("route")}, ${appId}, ${endpointId}, ${eventType})
    returning id, endpoint_id, event_type, created_at`;
  return row!;
}

/**
 * Makes `eventTypes` exactly the endpoint's set of routes: removes the others, adds the missing ones
 * and leaves the rest (and their ids) alone.
 */
export async function setEndpointEventTypes(tx: TxSql, appId: string, endpointId: string, eventTypes: string[]): Promise<void> {
  await tx`delete from routes where endpoint_id = ${endpointId} and event_type <> all (${eventTypes}::text[])`;
  if (eventTypes.length === 0) return;
  await tx`
    insert into routes (id, app_id, endpoint_id, event_type)
    select id, ${appId}, ${endpointId}, event_type
    from unnest(${eventTypes.map(() => newId("route"))}::text[], ${eventTypes}::text[]) as t (id, event_type)
    on conflict (app_id, event_type, endpoint_id) do nothing`;
}

export async function findRoute(sql: Db, appId: string, id: string): Promise<RouteRow | null> {
  const [row] = await sql<RouteRow[]>`
    select id, endpoint_id, event_type, created_at from routes where app_id = ${appId} and id = ${id}`;
  return row ?? null;
}

/** Newest first; `before` is the last id of the previous page. */
export async function listRoutes(
  sql: Db,
  appId: string,
  filter: { endpointId?: string; before?: string; limit: number },
): Promise<RouteRow[]> {
  return sql<RouteRow[]>`
    select id, endpoint_id, event_type, created_at from routes
    where app_id = ${appId}
      ${filter.endpointId ? sql`and endpoint_id = ${filter.endpointId}` : sql``}
      ${filter.before ? sql`and id < ${filter.before}` : sql``}
    order by id desc
    limit ${filter.limit}`;
}

export async function deleteRoute(sql: Db, appId: string, id: string): Promise<boolean> {
  const result = await sql`delete from routes where app_id = ${appId} and id = ${id}`;
  return result.count > 0;
}

/**
 * The condition "`column` matches the event type pattern", for list filters: the same selection as
 * routing makes (see event-types.ts). Empty when there is no pattern or it selects every type.
 * `column` is a trusted identifier from our own code, never user input.
 */
export function eventTypeCondition(sql: Db, column: string, pattern: string | undefined): PendingQuery<Row[]> {
  if (pattern === undefined) return sql``;
  const match = patternMatch(pattern);
  switch (match.kind) {
    case "all":
      return sql``;
    case "prefix":
      return sql`and starts_with(${sql(column)}, ${match.prefix})`;
    case "exact":
      return sql`and ${sql(column)} = ${match.type}`;
  }
}
