import { z } from "zod";
import type { RouteRow } from "@evently/core/routes/sql.ts";
import { eventTypePattern, idOf, pageOf, pageQuery, timestamp } from "../../common/model.ts";

export const RouteCreate = z
  .strictObject({
    endpointId: idOf("endpoint", "an endpoint"),
    eventType: eventTypePattern,
  })
  .meta({ id: "RouteCreate" });
export type RouteCreate = z.output<typeof RouteCreate>;

export const Route = z
  .object({
    id: z.string(),
    endpointId: z.string(),
    eventType: z.string().describe("The event type pattern the endpoint subscribes to."),
    createdAt: timestamp,
  })
  .meta({ id: "Route" });
export type Route = z.output<typeof Route>;

export const RoutePage = pageOf(Route).meta({ id: "RoutePage" });

export const RouteListQuery = pageQuery("route").extend({
  endpointId: idOf("endpoint", "an endpoint").optional().describe("Only this endpoint's routes."),
});
export type RouteListQuery = z.output<typeof RouteListQuery>;

export function presentRoute(row: RouteRow): Route {
  return { id: row.id, endpointId: row.endpointId, eventType: row.eventType, createdAt: row.createdAt.toISOString() };
}
