import type { Sql, TxSql } from "../db/client.ts";
import { encryptedPrefix } from "./cipher.ts";
import type { SecretFields } from "./fields.ts";

/** An endpoint's stored secrets, as `reencrypt` reads and rewrites them. */
export interface StoredSecrets extends SecretFields {
  id: string;
}

// A stored value is "stale" unless it starts with the current key's prefix: plaintext from before
// encryption, or a value under an older key. The prefix is hex, `:` and letters: no LIKE wildcards.
const stale = (sql: Sql | TxSql, keyId: string) => sql`
  (secret not like ${encryptedPrefix(keyId) + "%"}
   or (previous_secret is not null and previous_secret not like ${encryptedPrefix(keyId) + "%"}))`;

/**
 * Locks the next `limit` endpoints after `afterId` (by id) whose secrets are not under `keyId`.
 * Rows another transaction holds (a rotation, an update) are skipped, not waited for: a run never
 * stalls the API, and what it skipped shows up in countStaleSecrets.
 */
export async function lockStaleSecrets(tx: TxSql, keyId: string, afterId: string, limit: number): Promise<StoredSecrets[]> {
  return tx<StoredSecrets[]>`
    select id, secret, previous_secret
    from endpoints
    where id > ${afterId} and ${stale(tx, keyId)}
    order by id
    limit ${limit}
    for update skip locked`;
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
    set secret = v.secret, previous_secret = v.previous_secret
    from unnest(${rows.map((r) => r.id)}::text[], ${rows.map((r) => r.secret)}::text[],
                ${rows.map((r) => r.previousSecret)}::text[]) as v(id, secret, previous_secret)
    where e.id = v.id`;
}

/** How many endpoints still hold a secret not under `keyId`. */
export async function countStaleSecrets(sql: Sql, keyId: string): Promise<number> {
  const [row] = await sql<{ count: number }[]>`select count(*)::int as count from endpoints where ${stale(sql, keyId)}`;
  return row!.count;
}
