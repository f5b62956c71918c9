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
      Object.keys(schema.shape).flatMap((k) => (env[k] === undefined || env[k] === "" ? [] : [[k, env[k]]])),
    );
    const result = schema.safeParse(relevant);
    if (result.success) out[concern] = result.data;
    else
      for (const issue of result.error.issues)
        problems.push(`${String(issue.path[0] ?? concern)}: ${issue.message} (got ${JSON.stringify(env[String(issue.path[0])] ?? "")})`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return out as Config;
}

/** Parses a RETRY_SCHEDULE value (validated by the schema) into milliseconds. */
export function parseDurations(spec: string): number[] {
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  return spec.split(",").map((part) => {
    const m = /^(\d+)(ms|s|m|h)$/.exec(part)!;
    return Number(m[1]) * unit[m[2]!]!;
  });
}
