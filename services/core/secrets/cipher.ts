import { createHash } from "node:crypto";
import type { Config } from "../config/index.ts";

/**
 * Encryption at rest for endpoint secrets and credentials (AES-256-GCM through WebCrypto), as Svix
 * does. A stored value describes itself, so the text columns that held plaintext can hold it:
 *
 *   evenc:v1:<key id>:<base64url IV>:<base64url ciphertext and tag>
 *
 * The key id is derived from the key (no one picks or mistypes it) and is bound as additional
 * authenticated data, with the version, so a value cannot be passed off as another key's or
 * format's. Any configured key decrypts; only the current one encrypts, which is what lets a key be
 * rotated: new key in ENCRYPTION_KEY, old one in ENCRYPTION_PREVIOUS_KEYS, then `reencrypt`.
 * Errors never carry a plaintext or a key.
 */

const KEY_BYTES = 32;
const IV_BYTES = 12; // 96 bits: the size GCM is specified for; random per value
const TAG_BYTES = 16;
const SCHEME = "evenc";
const VERSION = "v1";
const KEY_ID = /^[0-9a-f]{8}$/;
// One alphabet or the other, not a mix; `=` padding optional.
const BASE64 = /^(?:[A-Za-z0-9+/]+|[A-Za-z0-9_-]+)={0,2}$/;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** A value that cannot be decrypted: malformed, under a key not configured, or altered. */
export class SecretCipherError extends Error {
  override name = "SecretCipherError";
}

/** Why `text` is not a key (base64 or base64url of exactly 32 bytes), or null when it is one. */
export function keyProblem(text: string): string | null {
  const value = text.trim();
  // Buffer's decoder skips characters outside the alphabet, so the alphabet is checked first.
  if (!BASE64.test(value) || value.length % 4 === 1 || (value.includes("=") && value.length % 4 !== 0))
    return "is not base64 or base64url";
  const bytes = Buffer.from(value, "base64").length;
  if (bytes !== KEY_BYTES)
    return `decodes to ${bytes} bytes; a key is exactly ${KEY_BYTES} (generate one with \`openssl rand -base64 32\`)`;
  return null;
}

export function decodeKey(text: string, variable: string): Uint8Array {
  const problem = keyProblem(text);
  if (problem) throw new SecretCipherError(`${variable}: ${problem}`);
  return new Uint8Array(Buffer.from(text.trim(), "base64"));
}

/** The id a key's values are stored under: the first 8 hex digits of the key's SHA-256. */
export function keyIdOf(key: Uint8Array): string {
  return createHash("sha256").update(key).digest("hex").slice(0, 8);
}

/** What every value stored under `keyId` starts with (also what SQL matches on in sql.ts). */
export function encryptedPrefix(keyId: string): string {
  return `${SCHEME}:${VERSION}:${keyId}:`;
}

/**
 * True for a value in the encrypted form, false for plaintext stored before encryption arrived.
 * Only the scheme is checked: a malformed encrypted value must reach decrypt and fail there, not
 * pass for plaintext. (Generated secrets start `whsec_`, so none reads as encrypted.)
 */
export function isEncrypted(value: string): boolean {
  return value.startsWith(`${SCHEME}:`);
}

interface Key {
  id: string;
  prefix: string;
  aad: Uint8Array<ArrayBuffer>;
  raw: Uint8Array<ArrayBuffer>;
  imported?: Promise<CryptoKey>;
}

export class SecretCipher {
  /** The id of the key new values are encrypted under. */
  readonly keyId: string;
  private readonly current: Key;
  private readonly keys = new Map<string, Key>();

  /** `current` encrypts and decrypts; each of `previous` only decrypts. Raw 32-byte keys. */
  constructor(current: Uint8Array, previous: readonly Uint8Array[] = []) {
    for (const given of [current, ...previous]) {
      const raw = new Uint8Array(given); // a copy: the caller's buffer may be reused or wiped
      if (raw.length !== KEY_BYTES) throw new SecretCipherError(`a key is exactly ${KEY_BYTES} bytes, not ${raw.length}`);
      const id = keyIdOf(raw);
      const known = this.keys.get(id);
      if (known && Buffer.compare(known.raw, raw) !== 0)
        throw new SecretCipherError(`two different keys share the key id ${id}; replace one of them`);
      // A key listed twice (say the current one left in the previous list) is harmless: kept once.
      if (!known) this.keys.set(id, { id, prefix: encryptedPrefix(id), aad: encoder.encode(`${SCHEME}:${VERSION}:${id}`), raw });
    }
    this.keyId = keyIdOf(current);
    this.current = this.keys.get(this.keyId)!;
  }

