/**
 * The one definition of "sensitive" outside an endpoint's signing secret: credentials a user puts
 * in a URL's userinfo or in custom headers. They are stored and sent as given, but every read
 * (endpoint responses, the attempt log) shows them through these functions.
 */

/** What a hidden value reads as; sent back in a PATCH, it means "keep the stored value". */
export const REDACTED = "[redacted]";

// Header names whose values may carry credentials. The source is also used in SQL (Postgres `~*`,
// secrets/sql.ts), so it stays within what both regex dialects read alike.
export const SENSITIVE_HEADER_SOURCE = "authorization|cookie|token|secret|api[-_]?key|password|signature";
const SENSITIVE_HEADER = new RegExp(SENSITIVE_HEADER_SOURCE, "i");

export function isSensitiveHeader(name: string): boolean {
  return SENSITIVE_HEADER.test(name);
}

/** The headers with every credential-like value replaced by REDACTED. */
export function redactHeaders(headers: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) out[name] = isSensitiveHeader(name) ? REDACTED : value;
  return out;
}

// For a string the URL parser refuses: scheme://user:password@ → scheme://user:[redacted]@.
const RAW_USERINFO_PASSWORD = /^([a-z][a-z0-9+.-]*:\/\/[^/?#@:]*:)[^/?#]*@/i;

/**
 * The URL with its password, if any, replaced by REDACTED (`https://user:[redacted]@host/…`);
 * a URL without one is returned unchanged. The username stays, as it says which account is used.
 */
export function redactUrl(value: string): string {
  if (!URL.canParse(value)) return value.replace(RAW_USERINFO_PASSWORD, `$1${REDACTED}@`);
  const url = new URL(value);
  if (url.password === "") return value;
  // The URL setter would percent-encode the brackets, so the marker is spliced into the serialization.
  url.password = "x";
  const prefix = `${url.protocol}//${url.username}:`;
  return `${prefix}${REDACTED}${url.href.slice(prefix.length + 1)}`;
}

/** Free text (an error message, say) with every URL in it passed through redactUrl. */
export function redactUrlsIn(text: string): string {
  return text.replace(/[a-z][a-z0-9+.-]*:\/\/[^\s"'<>]+/gi, (url) => redactUrl(url));
}

/** True when the URL's password is the marker, as in a URL read back from the API. */
export function hasRedactedPassword(value: string): boolean {
  if (!URL.canParse(value)) return false;
  try {
    return decodeURIComponent(new URL(value).password) === REDACTED;
  } catch {
    return false; // a malformed %-escape: not the marker
  }
}
