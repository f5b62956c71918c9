import { isSensitiveHeader } from "../redact.ts";
import { isEncrypted, type SecretCipher } from "./cipher.ts";

/**
 * An endpoint's encrypted fields, as endpoints/sql.ts and the worker's cache read and write them.
 * Writes always encrypt. Reads also accept plaintext, because rows written before encryption arrived
 * stay plaintext until `reencrypt` rewrites them, and processes must keep delivering meanwhile.
 */

/** The signing secrets of an endpoint row (`secret`, `previous_secret`). */
export interface SecretFields {
  secret: string;
  previousSecret: string | null;
}

/** A stored value as it is used: decrypted, or as is when it predates encryption. */
export function readStored(cipher: SecretCipher, stored: string): Promise<string> {
  return isEncrypted(stored) ? cipher.decrypt(stored) : Promise.resolve(stored);
}

/** `row` with its secrets encrypted under the current key; other fields pass through. */
export async function encryptSecrets<T extends SecretFields>(cipher: SecretCipher, row: T): Promise<T> {
  const [secret, previousSecret] = await Promise.all([
    cipher.encrypt(row.secret),
    row.previousSecret === null ? null : cipher.encrypt(row.previousSecret),
  ]);
  return { ...row, secret, previousSecret };
}

/** `row` with its secrets as plaintext; other fields pass through. */
export async function decryptSecrets<T extends SecretFields>(cipher: SecretCipher, row: T): Promise<T> {
  const [secret, previousSecret] = await Promise.all([
    readStored(cipher, row.secret),
    row.previousSecret === null ? null : readStored(cipher, row.previousSecret),
  ]);
  return { ...row, secret, previousSecret };
}

/**
 * Custom headers with each credential value (the names redact.ts counts as sensitive) encrypted in
 * place; the others stay readable. The names say which values to decrypt, and the API never has to:
 * it shows credential headers redacted, and a PATCH sending the redaction back keeps the stored value.
 * So encrypt the request's headers before merging in values a PATCH keeps: those are encrypted already,
 * and a user's value that merely looks encrypted must still be encrypted like any other.
 */
export async function encryptHeaders(cipher: SecretCipher, headers: Record<string, string>): Promise<Record<string, string>> {
  return mapSensitive(headers, (value) => cipher.encrypt(value));
}

/** Custom headers as sent: credential values decrypted (or as is when they predate encryption). */
export async function decryptHeaders(cipher: SecretCipher, headers: Record<string, string>): Promise<Record<string, string>> {
  return mapSensitive(headers, (value) => readStored(cipher, value));
}

async function mapSensitive(
  headers: Record<string, string>,
  fn: (value: string) => Promise<string>,
): Promise<Record<string, string>> {
  const entries = await Promise.all(
    Object.entries(headers).map(async ([name, value]) => [name, isSensitiveHeader(name) ? await fn(value) : value] as const),
  );
  return Object.fromEntries(entries);
}

/**
 * The url with its password, if any, encrypted in place: the ciphertext is the password (percent-
 * encoded by the URL serializer), so the stored url keeps its shape, reads redact it as they redact
 * any password, and a PATCH that sends the redaction back keeps the stored (encrypted) one.
 */
export async function encryptUrlPassword(cipher: SecretCipher, value: string): Promise<string> {
  const url = URL.canParse(value) ? new URL(value) : null;
  if (!url || url.password === "") return value;
  url.password = await cipher.encrypt(url.password);
  return url.href;
}

/** The url as deliveries use it: its password decrypted (or as is when it predates encryption). */
export async function decryptUrlPassword(cipher: SecretCipher, value: string): Promise<string> {
  const url = URL.canParse(value) ? new URL(value) : null;
  if (!url || url.password === "") return value;
  const stored = decodeURIComponent(url.password);
  if (!isEncrypted(stored)) return value;
  url.password = await cipher.decrypt(stored);
  return url.href;
}

/** True when the url holds a password not encrypted under the current key (plaintext, or an older key). */
export function urlPasswordIsStale(value: string, isCurrent: (stored: string) => boolean): boolean {
  const url = URL.canParse(value) ? new URL(value) : null;
  return !!url && url.password !== "" && !isCurrent(decodeURIComponent(url.password));
}
