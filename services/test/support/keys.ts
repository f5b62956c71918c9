import { generateApiKey } from "../../core/api-keys/keys.ts";
import { insertApiKey } from "../../core/api-keys/sql.ts";
import { DEFAULT_APPLICATION_ID } from "../../core/applications/sql.ts";
import type { Sql } from "../../core/db/client.ts";
import { newId } from "../../core/ids.ts";

/** The admin key and encryption key every test installation runs with. */
export const TEST_ADMIN_KEY = "test-admin-key-0123456789abcdef0123456789abcdef";
export const TEST_ENCRYPTION_KEY = Buffer.alloc(32, 7).toString("base64");
export const TEST_SECRETS_ENV = { ADMIN_API_KEY: TEST_ADMIN_KEY, ENCRYPTION_KEY: TEST_ENCRYPTION_KEY };

/** Makes an application key straight in the database (as POST /applications/:id/api-keys would); returns the key. */
export async function createKey(sql: Sql, appId = DEFAULT_APPLICATION_ID, name = "test"): Promise<string> {
  const { key, prefix, hash } = generateApiKey();
  await insertApiKey(sql, { id: newId("apiKey"), appId, name, prefix, hash, expiresAt: null });
  return key;
}

/** Headers that make the admin key act on `app` (id or uid). */
export const asAdminOf = (app: string) => ({ authorization: `Bearer ${TEST_ADMIN_KEY}`, "evently-application": app });
