import { createHash, timingSafeEqual } from "node:crypto";
import { ForbiddenError, UnauthorizedError } from "@evently/core/errors.ts";
import type { Access, AppScope } from "./operation.ts";

/**
 * Decides who a request is before its route reads anything (mount.ts calls it first, so an
 * unauthenticated caller cannot make the server buffer a body). Returns the application the request
 * acts on for `application` routes, null for `admin` ones; throws 401/403/404 otherwise.
 */
export type Authenticate = (request: Request, access: Exclude<Access, "public">) => Promise<AppScope | null>;

/** The bearer token of the request, or null when there is none. */
export function bearerToken(request: Request): string | null {
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(request.headers.get("authorization") ?? "");
  return match ? match[1]! : null;
}

// Both sides are hashed before comparing: timingSafeEqual needs equal lengths, and comparing
// digests leaks neither the key's content nor its length through timing.
const digest = (value: string) => createHash("sha256").update(value).digest();

/** Compares tokens against the admin key in constant time. */
export function adminKeyMatcher(adminKey: string): (token: string) => boolean {
  const expected = digest(adminKey);
  return (token) => timingSafeEqual(digest(token), expected);
}

export const missingKey = () => new UnauthorizedError("missing API key; send Authorization: Bearer <key>");

/**
 * For servers whose only guarded route is an admin one (a worker's /metrics with METRICS_AUTH=admin):
 * the admin key or nothing.
 */
export function adminOnly(adminKey: string): Authenticate {
  const isAdmin = adminKeyMatcher(adminKey);
  return async (request, access) => {
    const token = bearerToken(request);
    if (token === null) throw missingKey();
    if (!isAdmin(token)) throw new UnauthorizedError("unknown API key");
    if (access !== "admin") throw new ForbiddenError("this server serves no application routes");
    return null;
  };
}
