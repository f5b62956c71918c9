import type { Config } from "@evently/core/config/index.ts";
import type { Sql } from "@evently/core/db/client.ts";
import { silentLogger, type Logger } from "@evently/core/log.ts";
import { endpointRoutes } from "./modules/endpoints/index.ts";
import { EndpointService } from "./modules/endpoints/service.ts";
import type { GroupCommitter } from "./modules/events/group-commit.ts";
import { eventRoutes } from "./modules/events/index.ts";
import { EventService } from "./modules/events/service.ts";
import { healthRoutes } from "./modules/health/index.ts";
import { jobRoutes } from "./modules/jobs/index.ts";
import { JobService } from "./modules/jobs/service.ts";
import { openApiRoute } from "./modules/openapi/index.ts";
import { routeRoutes } from "./modules/routes/index.ts";
import { RouteService } from "./modules/routes/service.ts";
import { authPlugin } from "./plugins/auth.ts";
import { createHttpApp } from "./plugins/ops.ts";
import { mountRoutes } from "./routing/mount.ts";
import type { ApiRoute } from "./routing/route.ts";

export interface AppDeps {
  /** Full config from loadConfig(). */
  config: Config;
  sql: Sql;
  ingest: GroupCommitter;
  /** Reachability for GET /ready, like `{postgres: true, rabbitmq: false}`; the runtime supplies real checks. */
  readiness: () => Promise<Record<string, boolean>>;
  /** GET /metrics (text/plain; version=0.0.4); not served when absent. */
  renderMetrics?: () => Promise<string>;
  log?: Logger;
}

/**
 * The API as an Elysia instance that never listens: the runtime calls `.listen()`, tests call
 * `.handle(new Request(...))`. Every route comes from one table, which is also what GET /openapi
 * documents.
 */
export function createApp(deps: AppDeps) {
  const table = apiRoutes(deps);
  const publicPaths = new Set(table.filter((r) => r.public).map((r) => r.path));
  const app = createHttpApp(deps.log ?? silentLogger).use(authPlugin(deps.config.http.API_KEY, publicPaths));
  return mountRoutes(app, table, { bodyLimitBytes: deps.config.http.MAX_PAYLOAD_BYTES });
}

/** The route table createApp serves and GET /openapi documents. */
export function apiRoutes(deps: AppDeps): ApiRoute[] {
  const { config, sql } = deps;
  const table: ApiRoute[] = [
    ...healthRoutes(deps),
    ...endpointRoutes(new EndpointService(sql)),
    ...routeRoutes(new RouteService(sql)),
    ...eventRoutes(new EventService(sql, deps.ingest, { maxPayloadBytes: config.http.MAX_PAYLOAD_BYTES }), config.http),
    ...jobRoutes(new JobService(sql)),
  ];
  table.push(openApiRoute(table));
  return table;
}

export { createOpsApp } from "./plugins/ops.ts";
