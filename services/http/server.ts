import { Elysia } from "elysia";
import { silentLogger, type Logger } from "@evently/core/log.ts";
import { healthOperations, type HealthDeps } from "./health/index.ts";
import { BodyBudget } from "./body-budget.ts";
import { mountOperations } from "./mount.ts";
import type { Authenticate } from "./auth.ts";
import { errorsPlugin } from "./errors.ts";
import { metricsPlugin } from "./metrics.ts";
import { requestIdPlugin } from "./request-id.ts";

/**
 * The HTTP basics every role's server shares: request ids, request metrics and error rendering.
 * Request ids come first so every response, 401s and 404s included, carries one.
 */
export function createHttpApp(log: Logger) {
  return new Elysia().use(requestIdPlugin()).use(metricsPlugin()).use(errorsPlugin(log));
}

export interface OpsDeps extends HealthDeps {
  log?: Logger;
  /** Checks the admin key on /metrics when METRICS_AUTH=admin. */
  authenticate?: Authenticate;
}

/**
 * `/health`, `/ready` and `/metrics` alone: the HTTP server of the worker and dispatcher roles.
 * The API (api/app.ts) serves the same operations next to its own. This folder holds what every
 * role's HTTP server shares, so a worker-only process loads nothing of the API.
 */
export function createOpsApp(deps: OpsDeps) {
  // No route here reads a body; the limits only have to be some number.
  return mountOperations(createHttpApp(deps.log ?? silentLogger), healthOperations(deps), {
    bodyLimitBytes: 1024,
    bodyBudget: new BodyBudget(1024),
    authenticate: deps.authenticate,
  });
}
