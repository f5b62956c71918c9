import { z } from "zod";
import { ValidationError } from "@evently/core/errors.ts";

/**
 * Query strings are read here, not taken from Elysia's parsed `query`, and are strict on every route:
 * - a parameter the route does not declare is a 422 naming it (`unknown query parameter`), so a
 *   misspelt filter (`?type=` for `?eventType=`) cannot silently widen a list, and a route that
 *   takes no parameters accepts none;
 * - a parameter given twice is a 422 too, rather than one of its values silently winning.
 * Bodies are strict as well, by their schemas (see api/common/model.ts).
 */

const NO_PARAMETERS = z.object({}).strict();

/** The schema a route's query string is validated with: its own, made strict, or one that takes nothing. */
export function strictQuery(schema: z.ZodObject | undefined): z.ZodObject {
  return schema ? schema.strict() : NO_PARAMETERS;
}

/** The query string as one value per name. */
export function readQuery(request: Request): Record<string, string> {
  if (!request.url.includes("?")) return {};
  const entries: [string, string][] = [];
  const seen = new Set<string>();
  const repeated = new Set<string>();
  for (const [name, value] of new URL(request.url).searchParams) {
    if (seen.has(name)) repeated.add(name);
    seen.add(name);
    entries.push([name, value]);
  }
  if (repeated.size > 0) {
    throw new ValidationError([...repeated].map((field) => ({ field, message: "query parameter given more than once" })));
  }
  // fromEntries defines own properties, so a `__proto__` parameter is a plain (unknown) name.
  return Object.fromEntries(entries);
}
