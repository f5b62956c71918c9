import { describe, expect, test } from "bun:test";
import { ConfigError, loadConfig, parseDurations } from "../../core/config/index.ts";
import { renderConfigTable } from "../../core/config/table.ts";

describe("config", () => {
  test("defaults work on a machine with local Postgres and RabbitMQ", () => {
    const config = loadConfig({});
    expect(config.database.DATABASE_URL).toBe("postgres://postgres@127.0.0.1:5432/evently");
    expect(config.amqp.AMQP_URL).toBe("amqp://guest:guest@127.0.0.1:5672");
    expect(config.http.PORT).toBe(8080);
    expect(config.http.MAX_PAYLOAD_BYTES).toBe(256 * 1024);
    expect(config.amqp.AMQP_QUEUE_TYPE).toBe("quorum");
    expect(config.delivery.DELIVERY_ALLOW_PRIVATE_NETWORKS).toBe(false);
  });

  test("a bad value stops startup with a message naming each bad variable", () => {
    let error: unknown;
    try {
      loadConfig({ PORT: "eighty", AMQP_QUEUE_TYPE: "stream", DATABASE_URL: "mysql://x", RETRY_SCHEDULE: "5 seconds" });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as Error).message;
    for (const name of ["PORT", "AMQP_QUEUE_TYPE", "DATABASE_URL", "RETRY_SCHEDULE"]) expect(message).toContain(name);
    expect((error as ConfigError).problems).toHaveLength(4);
  });

  test("the entry point exits non-zero and names the variable", () => {
    const run = Bun.spawnSync([process.execPath, "services/main.ts", "api"], {
      env: { ...process.env, PORT: "99999" },
      stderr: "pipe",
    });
    expect(run.exitCode).toBe(78);
    expect(run.stderr.toString()).toContain("PORT");
  });

  test("retry schedules parse into milliseconds", () => {
    expect(parseDurations("250ms,5s,5m,2h")).toEqual([250, 5000, 300_000, 7_200_000]);
  });

  test("the README's configuration table is the one the schemas render", async () => {
    const readme = await Bun.file(new URL("../../../README.md", import.meta.url)).text();
    const start = readme.indexOf("<!-- config-table:start -->");
    const end = readme.indexOf("<!-- config-table:end -->");
    expect(start).toBeGreaterThan(-1);
    expect(readme.slice(start + "<!-- config-table:start -->".length, end).trim()).toBe(renderConfigTable());
  });
});
