import { z } from "zod";
import { configSchemas } from "./schema.ts";

/** The README's configuration table, rendered from the schemas so it cannot drift. */
export function renderConfigTable(): string {
  const rows = ["| variable | concern | default | description |", "|---|---|---|---|"];
  for (const [concern, schema] of Object.entries(configSchemas)) {
    const json = z.toJSONSchema(schema, { io: "input", unrepresentable: "any" }) as {
      properties: Record<string, { default?: unknown; description?: string }>;
    };
    for (const [name, prop] of Object.entries(json.properties)) {
      const fallback = prop.default === undefined ? "(unset)" : `\`${String(prop.default)}\``;
      rows.push(`| \`${name}\` | ${concern} | ${fallback} | ${prop.description ?? ""} |`);
    }
  }
  return rows.join("\n");
}

if (import.meta.main) console.log(renderConfigTable());
