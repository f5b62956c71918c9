import { ConfigError, loadConfig } from "./core/config/index.ts";
import { exitOnStartupError, openDatabase } from "./core/db/embedded.ts";
import { migrate } from "./core/db/migrate.ts";
import { startupBanner } from "./banner.ts";
import { createLogger } from "./core/log.ts";
import { startTelemetry } from "./core/telemetry/setup.ts";
import { ROLES, startRoles, type Role } from "./runtime.ts";

/**
 * The one entry point: `bun services/main.ts <role>` (or EVENTLY_ROLE), role one of
 * api | worker | dispatcher | migrate | all. `all` migrates first, then runs every role.
 */
const role = process.argv[2] ?? process.env.EVENTLY_ROLE ?? "all";
if (role !== "migrate" && !(ROLES as readonly string[]).includes(role)) {
  console.error(`unknown role "${role}": expected one of migrate, ${ROLES.join(", ")}`);
  process.exit(2);
}

let config;
try {
  config = loadConfig();
} catch (err) {
  if (err instanceof ConfigError) {
    console.error(err.message);
    process.exit(78); // EX_CONFIG
  }
  throw err;
}

const log = createLogger(config.telemetry.LOG_LEVEL, { role });

// DATABASE_URL, or with it unset an embedded Postgres (`all` and `migrate` only).
const database = await openDatabase(role, config.database, log).catch(exitOnStartupError);
config = { ...config, database: { ...config.database, DATABASE_URL: database.url } };

if (role === "migrate" || role === "all") {
  const result = await migrate(database.url, (line) => log.info(line));
  log.info("schema is current", { version: result.current, applied: result.applied.length });
  if (role === "migrate") await database.stop().then(() => process.exit(0));
}

const telemetry = startTelemetry(config.telemetry, role);
const running = await startRoles(config, role as Role, { log, telemetry });
if (role === "all") console.log(startupBanner(config, database, running.port));

for (const signal of ["SIGINT", "SIGTERM"] as const)
  process.on(signal, () => {
    log.info("shutting down", { signal });
    void running
      .stop()
      .then(() => telemetry.shutdown())
      .then(() => database.stop())
      .then(() => process.exit(0));
  });
