import { createHash, randomBytes } from "node:crypto";

/** Every application key starts with this, so it is recognisable (and findable by secret scanners). */
export const API_KEY_PREFIX = "evk_";
/** 32 random bytes: 256 bits, far beyond guessing. */
const KEY_BYTES = 32;
/** Characters of the key shown in lists: the prefix and 8 more, enough to tell keys apart. */
const SHOWN_CHARS = API_KEY_PREFIX.length + 8;

export interface NewApiKey {
  /** The key itself: shown once, never stored. */
  key: string;
  prefix: string;
  hash: string;
}

export function generateApiKey(): NewApiKey {
  const key = API_KEY_PREFIX + randomBytes(KEY_BYTES).toString("base64url");
  return { key, prefix: key.slice(0, SHOWN_CHARS), hash: hashApiKey(key) };
}

// base64url of KEY_BYTES, unpadded: 43 characters.
const KEY_SHAPE = new RegExp(`^${API_KEY_PREFIX}[A-Za-z0-9_-]{${Math.ceil((KEY_BYTES * 4) / 3)}}$`);

/** True when `token` could be a key we issued; anything else is refused without a lookup. */
export function looksLikeApiKey(token: string): boolean {
  return KEY_SHAPE.test(token);
}

/** SHA-256, hex: what is stored and looked up. */
export function hashApiKey(key: string): string {
  return createHash("sha256").update(key).digest("hex");
}
