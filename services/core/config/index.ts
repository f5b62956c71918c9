import { z } from "zod";
import { configSchemas } from "./schema.ts";

export { configSchemas } from "./schema.ts";

export type Config = {
  [K in keyof typeof configSchemas]: z.output<(typeof configSchemas)[K]>;
};

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join("\n  ")}`);
  }
}

/** Parses every concern from `env`; throws one ConfigError naming each bad variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const problems: string[] = [];
  const out: Record<string, unknown> = {};
  for (const [concern, schema] of Object.entries(configSchemas)) {
    // Empty strings count as unset, as in most twelve-factor tools.
    const relevant = Object.fromEntries(
      variablesOf(schema).flatMap((k) => (env[k] === undefined || env[k] === "" ? [] : [[k, env[k]]])),
    );
    const result = schema.safeParse(relevant);
    if (result.success) out[concern] = result.data;
    else
      for (const issue of result.error.issues)
        problems.push(`${String(issue.path[0] ?? concern)}: ${issue.message}${shown(String(issue.path[0]), env[String(issue.path[0])])}`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return out as Config;
}

// Values of these are never repeated in an error: they end up in logs.
const SECRET_NAME = /KEY|SECRET|PASSWORD|TOKEN/;

/** ` (got "…")` for a bad value, or nothing for secrets; URLs lose their password. */
function shown(name: string, value: string | undefined): string {
  if (SECRET_NAME.test(name)) return "";
  let text = value ?? "";
  if (URL.canParse(text)) {
    const url = new URL(text);
    if (url.password) {
      url.password = "redacted";
      text = url.href;
    }
  }
  return ` (got ${JSON.stringify(text)})`;
}

/** The variables a concern reads: its object's keys, also when a transform wraps the object. */
export function variablesOf(schema: z.ZodType): string[] {
  const object = schema instanceof z.ZodPipe ? schema.in : schema;
  return Object.keys((object as z.ZodObject).shape);
}
