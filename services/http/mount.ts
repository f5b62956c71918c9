import type { AnyElysia } from "elysia";
import { NotFoundError } from "@evently/core/errors.ts";
import { readJsonBody, type JsonBody } from "./body.ts";
import type { BodyBudget, BodyShare } from "./body-budget.ts";
import { readQuery, strictQuery } from "./query.ts";
import type { Authenticate } from "./auth.ts";
import { JsonText, Reply, type ApiOperation, type AppScope, type RouteInput } from "./operation.ts";
import { parseInput } from "./validate.ts";
import { SPAN } from "@evently/core/telemetry/names.ts";
import { tracer } from "@evently/core/telemetry/tracing.ts";
import { requestParent, tracingEnabled } from "@evently/core/telemetry/trace-context.ts";
import { SpanKind, SpanStatusCode, type Context } from "@opentelemetry/api";

/** The part of Elysia's handler context the table's handlers need. */
interface HandlerContext {
  request: Request;
  params: Record<string, string>;
  set: { status?: number | string; headers: Record<string, string | number> };
}

// Elysia's `route` is typed for inference from literal schemas; the table is typed by ApiOperation
// instead, so registration goes through this narrow view of it.
interface RouteRegistrar {
  route(method: string, path: string, handler: (ctx: HandlerContext) => unknown, hook: { parse: "none" }): unknown;
}

export interface MountOptions {
  /** Body limit for routes that set none (MAX_PAYLOAD_BYTES). */
  bodyLimitBytes: number;
  /** The process's budget for bodies being read at once (MAX_BODY_BYTES_IN_FLIGHT). */
  bodyBudget: BodyBudget;
  /** Checks the key of every route that is not public; required when the table has one. */
  authenticate?: Authenticate;
  /**
   * Throws 503 while the database is known unreachable (core/db/health.ts), so routes that need it
   * answer at once instead of waiting for the pool to give up; public routes do not ask.
   */
  ensureDatabase?: () => void;
}

/** The body, not yet validated; an optional one left out reads as `{}` (see ApiOperation.bodyOptional). */
async function readBody(request: Request, route: ApiOperation, limitBytes: number, share: BodyShare): Promise<JsonBody> {
  const body = await readJsonBody(request, limitBytes, share, { optional: route.bodyOptional, keepsText: route.rawBody });
  return body.value === undefined && route.bodyOptional ? { value: {}, text: body.text } : body;
}

/**
 * Registers each route of the table: reads and validates the query (strict, on every route: see
 * query.ts) and the body (our reader, not Elysia's parser, JSON content types only: see body.ts),
 * calls the handler and answers with the route's status.
 */
export function mountOperations<App extends AnyElysia>(app: App, routes: ApiOperation[], options: MountOptions): App {
  const registrar = app as unknown as RouteRegistrar;
  for (const route of routes) {
    const bodyLimit = route.bodyLimitBytes ?? options.bodyLimitBytes;
    const querySchema = strictQuery(route.query);
    const access = route.access ?? "application";
    const { authenticate } = options;
    if (access !== "public" && !authenticate) throw new Error(`${route.method} ${route.path} needs a key, but nothing checks keys`);
    const handle = async ({ request, params, set }: HandlerContext): Promise<unknown> => {
      // First: nothing of the request is read for a caller without a valid key.
      const scope = access === "public" ? null : await authenticate!(request, access);
      if (access !== "public") options.ensureDatabase?.();
      // A path segment that does not decode (`%zz`, broken UTF-8) arrives as null: it names nothing.
      for (const value of Object.values(params ?? {})) if (typeof value !== "string") throw new NotFoundError("resource", "named by that path");
      const query = parseInput(querySchema, readQuery(request), "query");
      // The body's bytes count against the process's budget until the handler has answered: its
      // parsed value (often larger than the text) lives that long, a batch through its commit.
      const share = options.bodyBudget.share();
      let result: unknown;
      try {
        const body = route.body ? await readBody(request, route, bodyLimit, share) : undefined;
        const input: RouteInput<unknown, unknown> = {
          params,
          query: route.query ? query : undefined,
          body: body && parseInput(route.body!, body.value, "body"),
          rawBody: route.rawBody ? body?.text : undefined,
          get app(): AppScope {
            if (!scope) throw new Error(`${route.method} ${route.path} is not an application route`);
            return scope;
          },
          headers: request.headers,
          setHeader: (name, value) => {
            set.headers[name] = value;
          },
        };
        result = await route.handle(input);
      } finally {
        share.release();
      }
      if (result instanceof Response) return result;
      if (result instanceof JsonText) {
        return new Response(result.text, { status: route.status, headers: { "content-type": "application/json;charset=utf-8" } });
      }
      if (result instanceof Reply) {
        set.status = result.status;
        return result.body;
      }
      set.status = route.status;
      return route.response === undefined ? undefined : result;
    };
    // Public routes (health, readiness, metrics, the OpenAPI document) are polled, not traced.
    const traced = access !== "public";
    // An async function, as Elysia compiles it: it awaits only handlers it sees are async, and a
    // rejection it does not await escapes its error rendering. The context is destructured, never
    // passed on whole: Elysia reads a handler's source to learn what it uses, and one that hands its
    // context to a function gets the query, headers and cookies parsed on every request.
    const handler = traced
      ? async ({ request, params, set }: HandlerContext) => {
          const parent = tracingEnabled() ? requestParent(request.headers.get("traceparent")) : null;
          const ctx = { request, params, set };
          return parent ? await tracedRequest(route, ctx, parent, handle) : await handle(ctx);
        }
      : handle;
    registrar.route(route.method, route.path, handler, { parse: "none" });
  }
  return app;
}

/**
 * The request's span, made here because automatic HTTP instrumentation does not see Bun.serve. A
 * caller's `traceparent` makes it a child of the caller's span. Attributes are the route and the
 * status only: never headers (keys), the query or the body.
 */
function tracedRequest(route: ApiOperation, ctx: HandlerContext, parent: Context, handle: (ctx: HandlerContext) => Promise<unknown>): Promise<unknown> {
  const attributes = { "http.request.method": route.method, "http.route": route.path };
  return tracer().startActiveSpan(SPAN.httpRequest, { kind: SpanKind.SERVER, attributes }, parent, async (span) => {
    try {
      const result = await handle(ctx);
      const status = result instanceof Response ? result.status : Number(ctx.set.status ?? route.status);
      span.setAttribute("http.response.status_code", status);
      if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      return result;
    } catch (err) {
      // The error's class and code, not its message: a message may quote the input.
      const error = err as { status?: number; code?: string };
      span.setAttributes({ "error.type": error.code ?? (err as Error).constructor?.name ?? "Error", "http.response.status_code": error.status ?? 500 });
      if ((error.status ?? 500) >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      throw err;
    } finally {
      span.end();
    }
  });
}
