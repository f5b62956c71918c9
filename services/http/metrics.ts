import { Elysia, StatusMap } from "elysia";
import { instruments } from "@evently/core/telemetry/instruments.ts";

const started = new WeakMap<Request, number>();

/** Requests that matched no route share one label, so scanners cannot blow up the series count. */
export const UNMATCHED_ROUTE = "unmatched";

/**
 * Counts and times every request, labelled by route template (`/endpoints/:id`), never the raw path:
 * one series per route instead of one per id.
 */
export function metricsPlugin() {
  return new Elysia({ name: "evently.metrics" })
    .onRequest(({ request }) => {
      started.set(request, performance.now());
    })
    .onAfterResponse({ as: "global" }, ({ request, route, set }) => {
      const start = started.get(request);
      const attributes = {
        route: route || UNMATCHED_ROUTE,
        method: request.method,
        status: statusCode(set.status),
      };
      const m = instruments();
      m.httpRequests.add(1, attributes);
      if (start !== undefined) m.httpDuration.record((performance.now() - start) / 1000, attributes);
    });
}

function statusCode(status: number | string | undefined): number {
  if (typeof status === "number") return status;
  if (status === undefined) return 200;
  return (StatusMap as Record<string, number>)[status] ?? 500;
}
