import { Elysia } from "elysia";
import { isConnectionError } from "@evently/core/db/errors.ts";
import { AppError } from "@evently/core/errors.ts";
import type { Logger } from "@evently/core/log.ts";
import { REQUEST_ID_HEADER } from "./request-id.ts";

export interface ErrorResponse {
  status: number;
  body: { code: string; detail: string } & Record<string, unknown>;
  headers?: Record<string, string>;
}

/**
 * The one place errors become responses: `{code, detail, ...extra}` with the error's status.
 * AppErrors render as they are; Elysia's own errors map onto the same codes; anything else is a 500
 * that says nothing about its cause (the cause goes to the log, with the request id to find it).
 */
export function renderError(code: unknown, error: unknown, request: Request): ErrorResponse {
  if (error instanceof AppError) {
    return { status: error.status, body: { code: error.code, detail: error.detail, ...error.extra }, headers: error.headers };
  }
  if (isConnectionError(error)) {
    return { status: 503, body: { code: "unavailable", detail: "database unavailable, try again" } };
  }
  switch (code) {
    case "NOT_FOUND":
      return { status: 404, body: { code: "not_found", detail: `no route for ${request.method} ${new URL(request.url).pathname}` } };
    case "PARSE":
      return { status: 400, body: { code: "malformed_json", detail: "request body is not valid JSON" } };
    case "INVALID_COOKIE_SIGNATURE":
    case "INVALID_FILE_TYPE":
      return { status: 400, body: { code: "bad_request", detail: "request is invalid" } };
    default:
      return { status: 500, body: { code: "internal", detail: "internal error" } };
  }
}

/**
 * Postgres cannot be reached (as opposed to a query failing): worth a 503, which clients and load
 * balancers retry, rather than a 500. Same classes as the group committer's check.
 */
export function errorsPlugin(log: Logger) {
  return new Elysia({ name: "evently.errors" })
    .error({ AppError })
    .onError({ as: "global" }, ({ code, error, set, request, route }) => {
      const rendered = renderError(code, error, request);
      // Errors we did not raise ourselves are bugs or outages; the response hides them, the log
      // keeps them, findable by the request id the caller got back.
      if (!(error instanceof AppError) && rendered.status >= 500) {
        log.error("request failed", {
          requestId: set.headers[REQUEST_ID_HEADER],
          method: request.method,
          route: route || undefined,
          error: error instanceof Error ? (error.stack ?? error.message) : String(error),
        });
      }
      set.status = rendered.status;
      Object.assign(set.headers, rendered.headers);
      return rendered.body;
    });
}