  /** The cipher for a process's configuration; without ENCRYPTION_KEY there is none to make. */
  static fromConfig(config: Config["secrets"]): SecretCipher {
    if (!config.ENCRYPTION_KEY)
      throw new SecretCipherError(
        "ENCRYPTION_KEY is not set: endpoint secrets are encrypted at rest under it (generate one with `openssl rand -base64 32`)",
      );
    return new SecretCipher(
      decodeKey(config.ENCRYPTION_KEY, "ENCRYPTION_KEY"),
      config.ENCRYPTION_PREVIOUS_KEYS.map((key) => decodeKey(key, "ENCRYPTION_PREVIOUS_KEYS")),
    );
  }

  /** Ids of every key this cipher can decrypt with, the current one first. */
  get keyIds(): string[] {
    return [...this.keys.keys()];
  }

  async encrypt(plaintext: string): Promise<string> {
    const iv = crypto.getRandomValues(new Uint8Array(IV_BYTES));
    const sealed = await crypto.subtle.encrypt(
      { name: "AES-GCM", iv, additionalData: this.current.aad, tagLength: TAG_BYTES * 8 },
      await this.cryptoKey(this.current),
      encoder.encode(plaintext),
    );
    return `${this.current.prefix}${Buffer.from(iv).toString("base64url")}:${Buffer.from(sealed).toString("base64url")}`;
  }

  async decrypt(stored: string): Promise<string> {
    const parts = stored.split(":");
    if (parts.length !== 5 || parts[0] !== SCHEME)
      throw new SecretCipherError(`not an encrypted value (expected ${SCHEME}:${VERSION}:<key id>:<iv>:<ciphertext>)`);
    const [, version, keyId, ivText, sealedText] = parts as [string, string, string, string, string];
    if (version !== VERSION) throw new SecretCipherError(`unsupported encrypted value version (this build reads ${VERSION})`);
    if (!KEY_ID.test(keyId)) throw new SecretCipherError("malformed encrypted value: bad key id");
    const key = this.keys.get(keyId);
    if (!key)
      throw new SecretCipherError(
        `value encrypted under key id ${keyId}, which is neither ENCRYPTION_KEY (${this.keyId}) nor in ENCRYPTION_PREVIOUS_KEYS`,
      );
    const iv = new Uint8Array(Buffer.from(ivText, "base64url"));
    const sealed = new Uint8Array(Buffer.from(sealedText, "base64url"));
    if (iv.length !== IV_BYTES || sealed.length < TAG_BYTES)
      throw new SecretCipherError(`malformed encrypted value under key id ${keyId}: truncated`);
    let plain: ArrayBuffer;
    try {
      plain = await crypto.subtle.decrypt(
        { name: "AES-GCM", iv, additionalData: key.aad, tagLength: TAG_BYTES * 8 },
        await this.cryptoKey(key),
        sealed,
      );
    } catch {
      // GCM says only "does not authenticate"; which byte changed is neither known nor worth knowing.
      throw new SecretCipherError(`encrypted value under key id ${keyId} failed authentication: it was altered or corrupted`);
    }
    return decoder.decode(plain);
  }

  /** True when `stored` is already encrypted under the current key: nothing to rewrite. */
  isCurrent(stored: string): boolean {
    return stored.startsWith(this.current.prefix);
  }

  // Imported once per key, on first use, and not extractable: the raw bytes stay in this object only.
  private cryptoKey(key: Key): Promise<CryptoKey> {
    key.imported ??= crypto.subtle.importKey("raw", key.raw, "AES-GCM", false, ["encrypt", "decrypt"]);
    return key.imported;
  }
}
