import { z } from "zod";
import { ErrorBody } from "../../common/model.ts";
import type { ApiOperation } from "../../../http/operation.ts";
import { APPLICATION_HEADER } from "../../auth/authenticator.ts";

/**
 * Builds the OpenAPI 3.1 document from the route table: the same zod schemas that validate requests
 * (converted with io "input": defaults make fields optional) and describe responses (io "output").
 */

type JsonSchema = Record<string, unknown>;
type Registry = z.core.$ZodRegistry<{ id: string }>;

const ERROR_DESCRIPTIONS: Record<number, string> = {
  400: "The body is not JSON (`malformed_json`)",
  401: "No key, or an unknown, expired or revoked one (`unauthorized`, with `WWW-Authenticate`)",
  403: "An application key on a route that needs the admin key (`forbidden`)",
  404: "No such resource (`not_found`)",
  409: "Conflicts with the current state (`conflict`)",
  429: "The application's ingest rate limit is used up for this second (`rate_limited`, with `Retry-After`); nothing was written",
  413: "The body is larger than the limit (`payload_too_large`)",
  415: "The body's content type is not `application/json` (`unsupported_media_type`)",
  422:
    "A body field or query parameter is invalid, or a query parameter is unknown or repeated (`validation_failed`); " +
    "`errors` lists every problem",
  500: "Internal error; nothing about it is disclosed (`internal`)",
  503:
    "A dependency is unavailable (`unavailable`), or the server is reading as many request bodies as it may at once " +
    "(`overloaded`, with `Retry-After`); nothing was written",
};

const componentRef = (id: string) => `#/components/schemas/${id}`;
const pascal = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);
const toOpenApiPath = (path: string) => path.replace(/:([A-Za-z0-9_]+)/g, "{$1}");

export interface DocumentInfo {
  title: string;
  version: string;
}

export function buildOpenApiDocument(routes: ApiOperation[], info: DocumentInfo): JsonSchema {
  const requests: Registry = z.registry<{ id: string }>();
  const responses: Registry = z.registry<{ id: string }>();
  responses.add(ErrorBody, { id: "Error" });
  const register = (registry: Registry, schema: z.ZodType, fallbackId: string): string => {
    const existing = registry.get(schema)?.id;
    if (existing) return existing;
    const id = (schema.meta()?.id as string | undefined) ?? fallbackId;
    registry.add(schema, { id });
    return id;
  };

  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const operation: Record<string, unknown> = {
      operationId: route.operationId,
      summary: route.summary,
      ...(route.description ? { description: route.description } : {}),
      tags: [route.tag],
      ...(route.access === "public" ? { security: [] } : {}),
      parameters: parameters(route),
    };
    if (route.body) {
      const id = register(requests, route.body, `${pascal(route.operationId)}Request`);
      operation.requestBody = { required: !route.bodyOptional, content: { "application/json": { schema: { $ref: componentRef(id) } } } };
    }
    operation.responses = operationResponses(route, (schema, fallback) => register(responses, schema, fallback));
    (paths[toOpenApiPath(route.path)] ??= {})[route.method.toLowerCase()] = operation;
  }

  return {
    openapi: "3.1.0",
    info: {
      ...info,
      description:
        "Evently accepts events, fans them out to endpoints by route and delivers them as signed webhooks. " +
        "Every route but health, readiness, metrics and this document needs `Authorization: Bearer <key>`: an " +
        "application's key (`evk_…`) acts on that application; the admin key manages applications and keys, and acts " +
        "on any application named by the `Evently-Application` header (its id or uid). " +
        "Request bodies are JSON, sent as `application/json` (415 otherwise); unknown body fields are refused with 422. " +
        "Query parameters a route does not declare, or given twice, are refused with 422 `validation_failed` naming them.",
    },
    tags: [...new Set(routes.map((r) => r.tag))].map((name) => ({ name })),
    security: [{ apiKey: [] }],
    paths,
    components: {
      schemas: mergeComponents(components(requests, "input"), components(responses, "output")),
      securitySchemes: {
        apiKey: {
          type: "http",
          scheme: "bearer",
          description:
            "`Authorization: Bearer <key>`: an application key (`evk_…`, made with POST /applications/{id}/api-keys) or ADMIN_API_KEY.",
        },
      },
    },
  };
}

function parameters(route: ApiOperation): JsonSchema[] {
  const list: JsonSchema[] = [];
  for (const [, name] of route.path.matchAll(/:([A-Za-z0-9_]+)/g)) {
    list.push({ name, in: "path", required: true, schema: { type: "string" } });
  }
  if (route.query) {
    const schema = toJsonSchema(route.query, "input") as { properties?: Record<string, JsonSchema>; required?: string[] };
    for (const [name, property] of Object.entries(schema.properties ?? {})) {
      const { description, ...rest } = property;
      list.push({
        name,
        in: "query",
        required: schema.required?.includes(name) ?? false,
        ...(description ? { description } : {}),
        schema: rest,
      });
    }
  }
  if ((route.access ?? "application") === "application") {
    list.push({
      name: APPLICATION_HEADER,
      in: "header",
      required: false,
      description: "With the admin key: the application to act on (its id or uid). With an application key: may be left out; if given, must name the key's own application.",
      schema: { type: "string" },
    });
  }
  for (const header of route.headers ?? []) {
    list.push({ name: header.name, in: "header", required: false, description: header.description, schema: { type: "string" } });
  }
  return list;
}

