import { z } from "zod";
import pkg from "../../../../package.json";
import { defineOperation, type ApiOperation } from "../../../http/operation.ts";
import { buildOpenApiDocument } from "./document.ts";

const OpenApiDocument = z.record(z.string(), z.unknown()).meta({ id: "OpenApiDocument" });

/**
 * GET /openapi, documenting every route of `table`, itself included (pass the table this route is
 * added to; the document is built on first request, once the table is complete).
 */
export function openApiOperation(table: readonly ApiOperation[]): ApiOperation {
  let document: Record<string, unknown> | undefined;
  return defineOperation({
    method: "GET",
    path: "/openapi",
    operationId: "getOpenApi",
    summary: "This OpenAPI 3.1 document",
    tag: "operations",
    access: "public",
    status: 200,
    response: OpenApiDocument,
    handle: () => (document ??= buildOpenApiDocument([...table], { title: "Evently API", version: pkg.version })),
  });
}
