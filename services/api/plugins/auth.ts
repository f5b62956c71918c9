import { createHash, timingSafeEqual } from "node:crypto";
import { Elysia } from "elysia";
import { AppError } from "@evently/core/errors.ts";

export class UnauthorizedError extends AppError {
  constructor() {
    super(401, "unauthorized", "missing or wrong API key; send Authorization: Bearer <API_KEY>");
  }
}

// Both sides are hashed before comparing: timingSafeEqual needs equal lengths, and comparing
// digests leaks neither the key's content nor its length through timing.
const digest = (value: string) => createHash("sha256").update(value).digest();

/**
 * With an API key configured, every request outside `publicPaths` needs `Authorization: Bearer
 * <key>`. Checked when the request arrives, before routing or reading the body, so an unauthenticated
 * caller cannot make the server buffer a large body.
 */
export function authPlugin(apiKey: string | undefined, publicPaths: ReadonlySet<string>) {
  const app = new Elysia({ name: "evently.auth" });
  if (!apiKey) return app;
  const expected = digest(apiKey);
  return app.onRequest(({ request, set }) => {
    if (publicPaths.has(normalisedPath(request.url))) return;
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(request.headers.get("authorization") ?? "");
    if (match && timingSafeEqual(digest(match[1]!), expected)) return;
    set.headers["www-authenticate"] = 'Bearer realm="evently"';
    throw new UnauthorizedError();
  });
}

/** The path as routing sees it: no query, no trailing slash (Elysia matches `/health/` as `/health`). */
function normalisedPath(url: string): string {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  const end = url.indexOf("?", start);
  const path = start === -1 ? "/" : url.slice(start, end === -1 ? undefined : end);
  return path.length > 1 && path.endsWith("/") ? path.slice(0, -1) : path;
}
