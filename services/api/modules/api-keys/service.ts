import { generateApiKey } from "@evently/core/api-keys/keys.ts";
import { insertApiKey, listApiKeys, revokeApiKey } from "@evently/core/api-keys/sql.ts";
import type { Sql } from "@evently/core/db/client.ts";
import { NotFoundError } from "@evently/core/errors.ts";
import { isId, newId } from "@evently/core/ids.ts";
import { toPage, type Page } from "../../common/model.ts";
import type { ApplicationService } from "../applications/service.ts";
import { presentApiKey, type ApiKey, type ApiKeyCreate, type ApiKeyListQuery } from "./model.ts";

/** An application's keys; the application is named by id or uid. */
export class ApiKeyService {
  constructor(
    private readonly sql: Sql,
    private readonly applications: ApplicationService,
  ) {}

  /** The key is returned here once; only its digest is stored. */
  async create(application: string, input: ApiKeyCreate): Promise<ApiKey & { key: string }> {
    const { id: appId } = await this.applications.row(application);
    const { key, prefix, hash } = generateApiKey();
    const row = await insertApiKey(this.sql, { id: newId("apiKey"), appId, name: input.name, prefix, hash, expiresAt: input.expiresAt });
    return { ...presentApiKey(row), key };
  }

  async list(application: string, query: ApiKeyListQuery): Promise<Page<ApiKey>> {
    const { id: appId } = await this.applications.row(application);
    const rows = await listApiKeys(this.sql, appId, { before: query.cursor, limit: query.limit + 1 });
    return toPage(rows, query.limit, presentApiKey);
  }

  /** Revoked at once on every API process (the change is notified); revoking twice is harmless. */
  async revoke(application: string, keyId: string): Promise<void> {
    const { id: appId } = await this.applications.row(application);
    if (!isId("apiKey", keyId) || !(await revokeApiKey(this.sql, appId, keyId))) throw new NotFoundError("API key", keyId);
  }
}
