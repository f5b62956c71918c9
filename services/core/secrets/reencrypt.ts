import type { Config } from "../config/index.ts";
import { createSql, type Sql } from "../db/client.ts";
import type { Logger } from "../log.ts";
import { SecretCipher, SecretCipherError } from "./cipher.ts";
import { decryptUrlPassword, encryptUrlPassword, readStored, urlPasswordIsStale } from "./fields.ts";
import { isSensitiveHeader } from "../redact.ts";
import { countStaleSecrets, lockStaleSecrets, writeSecrets, type StoredSecrets } from "./sql.ts";

export interface ReencryptResult {
  /** Endpoints whose secrets were rewritten under the current key. */
  rewritten: number;
  /** Endpoints still not under it: locked by a write during the run, or written by a process on an older key. */
  remaining: number;
}

/**
 * Rewrites every endpoint's secrets (signing secrets, credential header values, the url's password)
 * that are not under the cipher's current key (plaintext from before encryption, or an older key)
 * under the current key. Run it after a key rotation, and once after encryption arrives, when every
 * process can read encrypted values.
 *
 * Safe while the system runs: each batch is one short transaction holding row locks, so a rotation
 * or update of the same endpoint waits for it or is skipped by it, never lost. Idempotent: values
 * already under the current key are not touched, so a second run rewrites nothing, and a run cut
 * short is finished by the next. `remaining` above zero means: run it again.
 */
export async function reencryptEndpoints(
  sql: Sql,
  cipher: SecretCipher,
  options: { batchSize?: number; onBatch?: (rewrittenSoFar: number) => void } = {},
): Promise<ReencryptResult> {
  const batchSize = options.batchSize ?? 500;
  let afterId = "";
  let rewritten = 0;
  for (;;) {
    const locked = await sql.begin(async (tx) => {
      const rows = await lockStaleSecrets(tx, cipher.keyId, afterId, batchSize);
      await writeSecrets(tx, await Promise.all(rows.map((row) => reencryptRow(cipher, row))));
      return rows;
    });
    rewritten += locked.length;
    if (locked.length > 0) options.onBatch?.(rewritten);
    // Fewer rows than asked for: the scan reached the last endpoint (locked rows are skipped, not counted).
    if (locked.length < batchSize) break;
    afterId = locked.at(-1)!.id;
  }
  return { rewritten, remaining: await countStaleSecrets(sql, cipher.keyId) };
}

async function reencryptRow(cipher: SecretCipher, row: StoredSecrets): Promise<StoredSecrets> {
  const rewrite = async (stored: string, column: string) => {
    if (cipher.isCurrent(stored)) return stored;
    try {
      return await cipher.encrypt(await readStored(cipher, stored));
    } catch (err) {
      // Names the row and column; the cipher's message never holds the value.
      throw new SecretCipherError(`endpoint ${row.id}, ${column}: ${(err as Error).message}`);
    }
  };
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(row.headers))
    headers[name] = isSensitiveHeader(name) ? await rewrite(value, `headers.${name}`) : value;
  let url = row.url;
  if (urlPasswordIsStale(url, (stored) => cipher.isCurrent(stored))) {
    try {
      url = await encryptUrlPassword(cipher, await decryptUrlPassword(cipher, url));
    } catch (err) {
      throw new SecretCipherError(`endpoint ${row.id}, url: ${(err as Error).message}`);
    }
  }
  return {
    id: row.id,
    secret: await rewrite(row.secret, "secret"),
    previousSecret: row.previousSecret === null ? null : await rewrite(row.previousSecret, "previous_secret"),
    url,
    headers,
  };
}

/** The `reencrypt` command: one run with the process's keys, logged; the result decides the exit code. */
export async function runReencrypt(config: Config, log: Logger): Promise<ReencryptResult> {
  const cipher = SecretCipher.fromConfig(config.secrets);
  const sql = createSql(config.database, { pool: "reencrypt", max: 1 });
  try {
    log.info("re-encrypting endpoint secrets", { keyId: cipher.keyId, decryptsWith: cipher.keyIds });
    const result = await reencryptEndpoints(sql, cipher, {
      onBatch: (rewrittenSoFar) => log.info("re-encrypted a batch", { rewrittenSoFar }),
    });
    if (result.remaining > 0)
      log.warn("endpoints were busy or written under an older key during the run; run reencrypt again", { ...result });
    else log.info("every endpoint secret is under the current key", { ...result, keyId: cipher.keyId });
    return result;
  } finally {
    await sql.end();
  }
}
