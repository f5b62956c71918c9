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
  StatusReason,
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
      description:
        "`enabled` and `paused` change the status as POST /endpoints/{id}/enable, /disable, /pause and /resume do, " +
        "with the reasons `disabled by update` and `paused by update`; pausing a disabled endpoint is a 409.",
      tag,
      body: EndpointUpdate,
      status: 200,
      response: Endpoint,
      errors: [409],
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
    ...statusOperations(endpoints),
  ];
}

/** Pause, resume, disable, enable: each answers 200 with the endpoint, and repeating one changes nothing. */
function statusOperations(endpoints: EndpointService): ApiOperation[] {
  return [
    defineOperation({
      method: "POST",
      path: "/endpoints/:id/pause",
      operationId: "pauseEndpoint",
      summary: "Pause an endpoint: hold its jobs, without spending attempts, until resume",
      description:
        "New events still make jobs for a paused endpoint; workers hold them (and retries that come due) instead of " +
        "sending them, and TTLs still apply. `statusReason` records the reason (default `paused by operator`). " +
        "Pausing a paused endpoint keeps `statusChangedAt`, replacing the reason only if one is given. A disabled " +
        "endpoint cannot be paused (409): enable it first.",
      tag,
      body: StatusReason,
      bodyOptional: true,
      status: 200,
      response: Endpoint,
      errors: [409],
      handle: ({ app, params, body }) => endpoints.pause(app.id, params.id!, body.reason ?? null),
    }),
    defineOperation({
      method: "POST",
      path: "/endpoints/:id/resume",
      operationId: "resumeEndpoint",
      summary: "Resume a paused endpoint and send its held jobs at once",
      description:
        "Clears the reason, and makes every scheduled job of the endpoint due now: the jobs the pause held, and with " +
        "them jobs waiting for a retry after a failed attempt, which cannot be told apart from held ones (a job held " +
        "by the pause may have failed before it; no attempt is spent or lost either way). An open circuit still " +
        "applies: its jobs wait for the probe. On an active or disabled endpoint resume changes nothing.",
      tag,
      status: 200,
      response: Endpoint,
      handle: ({ app, params }) => endpoints.resume(app.id, params.id!),
    }),
    defineOperation({
      method: "POST",
      path: "/endpoints/:id/disable",
      operationId: "disableEndpoint",
      summary: "Disable an endpoint: no new jobs, and its pending jobs end cancelled",
      description:
        "Events stop making jobs for it; jobs already made end `cancelled` (reason `endpoint_disabled`) when a worker " +
        "reaches them. Ends a pause. `statusReason` records the reason (default `disabled by operator`); workers " +
        "disable an endpoint themselves on a 410 Gone or after ENDPOINT_AUTO_DISABLE_AFTER_MS of failures, and then " +
        "send an `endpoint.disabled` event to its application. Disabling a disabled endpoint keeps `statusChangedAt`, " +
        "replacing the reason only if one is given.",
      tag,
      body: StatusReason,
      bodyOptional: true,
      status: 200,
      response: Endpoint,
      handle: ({ app, params, body }) => endpoints.disable(app.id, params.id!, body.reason ?? null),
    }),
    defineOperation({
      method: "POST",
      path: "/endpoints/:id/enable",
      operationId: "enableEndpoint",
      summary: "Enable a disabled endpoint: new events make jobs for it again",
      description:
        "Clears the reason and starts the endpoint afresh: its circuit closes and its run of failures is forgotten, " +
        "so auto-disable measures from the next failure. Jobs cancelled while it was disabled stay cancelled; " +
        "POST /endpoints/{id}/recover sends them again. Events accepted while it was disabled made no jobs for it. " +
        "On an enabled endpoint (active or paused) enable changes nothing.",
      tag,
      status: 200,
      response: Endpoint,
      handle: ({ app, params }) => endpoints.enable(app.id, params.id!),
    }),
  ];
}
