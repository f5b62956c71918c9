import { defineOperation, type ApiOperation } from "../../../http/operation.ts";
import { ApiKeyCreate, ApiKeyListQuery, ApiKeyPage, ApiKeyWithSecret } from "./model.ts";
import type { ApiKeyService } from "./service.ts";

const tag = "api-keys";

/** An application's API keys: admin key only. `{id}` is the application's id or uid. */
export function apiKeyOperations(keys: ApiKeyService): ApiOperation[] {
  return [
    defineOperation({
      method: "POST",
      path: "/applications/:id/api-keys",
      operationId: "createApiKey",
      summary: "Create an API key for an application",
      description:
        "The response is the only place the key appears; Evently stores a SHA-256 digest of it. The key acts on " +
        "this application only: its endpoints, routes, events and jobs.",
      tag,
      access: "admin",
      body: ApiKeyCreate,
      status: 201,
      response: ApiKeyWithSecret,
      handle: ({ params, body }) => keys.create(params.id!, body),
    }),
    defineOperation({
      method: "GET",
      path: "/applications/:id/api-keys",
      operationId: "listApiKeys",
      summary: "List an application's API keys, newest first (revoked ones too)",
      tag,
      access: "admin",
      query: ApiKeyListQuery,
      status: 200,
      response: ApiKeyPage,
      handle: ({ params, query }) => keys.list(params.id!, query),
    }),
    defineOperation({
      method: "DELETE",
      path: "/applications/:id/api-keys/:keyId",
      operationId: "revokeApiKey",
      summary: "Revoke an API key",
      description: "Every API process refuses the key as soon as it hears of the change (LISTEN/NOTIFY), normally within milliseconds.",
      tag,
      access: "admin",
      status: 204,
      handle: ({ params }) => keys.revoke(params.id!, params.keyId!),
    }),
  ];
}
