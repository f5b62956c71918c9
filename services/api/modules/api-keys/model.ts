import { z } from "zod";
import type { ApiKeyRow } from "@evently/core/api-keys/sql.ts";
import { pageOf, pageQuery, storableTime, timestamp } from "../../common/model.ts";

export const ApiKeyCreate = z
  .strictObject({
    name: z.string().trim().min(1).max(200).describe("What the key is for, like `billing-service production`."),
    expiresAt: storableTime
      .refine((t) => t.getTime() > Date.now(), "must be in the future")
      .nullable()
      .default(null)
      .describe("When the key stops working; null: never (revoke it instead)."),
  })
  .meta({ id: "ApiKeyCreate" });
export type ApiKeyCreate = z.output<typeof ApiKeyCreate>;

export const ApiKey = z
  .object({
    id: z.string(),
    applicationId: z.string(),
    name: z.string(),
    prefix: z.string().describe("The key's first characters, to recognise it; the key itself is shown only once."),
    createdAt: timestamp,
    expiresAt: timestamp.nullable(),
    revokedAt: timestamp.nullable(),
    lastUsedAt: timestamp.nullable().describe("When the key last authenticated a request, to within about 10 seconds."),
  })
  .meta({ id: "ApiKey" });
export type ApiKey = z.output<typeof ApiKey>;

export const ApiKeyWithSecret = ApiKey.extend({
  key: z.string().describe("The key: `evk_` and 43 characters. Shown only in this response; store it now."),
}).meta({ id: "ApiKeyWithSecret" });

export const ApiKeyPage = pageOf(ApiKey).meta({ id: "ApiKeyPage" });
export const ApiKeyListQuery = pageQuery("apiKey");
export type ApiKeyListQuery = z.output<typeof ApiKeyListQuery>;

const iso = (d: Date | null) => d?.toISOString() ?? null;

export function presentApiKey(row: ApiKeyRow): ApiKey {
  return {
    id: row.id,
    applicationId: row.appId,
    name: row.name,
    prefix: row.prefix,
    createdAt: row.createdAt.toISOString(),
    expiresAt: iso(row.expiresAt),
    revokedAt: iso(row.revokedAt),
    lastUsedAt: iso(row.lastUsedAt),
  };
}
