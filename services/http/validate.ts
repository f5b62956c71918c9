import type { z } from "zod";
import { ValidationError, type FieldProblem } from "@evently/core/errors.ts";

/**
 * Parses `value` with `schema`, or throws one ValidationError (422) listing every problem with its
 * dotted field path (`events.3.type`). `where` names the whole value when a problem has no path
 * (a body that is `[]` instead of an object).
 */
export function parseInput<S extends z.ZodType>(schema: S, value: unknown, where: "body" | "query"): z.output<S> {
  const result = schema.safeParse(value, {
    // "required" reads better than zod's "expected string, received undefined" for a missing field.
    error: (issue) => (issue.code === "invalid_type" && issue.input === undefined ? "required" : undefined),
  });
  if (result.success) return result.data;
  throw new ValidationError(
    result.error.issues.flatMap((issue): FieldProblem[] =>
      // One problem per unknown key, named by it: zod reports them together, on the object holding them.
      issue.code === "unrecognized_keys"
        ? issue.keys.map((key) => ({
            field: fieldName([...issue.path, key], where),
            message: where === "query" ? "unknown query parameter" : "unknown field",
          }))
        : [{ field: fieldName(issue.path, where), message: issue.message }],
    ),
  );
}

export function fieldName(path: readonly PropertyKey[], where: string): string {
  return path.length === 0 ? where : path.map(String).join(".");
}

/** Throws a ValidationError for one field; for checks that need more than the schema knows. */
export function invalid(field: string, message: string): never {
  throw new ValidationError([{ field, message } satisfies FieldProblem]);
}
