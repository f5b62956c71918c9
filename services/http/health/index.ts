import { z } from "zod";
import { defineOperation, Reply, type ApiOperation } from "../operation.ts";
import { checkReadiness, type ReadinessCheck } from "./service.ts";

const Health = z.object({ status: z.literal("ok") }).meta({ id: "Health" });
const ReadinessBody = z
  .object({
    status: z.enum(["ok", "unavailable"]),
    checks: z.record(z.string(), z.boolean()).describe("Reachability of each dependency, like `postgres`, `rabbitmq`."),
  })
  .meta({ id: "Readiness" });

/** Within the usual 5 s probe timeout of orchestrators, leaving room for the network. */
const READINESS_TIMEOUT_MS = 3000;

export interface HealthDeps {
  readiness: ReadinessCheck;
  /** Prometheus text exposition; /metrics is served only when given. */
  renderMetrics?: () => Promise<string>;
  /** Who may read /metrics (METRICS_AUTH): anyone, or the admin key only. */
  metricsAccess?: "public" | "admin";
}

/** Liveness, readiness and metrics: served by every role without a key (metrics: unless METRICS_AUTH=admin). */
export function healthOperations(deps: HealthDeps): ApiOperation[] {
  const routes = [
    defineOperation({
      method: "GET",
      path: "/health",
      operationId: "getHealth",
      summary: "Liveness: the process is up and serving HTTP",
      tag: "operations",
      access: "public",
      status: 200,
      response: Health,
      handle: () => ({ status: "ok" }),
    }),
    defineOperation({
      method: "GET",
      path: "/ready",
      operationId: "getReadiness",
      summary: "Readiness: every dependency this process needs is reachable",
      tag: "operations",
      access: "public",
      status: 200,
      response: ReadinessBody,
      otherResponses: [{ status: 503, description: "A dependency is unreachable", schema: ReadinessBody }],
      handle: async () => {
        const { ready, checks } = await checkReadiness(deps.readiness, READINESS_TIMEOUT_MS);
        return ready ? { status: "ok", checks } : new Reply(503, { status: "unavailable", checks });
      },
    }),
  ];
  const { renderMetrics } = deps;
  if (renderMetrics) {
    routes.push(
      defineOperation({
        method: "GET",
        path: "/metrics",
        operationId: "getMetrics",
        summary: "Prometheus metrics of this process",
        tag: "operations",
        access: deps.metricsAccess ?? "public",
        status: 200,
        response: "text",
        handle: async () =>
          new Response(await renderMetrics(), {
            headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
          }),
      }),
    );
  }
  return routes;
}
