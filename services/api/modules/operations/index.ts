import { defineOperation, type ApiOperation } from "../../../http/operation.ts";
import { EndpointRecover, EventReplay, Operation, OperationListQuery, OperationPage } from "./model.ts";
import type { OperationService } from "./service.ts";

const tag = "operations";

const background =
  "Answers 202 with an operation (`op_…`) that replays the jobs in the background, in job id order, at most " +
  "OPERATION_RATE_PER_SECOND a second; follow it with GET /operations/{id}. Replayed jobs keep their history " +
  "(attempt numbers continue), get their retry policy afresh, and are delivered through the normal path, so the " +
  "endpoint's pause, circuit breaker and rate limit apply.";

/**
 * Bulk replay and recovery, and the operations that carry them out. The event and endpoint routes
 * live here, not in their own modules: what they start is an operation.
 */
export function operationOperations(operations: OperationService): ApiOperation[] {
  return [
    defineOperation({
      method: "POST",
      path: "/events/:id/replay",
      operationId: "replayEvent",
      summary: "Replay an event's ended jobs, in the background",
      description: background,
      tag,
      body: EventReplay,
      bodyOptional: true,
      status: 202,
      response: Operation,
      handle: ({ app, params, body }) => operations.replayEvent(app.id, params.id!, body),
    }),
    defineOperation({
      method: "POST",
      path: "/endpoints/:id/recover",
      operationId: "recoverEndpoint",
      summary: "Replay an endpoint's ended jobs created in a time window, in the background",
      description: `${background} A disabled endpoint is a 409: enable it first.`,
      tag,
      body: EndpointRecover,
      status: 202,
      response: Operation,
      errors: [409],
      handle: ({ app, params, body }) => operations.recoverEndpoint(app.id, params.id!, body),
    }),
    defineOperation({
      method: "GET",
      path: "/operations",
      operationId: "listOperations",
      summary: "List operations, newest first",
      tag,
      query: OperationListQuery,
      status: 200,
      response: OperationPage,
      handle: ({ app, query }) => operations.list(app.id, query),
    }),
    defineOperation({
      method: "GET",
      path: "/operations/:id",
      operationId: "getOperation",
      summary: "Get an operation and its progress",
      tag,
      status: 200,
      response: Operation,
      handle: ({ app, params }) => operations.get(app.id, params.id!),
    }),
    defineOperation({
      method: "POST",
      path: "/operations/:id/cancel",
      operationId: "cancelOperation",
      summary: "Cancel a queued or running operation; jobs already replayed stay replayed",
      tag,
      status: 200,
      response: Operation,
      errors: [409],
      handle: ({ app, params }) => operations.cancel(app.id, params.id!),
    }),
  ];
}