function operationResponses(route: ApiOperation, register: (schema: z.ZodType, fallbackId: string) => string): JsonSchema {
  const out: JsonSchema = {};
  const headers = route.responseHeaders?.length
    ? {
        headers: Object.fromEntries(
          route.responseHeaders.map((h) => [h.name, { description: h.description, schema: { type: "string" } }]),
        ),
      }
    : {};
  if (route.response === undefined) out[route.status] = { description: "No content", ...headers };
  else if (route.response === "text") {
    out[route.status] = { description: "OK", content: { "text/plain": { schema: { type: "string" } } }, ...headers };
  } else {
    const id = register(route.response, `${pascal(route.operationId)}Response`);
    out[route.status] = { description: "OK", content: { "application/json": { schema: { $ref: componentRef(id) } } }, ...headers };
  }
  for (const other of route.otherResponses ?? []) {
    const id = register(other.schema, `${pascal(route.operationId)}Response${other.status}`);
    out[other.status] = { description: other.description, content: { "application/json": { schema: { $ref: componentRef(id) } } } };
  }
  for (const status of impliedErrors(route)) {
    out[status] = {
      description: ERROR_DESCRIPTIONS[status] ?? "Error",
      content: { "application/json": { schema: { $ref: componentRef("Error") } } },
    };
  }
  return out;
}

/** The errors any route of this shape can answer, plus the ones it declares. */
function impliedErrors(route: ApiOperation): number[] {
  const statuses = new Set(route.errors ?? []);
  if (route.access !== "public") statuses.add(401);
  if (route.access === "admin") statuses.add(403);
  if ((route.access ?? "application") === "application") statuses.add(404); // the Evently-Application header
  if (route.body) [400, 413, 415, 503].forEach((s) => statuses.add(s)); // 503: MAX_BODY_BYTES_IN_FLIGHT
  statuses.add(422); // an unknown query parameter, on any route (http/query.ts); a bad body field
  if (route.path.includes(":")) statuses.add(404);
  statuses.add(500);
  return [...statuses].sort((a, b) => a - b);
}

/** Request and response schemas are converted apart (input vs output); one id must not mean two shapes. */
function mergeComponents(a: Record<string, JsonSchema>, b: Record<string, JsonSchema>): Record<string, JsonSchema> {
  for (const id of Object.keys(b)) {
    if (id in a && JSON.stringify(a[id]) !== JSON.stringify(b[id])) {
      throw new Error(`schema id ${id} names both a request and a response shape; give them different ids`);
    }
  }
  return { ...a, ...b };
}

// zod puts schemas that carry an id (`.meta({id})`) but were not registered themselves, like the
// Attempt inside JobDetail, under a `__shared` entry's $defs; they are lifted into components too.
const SHARED = "__shared";

function components(registry: Registry, io: "input" | "output"): Record<string, JsonSchema> {
  const { schemas } = z.toJSONSchema(registry, { io, uri: componentRef, unrepresentable: "any", override: tidy }) as {
    schemas: Record<string, JsonSchema>;
  };
  const shared = (schemas[SHARED]?.$defs ?? {}) as Record<string, JsonSchema>;
  delete schemas[SHARED];
  const all = { ...shared, ...schemas };
  for (const schema of Object.values(all)) {
    delete schema.$schema;
    delete schema.$id;
  }
  return liftSharedRefs(all) as Record<string, JsonSchema>;
}

function liftSharedRefs(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(liftSharedRefs);
  if (node === null || typeof node !== "object") return node;
  return Object.fromEntries(
    Object.entries(node).map(([key, value]) =>
      key === "$ref" && typeof value === "string"
        ? [key, value.replace(`${componentRef(SHARED)}#/$defs/`, componentRef(""))]
        : [key, liftSharedRefs(value)],
    ),
  );
}

function toJsonSchema(schema: z.ZodType, io: "input" | "output"): JsonSchema {
  const json = z.toJSONSchema(schema, { io, unrepresentable: "any", override: tidy }) as JsonSchema;
  delete json.$schema;
  return json;
}

/** Drops what zod spells out but says nothing: the date-time regex, and the safe-integer bounds of `.int()`. */
function tidy({ jsonSchema }: { jsonSchema: JsonSchema }): void {
  if (jsonSchema.format === "date-time") delete jsonSchema.pattern;
  if (jsonSchema.minimum === Number.MIN_SAFE_INTEGER) delete jsonSchema.minimum;
  if (jsonSchema.maximum === Number.MAX_SAFE_INTEGER) delete jsonSchema.maximum;
}
