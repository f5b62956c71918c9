import { randomBytes } from "node:crypto";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { ConfigError, type Config } from "./core/config/index.ts";

/** A secret `npm start` made because none was set: where it lives, to tell the user. */
export interface GeneratedSecret {
  variable: "ADMIN_API_KEY" | "ENCRYPTION_KEY";
  file: string;
  /** Made by this start (false: read back from an earlier one). */
  created: boolean;
}

const FILES = { ADMIN_API_KEY: "admin-api-key", ENCRYPTION_KEY: "encryption-key" } as const;
const MAKE = {
  ADMIN_API_KEY: () => randomBytes(32).toString("hex"),
  ENCRYPTION_KEY: () => randomBytes(32).toString("base64"),
} as const;

/**
 * The admin key and the encryption key of a single-machine start. `all` (what `npm start` runs)
 * makes each one it is not given, once, into EVENTLY_DATA_DIR (mode 0600) and reads it back on later
 * starts, so a first run needs no setup and later runs keep the same keys. Every other role runs in
 * deployments, which must set them: a missing one stops startup naming it. The encryption key file
 * must be kept with the database it encrypts: without it, stored endpoint secrets cannot be read.
 */
export async function withLocalSecrets(role: string, config: Config): Promise<{ config: Config; generated: GeneratedSecret[] }> {
  const needed: GeneratedSecret["variable"][] = [];
  if ((role === "api" || role === "all") && !config.http.ADMIN_API_KEY) needed.push("ADMIN_API_KEY");
  if (["api", "worker", "all", "reencrypt"].includes(role) && !config.secrets.ENCRYPTION_KEY) needed.push("ENCRYPTION_KEY");
  if (config.http.METRICS_AUTH === "admin" && !config.http.ADMIN_API_KEY && role !== "all" && role !== "migrate") {
    needed.push("ADMIN_API_KEY");
  }
  if (needed.length === 0) return { config, generated: [] };
  if (role !== "all") {
    throw new ConfigError(
      [...new Set(needed)].map((v) =>
        v === "ADMIN_API_KEY" && role !== "api"
          ? `ADMIN_API_KEY: is required with METRICS_AUTH=admin (it guards /metrics)`
          : `${v}: is required by the ${role} role (see docs/deploy.md, "Secrets")`,
      ),
    );
  }
  const dir = resolve(config.database.EVENTLY_DATA_DIR);
  // Not 0700: as root the embedded Postgres runs as another user, who must pass through this directory.
  // The files themselves are 0600.
  await mkdir(dir, { recursive: true });
  const generated: GeneratedSecret[] = [];
  const values: Partial<Record<GeneratedSecret["variable"], string>> = {};
  for (const variable of needed) {
    const file = join(dir, FILES[variable]);
    let value = await readFile(file, "utf8").then((v) => v.trim(), () => "");
    const created = value === "";
    if (created) {
      value = MAKE[variable]();
      await writeFile(file, `${value}\n`, { mode: 0o600 });
      await chmod(file, 0o600);
    }
    values[variable] = value;
    generated.push({ variable, file, created });
  }
  const next: Config = {
    ...config,
    http: { ...config.http, ADMIN_API_KEY: values.ADMIN_API_KEY ?? config.http.ADMIN_API_KEY },
    secrets: { ...config.secrets, ENCRYPTION_KEY: values.ENCRYPTION_KEY ?? config.secrets.ENCRYPTION_KEY },
  };
  return { config: next, generated };
}
