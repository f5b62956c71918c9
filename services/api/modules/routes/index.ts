import { defineOperation, type ApiOperation } from "../../../http/operation.ts";
import { Route, RouteCreate, RouteListQuery, RoutePage } from "./model.ts";
import type { RouteService } from "./service.ts";

const tag = "routes";

export function routeOperations(routes: RouteService): ApiOperation[] {
  return [
    defineOperation({
      method: "POST",
      path: "/routes",
      operationId: "createRoute",
      summary: "Subscribe an endpoint to an event type pattern",
      description: "Only events created after the route exists are delivered through it.",
      tag,
      body: RouteCreate,
      status: 201,
      response: Route,
      errors: [409],
      handle: ({ app, body }) => routes.create(app.id, body),
    }),
    defineOperation({
      method: "GET",
      path: "/routes",
      operationId: "listRoutes",
      summary: "List routes, newest first",
      tag,
      query: RouteListQuery,
      status: 200,
      response: RoutePage,
      handle: ({ app, query }) => routes.list(app.id, query),
    }),
    defineOperation({
      method: "GET",
      path: "/routes/:id",
      operationId: "getRoute",
      summary: "Get a route",
      tag,
      status: 200,
      response: Route,
      handle: ({ app, params }) => routes.get(app.id, params.id!),
    }),
    defineOperation({
      method: "DELETE",
      path: "/routes/:id",
      operationId: "deleteRoute",
      summary: "Delete a route; jobs already created keep going",
      tag,
      status: 204,
      handle: ({ app, params }) => routes.remove(app.id, params.id!),
    }),
  ];
}
