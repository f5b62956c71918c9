import type { z } from "zod";

/**
 * The route table. Every HTTP route is one ApiOperation: mount.ts registers it with Elysia (reading and
 * validating the body and query with its schemas) and openapi builds the document from the same
 * objects, so the schemas that validate a request are the ones documented, and no route can be
 * served without being documented.
 */
export type Method = "GET" | "POST" | "PATCH" | "DELETE";

/**
 * Who may call a route: anyone (`public`: health, readiness, the OpenAPI document, metrics unless
 * METRICS_AUTH=admin), the admin key only (`admin`: applications and their keys), or a key acting on
 * one application (`application`, the default: an application's key, or the admin key naming the
 * application in the Evently-Application header).
 */
export type Access = "public" | "admin" | "application";

/** The application a request acts on, as authentication found it. */
export interface AppScope {
  id: string;
  /** Its ingest limit in events per second; null when unlimited. */
  rateLimitPerSecond: number | null;
}

export interface RouteInput<Query, Body> {
  /** Raw path parameters; handlers check ids with isId and answer 404 for junk. */
  params: Record<string, string>;
  query: Query;
  body: Body;
  /** The body's text as sent, for routes that keep members of it as written (ApiOperation.rawBody). */
  rawBody?: string;
  /** The application the request acts on; only `application` routes have one (others throw on reading it). */
  app: AppScope;
  headers: Headers;
  setHeader(name: string, value: string): void;
}

export interface ApiOperation<Q extends z.ZodType = z.ZodType, B extends z.ZodType = z.ZodType> {
  method: Method;
  /** Elysia path template, like `/endpoints/:id`. */
  path: string;
  operationId: string;
  summary: string;
  description?: string;
  tag: string;
  /** Who may call it; `application` when left out. */
  access?: Access;
  /** The query parameters, as an object schema; made strict when mounted (query.ts: unknown ones are a 422). */
  query?: Q & z.ZodObject;
  body?: B;
  /**
   * The body may be left out (no bytes; a content type then optional): it is validated as `{}`, so
   * an object schema's defaults apply. Documented as a request body that is not required.
   */
  bodyOptional?: boolean;
  /**
   * The handler keeps members of the body as written, read from RouteInput.rawBody (an event's data
   * is stored and delivered as the producer's bytes). The reader then holds numbers to what Postgres
   * can store, not to what a double can hold (`1e400` is kept, not refused): wherever the handler
   * uses the parsed value instead, the schema must refuse ±Infinity (z.number() does).
   */
  rawBody?: boolean;
  /** Largest accepted body; defaults to MAX_PAYLOAD_BYTES. */
  bodyLimitBytes?: number;
  /** Request headers the route reads, for the document. */
  headers?: { name: string; description: string }[];
  /** The success status (a handler returns a Reply for the rare other one). */
  status: number;
  /** The success body: a schema, `text` for plain text, or absent for an empty body (204). */
  response?: z.ZodType | "text";
  /** Response headers the route may set, for the document. */
  responseHeaders?: { name: string; description: string }[];
  /** Non-error responses besides the success one (GET /ready's 503), for the document. */
  otherResponses?: { status: number; description: string; schema: z.ZodType }[];
  /** Error statuses beyond the ones implied (401, 422, 400/413 with a body, 404 with an id). */
  errors?: number[];
  /** Returns the response body, a Reply for another status, JsonText for a body already serialised, or a Response passed through as is. */
  handle(input: RouteInput<z.output<Q>, z.output<B>>): unknown;
}

/** A body sent with a status other than the route's usual one (GET /ready answering 503). */
export class Reply {
  constructor(
    readonly status: number,
    readonly body: unknown,
  ) {}
}

/**
 * A success body already serialised as JSON, sent as it is: for a value that JSON.parse and
 * JSON.stringify would not give back as stored (an event's data holding 1e400 or a big integer).
 */
export class JsonText {
  constructor(readonly text: string) {}
}

/**
 * Declares one route. The generics let the handler see the parsed query and body types; the result
 * is widened so routes with different schemas fit one table.
 */
export function defineOperation<Q extends z.ZodType = z.ZodUndefined, B extends z.ZodType = z.ZodUndefined>(
  route: ApiOperation<Q, B>,
): ApiOperation {
  return route as unknown as ApiOperation;
}
