import { ConfigError, loadConfig } from "./core/config/index.ts";
import { exitOnStartupError, openDatabase } from "./core/db/embedded.ts";
import { migrate } from "./core/db/migrate.ts";
import { startupBanner } from "./banner.ts";
import { withLocalSecrets } from "./local-secrets.ts";
import { runReencrypt } from "./core/secrets/reencrypt.ts";
import { createLogger } from "./core/log.ts";
import { startTelemetry } from "./core/telemetry/setup.ts";
import { endProcessOnSignalOrUnhandledError } from "./process-end.ts";
import { ROLES, startRoles, type Role } from "./runtime.ts";

/**
 * What the entry point runs (`bun services/main.ts <role>`, or EVENTLY_ROLE), role one of
 * api | worker | dispatcher | migrate | reencrypt | all. `all` migrates first (and re-encrypts
 * what an older key or no key wrote), then runs every role. `reencrypt` is a one-shot command run
 * after a key rotation, once every process runs with the new key.
 */
const role = process.argv[2] ?? process.env.EVENTLY_ROLE ?? "all";
const COMMANDS = ["migrate", "reencrypt"];
if (!COMMANDS.includes(role) && !(ROLES as readonly string[]).includes(role)) {
  console.error(`unknown role "${role}": expected one of ${[...COMMANDS, ...ROLES].join(", ")}`);
  process.exit(2);
}

let config;
let generated;
try {
  // `all` makes the admin and encryption keys it is not given (local-secrets.ts); other roles need them.
  ({ config, generated } = await withLocalSecrets(role, loadConfig()));
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

// One process alone (`all`) can re-encrypt at start: no older process is left reading old values.
if (role === "reencrypt" || role === "all") {
  const result = await runReencrypt(config, log);
  if (role === "reencrypt") await database.stop().then(() => process.exit(result.remaining > 0 ? 75 : 0));
}

const telemetry = startTelemetry(config.telemetry, role, log);
const running = await startRoles(config, role as Role, { log, telemetry, ownProcess: true });
if (role === "all") console.log(startupBanner(config, database, running.port, generated));

endProcessOnSignalOrUnhandledError(log, () =>
  running
    .stop()
    .then(() => telemetry.shutdown())
    .then(() => database.stop()),
);
