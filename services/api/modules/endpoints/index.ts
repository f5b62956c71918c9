import { defineOperation, type ApiOperation } from "../../../http/operation.ts";
import {
  Endpoint,
  EndpointCreate,
  EndpointListQuery,
  EndpointPage,
  EndpointUpdate,
  EndpointWithSecret,
  RotatedSecret,
  Secret,
  SecretRotation,
} from "./model.ts";
import type { EndpointService } from "./service.ts";

const tag = "endpoints";

export function endpointOperations(endpoints: EndpointService): ApiOperation[] {
  return [
    defineOperation({
      method: "POST",
      path: "/endpoints",
      operationId: "createEndpoint",
      summary: "Create an endpoint (and, with eventTypes, its routes)",
      description: "The response is the only one, besides GET /endpoints/{id}/secret, that carries the signing secret.",
      tag,
      body: EndpointCreate,
      status: 201,
      response: EndpointWithSecret,
      handle: ({ app, body }) => endpoints.create(app.id, body),
    }),
    defineOperation({
      method: "GET",
      path: "/endpoints",
      operationId: "listEndpoints",
      summary: "List endpoints, newest first",
      tag,
      query: EndpointListQuery,
      status: 200,
      response: EndpointPage,
      handle: ({ app, query }) => endpoints.list(app.id, query),
    }),
    defineOperation({
      method: "GET",
      path: "/endpoints/:id",
      operationId: "getEndpoint",
      summary: "Get an endpoint",
      tag,
      status: 200,
      response: Endpoint,
      handle: ({ app, params }) => endpoints.get(app.id, params.id!),
    }),
    defineOperation({
      method: "PATCH",
      path: "/endpoints/:id",
      operationId: "updateEndpoint",
      summary: "Change some of an endpoint's fields",
      tag,
      body: EndpointUpdate,
      status: 200,
      response: Endpoint,
      handle: ({ app, params, body }) => endpoints.update(app.id, params.id!, body),
    }),
    defineOperation({
      method: "DELETE",
      path: "/endpoints/:id",
      operationId: "deleteEndpoint",
      summary: "Delete an endpoint with its routes, jobs and attempts",
      tag,
      status: 204,
      handle: ({ app, params }) => endpoints.remove(app.id, params.id!),
    }),
    defineOperation({
      method: "GET",
      path: "/endpoints/:id/secret",
      operationId: "getEndpointSecret",
      summary: "Get an endpoint's signing secret",
      tag,
      status: 200,
      response: Secret,
      handle: ({ app, params }) => endpoints.secret(app.id, params.id!),
    }),
    defineOperation({
      method: "POST",
      path: "/endpoints/:id/secret/rotate",
      operationId: "rotateEndpointSecret",
      summary: "Replace an endpoint's signing secret with a new one, keeping the old one for a grace window",
      description:
        "The new secret signs from the next delivery attempt on and is returned here. Until the grace window " +
        "ends (`previousSecretExpiresAt`), every delivery carries two signatures, `webhook-signature: v1,<new> v1,<old>`, " +
        "so receivers verify with either secret while they switch. Only one previous secret is kept: rotating again " +
        "during a window drops the older one. `graceSeconds: 0` switches at once. The body may be left out " +
        "(then the default grace applies).",
      tag,
      body: SecretRotation,
      bodyOptional: true,
      status: 200,
      response: RotatedSecret,
      handle: ({ app, params, body }) => endpoints.rotateSecret(app.id, params.id!, body.graceSeconds),
    }),
  ];
}
