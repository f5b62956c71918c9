import type { Sql, TxSql } from "../db/client.ts";
import { SENSITIVE_HEADER_SOURCE } from "../redact.ts";
import { encryptedPrefix } from "./cipher.ts";
import type { SecretFields } from "./fields.ts";

/** An endpoint's stored secrets, as `reencrypt` reads and rewrites them. */
export interface StoredSecrets extends SecretFields {
  id: string;
  /** The url, its password (if any) encrypted in place. */
  url: string;
  /** Custom headers, credential values encrypted. */
  headers: Record<string, string>;
}

// A stored value is "stale" unless it starts with the current key's prefix: plaintext from before
// encryption, or a value under an older key. The prefix is hex, `:` and letters: no LIKE wildcards.
// In a url the prefix is the password, percent-encoded (`:` as %3A) right after `user:`; in headers
// only credential values are encrypted, picked by the same pattern as redact.ts uses.
const stale = (sql: Sql | TxSql, keyId: string) => sql`
  (secret not like ${encryptedPrefix(keyId) + "%"}
   or (previous_secret is not null and previous_secret not like ${encryptedPrefix(keyId) + "%"})
   or (url ~ '^[A-Za-z][A-Za-z0-9+.-]*://[^/?#@]*:[^/?#@]+@'
       and strpos(url, ${":" + encryptedPrefix(keyId).replaceAll(":", "%3A")}) = 0)
   or exists (select 1 from jsonb_each_text(headers) h
              where h.key ~* ${SENSITIVE_HEADER_SOURCE} and not starts_with(h.value, ${encryptedPrefix(keyId)})))`;

/**
 * Locks the next `limit` endpoints after `afterId` (by id) whose secrets are not under `keyId`.
 * Rows another transaction holds (a rotation, an update) are skipped, not waited for: a run never
 * stalls the API, and what it skipped shows up in countStaleSecrets.
 */
export async function lockStaleSecrets(tx: TxSql, keyId: string, afterId: string, limit: number): Promise<StoredSecrets[]> {
  const rows = await tx<(Omit<StoredSecrets, "headers"> & { headersJson: string })[]>`
    select id, secret, previous_secret, url, headers::text as headers_json
    from endpoints
    where id > ${afterId} and ${stale(tx, keyId)}
    order by id
    limit ${limit}
    for update skip locked`;
  // Read as text: header names come back verbatim, whatever the client's column transform.
  return rows.map(({ headersJson, ...rest }) => ({ ...rest, headers: JSON.parse(headersJson) }));
}

/**
 * Writes the rewritten secrets of locked rows in one statement. updated_at stays: the secrets did
 * not change, only how they are stored. (The endpoints trigger still notifies the workers, which
 * reload the rows and decrypt the same secrets.)
 */
export async function writeSecrets(tx: TxSql, rows: readonly StoredSecrets[]): Promise<void> {
  if (rows.length === 0) return;
  await tx`
    update endpoints e
    set secret = v.secret, previous_secret = v.previous_secret, url = v.url, headers = v.headers::jsonb
    from unnest(${rows.map((r) => r.id)}::text[], ${rows.map((r) => r.secret)}::text[],
                ${rows.map((r) => r.previousSecret)}::text[], ${rows.map((r) => r.url)}::text[],
                ${rows.map((r) => JSON.stringify(r.headers))}::text[]) as v(id, secret, previous_secret, url, headers)
    where e.id = v.id`;
}

/** How many endpoints still hold a secret not under `keyId`. */
export async function countStaleSecrets(sql: Sql, keyId: string): Promise<number> {
  const [row] = await sql<{ count: number }[]>`select count(*)::int as count from endpoints where ${stale(sql, keyId)}`;
  return row!.count;
}
