import type { Config } from "@evently/core/config/index.ts";
import type { Sql } from "@evently/core/db/client.ts";
import { silentLogger, type Logger } from "@evently/core/log.ts";
import { endpointOperations } from "./modules/endpoints/index.ts";
import { EndpointService } from "./modules/endpoints/service.ts";
import type { Ingest } from "@evently/core/ingest/index.ts";
import { eventOperations } from "./modules/events/index.ts";
import { EventService } from "./modules/events/service.ts";
import { healthOperations } from "../http/health/index.ts";
import { jobOperations } from "./modules/jobs/index.ts";
import { JobService } from "./modules/jobs/service.ts";
import { operationOperations } from "./modules/operations/index.ts";
import { OperationService } from "./modules/operations/service.ts";
import { openApiOperation } from "./modules/openapi/index.ts";
import { routeOperations } from "./modules/routes/index.ts";
import { RouteService } from "./modules/routes/service.ts";
import { ApplicationService } from "./modules/applications/service.ts";
import { applicationOperations } from "./modules/applications/index.ts";
import { ApiKeyService } from "./modules/api-keys/service.ts";
import { apiKeyOperations } from "./modules/api-keys/index.ts";
import type { IngestRateLimit } from "./modules/events/service.ts";
import type { Authenticate } from "../http/auth.ts";
import { createHttpApp } from "../http/server.ts";
import { databaseHealth } from "@evently/core/db/health.ts";
import { mountOperations } from "../http/mount.ts";
import { BodyBudget } from "../http/body-budget.ts";
import type { MemoryGuard } from "@evently/core/memory-guard.ts";
import { AddressPolicy } from "@evently/core/net/policy.ts";
import { SecretCipher } from "@evently/core/secrets/cipher.ts";
import type { ApiOperation } from "../http/operation.ts";

export interface AppDeps {
  /** Full config from loadConfig(). */
  config: Config;
  sql: Sql;
  ingest: Ingest;
  /** Reachability for GET /ready, like `{postgres: true, rabbitmq: false}`; the runtime supplies real checks. */
  readiness: () => Promise<Record<string, boolean>>;
  /** GET /metrics (text/plain; version=0.0.4); not served when absent. */
  renderMetrics?: () => Promise<string>;
  /** Checks keys (auth/authenticator.ts); the runtime starts and stops what backs it. */
  authenticate: Authenticate;
  /** Holds each application's ingest rate limit across API processes. */
  rateLimit: IngestRateLimit;
  /** The process's memory guard (runtime.ts), asked before each request body is read. */
  memory?: MemoryGuard;
  log?: Logger;
}

/**
 * The API as an Elysia instance that never listens: the runtime serves it with `Bun.serve`
 * (runtime.ts) and tests call `.handle(new Request(...))`. Every route comes from one table, which is also what GET /openapi
 * documents.
 */
export function createApp(deps: AppDeps) {
  return mountOperations(createHttpApp(deps.log ?? silentLogger), apiOperations(deps), {
    bodyLimitBytes: deps.config.http.MAX_PAYLOAD_BYTES,
    // One per app, and a process serves one app: the bound is per process.
    bodyBudget: new BodyBudget(deps.config.http.MAX_BODY_BYTES_IN_FLIGHT, deps.memory),
    authenticate: deps.authenticate,
    ensureDatabase: () => databaseHealth(deps.sql).ensureAvailable(),
  });
}

/** The route table createApp serves and GET /openapi documents. */
export function apiOperations(deps: AppDeps): ApiOperation[] {
  const { config, sql } = deps;
  const applications = new ApplicationService(sql);
  const table: ApiOperation[] = [
    ...healthOperations({ ...deps, metricsAccess: config.http.METRICS_AUTH }),
    ...applicationOperations(applications),
    ...apiKeyOperations(new ApiKeyService(sql, applications)),
    ...endpointOperations(new EndpointService(sql, {
        addressPolicy: AddressPolicy.fromConfig(config.delivery),
        cipher: SecretCipher.fromConfig(config.secrets),
      })),
    ...routeOperations(new RouteService(sql)),
    ...eventOperations(
      new EventService(sql, deps.ingest, { maxPayloadBytes: config.http.MAX_PAYLOAD_BYTES }, deps.rateLimit),
      config.http,
    ),
    ...jobOperations(new JobService(sql)),
    ...operationOperations(new OperationService(sql)),
  ];
  table.push(openApiOperation(table));
  return table;
}

export { createOpsApp } from "../http/server.ts";
