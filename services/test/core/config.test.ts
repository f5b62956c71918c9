import { TEST_ADMIN_KEY, TEST_ENCRYPTION_KEY, TEST_SECRETS_ENV } from "../support/keys.ts";
import { describe, expect, test } from "bun:test";
import { ConfigError, loadConfig } from "../../core/config/index.ts";
import { renderConfigTable } from "../../core/config/table.ts";

describe("config", () => {
  test("defaults need nothing installed: an embedded Postgres and the Postgres transport", () => {
    const config = loadConfig({});
    // Unset means an embedded Postgres for `all` and `migrate` (services/core/db/embedded.ts).
    expect(config.database.DATABASE_URL).toBeUndefined();
    expect(config.database.EVENTLY_DATA_DIR).toBe(".evently");
    expect(config.database.EMBEDDED_POSTGRES_PORT).toBe(5433);
    expect(config.queue.AMQP_URL).toBeUndefined();
    expect(config.queue.QUEUE_TRANSPORT).toBe("postgres");
    expect(config.http.PORT).toBe(8080);
    expect(config.http.MAX_PAYLOAD_BYTES).toBe(256 * 1024);
    expect(config.queue.AMQP_QUEUE_TYPE).toBe("quorum");
    expect(config.delivery.DELIVERY_ALLOW_PRIVATE_NETWORKS).toBe(false);
  });

  test("the queue transport follows AMQP_URL unless chosen, and RabbitMQ needs a URL", () => {
    expect(loadConfig({ AMQP_URL: "amqp://guest:guest@127.0.0.1:5672" }).queue.QUEUE_TRANSPORT).toBe("rabbitmq");
    expect(loadConfig({ AMQP_URL: "amqp://guest:guest@127.0.0.1:5672", QUEUE_TRANSPORT: "postgres" }).queue.QUEUE_TRANSPORT).toBe("postgres");
    expect(() => loadConfig({ QUEUE_TRANSPORT: "rabbitmq" })).toThrow(/AMQP_URL: is required when QUEUE_TRANSPORT=rabbitmq/);
    expect(() => loadConfig({ QUEUE_TRANSPORT: "kafka" })).toThrow(/QUEUE_TRANSPORT/);
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

  test("roles run apart need DATABASE_URL: only `all` and `migrate` start an embedded Postgres", () => {
    const { DATABASE_URL: _, ...rest } = process.env;
    const env = { ...rest, ...TEST_SECRETS_ENV };
    for (const role of ["api", "worker", "dispatcher"]) {
      const run = Bun.spawnSync([process.execPath, "services/main.ts", role], { env, stderr: "pipe", timeout: 20_000 });
      expect(run.exitCode).toBe(78);
      expect(run.stderr.toString()).toContain(`DATABASE_URL: required for the ${role} role`);
    }
  });

  test("deployed roles need their keys; the old API_KEY names its replacement; no secret is echoed", () => {
    const run = (role: string, extra: Record<string, string>) => {
      const { ADMIN_API_KEY: _a, ENCRYPTION_KEY: _e, API_KEY: _k, ...env } = process.env;
      const done = Bun.spawnSync([process.execPath, "services/main.ts", role], {
        env: { ...env, DATABASE_URL: "postgres://127.0.0.1:1/x", ...extra },
        stderr: "pipe",
        timeout: 20_000,
      });
      return { code: done.exitCode, stderr: done.stderr.toString() };
    };
    const api = run("api", {});
    expect(api.code).toBe(78);
    expect(api.stderr).toContain("ADMIN_API_KEY: is required by the api role");
    expect(api.stderr).toContain("ENCRYPTION_KEY: is required by the api role");
    expect(run("worker", { ADMIN_API_KEY: TEST_ADMIN_KEY }).stderr).toContain("ENCRYPTION_KEY: is required by the worker role");
    expect(run("worker", { ENCRYPTION_KEY: TEST_ENCRYPTION_KEY, METRICS_AUTH: "admin" }).stderr).toContain(
      "ADMIN_API_KEY: is required with METRICS_AUTH=admin",
    );
    const renamed = run("api", { ...TEST_SECRETS_ENV, API_KEY: "an-old-key-of-twenty-chars" });
    expect(renamed.stderr).toContain("API_KEY: was renamed to ADMIN_API_KEY");
    expect(renamed.stderr).not.toContain("an-old-key-of-twenty-chars");
    const appShaped = run("api", { ...TEST_SECRETS_ENV, ADMIN_API_KEY: `evk_${"a".repeat(43)}` });
    expect(appShaped.stderr).toContain("ADMIN_API_KEY: must not start with evk_");
    const short = run("api", { ...TEST_SECRETS_ENV, ADMIN_API_KEY: "short-secret-value" });
    expect(short.stderr).toContain("ADMIN_API_KEY: must be at least 32 characters");
    expect(short.stderr).not.toContain("short-secret-value");
  });

  test("retry schedules parse into milliseconds", () => {
    expect(loadConfig({ RETRY_SCHEDULE: "250ms,5s,5m,2h" }).delivery.RETRY_SCHEDULE).toEqual([250, 5000, 300_000, 7_200_000]);
    expect(loadConfig({}).delivery.RETRY_SCHEDULE).toEqual([5000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000]);
  });

  test("retry policy variables parse, and a bad one stops startup naming it", () => {
    const d = loadConfig({
      RETRY_POLICY: '{"type":"exponential","baseMs":500,"capMs":60000,"maxAttempts":8}',
      RETRY_FINAL_STATUSES: "400,401,404",
      RETRY_AFTER_MIN_MS: "0",
    }).delivery;
    expect(d.RETRY_POLICY).toEqual({ type: "exponential", baseMs: 500, factor: 2, capMs: 60_000, maxAttempts: 8 });
    expect([...d.RETRY_FINAL_STATUSES]).toEqual([400, 401, 404]);
    expect(d.RETRY_AFTER_MIN_MS).toBe(0);
    const defaults = loadConfig({}).delivery;
    expect(defaults.RETRY_POLICY).toBeNull();
    expect(defaults.RETRY_FINAL_STATUSES.size).toBe(0);
    expect(loadConfig({ RETRY_POLICY: " " }).delivery.RETRY_POLICY).toBeNull();

    const problem = (env: Record<string, string>) => {
      try {
        loadConfig(env);
      } catch (err) {
        return (err as Error).message;
      }
      throw new Error(`accepted ${JSON.stringify(env)}`);
    };
    expect(problem({ RETRY_POLICY: "{not json" })).toMatch(/RETRY_POLICY: is not JSON/);
    expect(problem({ RETRY_POLICY: '{"type":"constant","delayMs":1000}' })).toMatch(/RETRY_POLICY: .*needs maxAttempts or maxAgeSeconds/);
    expect(problem({ RETRY_POLICY: '{"type":"fibonacci"}' })).toContain("RETRY_POLICY");
    expect(problem({ RETRY_POLICY: '{"type":"schedule","delaysMs":[1000],"extra":1}' })).toContain("RETRY_POLICY");
    for (const bad of ["500", "4xx", "400;401", "400,"]) expect(problem({ RETRY_FINAL_STATUSES: bad })).toContain("RETRY_FINAL_STATUSES");
    for (const bad of ["-1", "soon", "3600001"]) expect(problem({ RETRY_AFTER_MIN_MS: bad })).toContain("RETRY_AFTER_MIN_MS");
  });

  test("dispatch bounds: retries per second and bulk replay pace", () => {
    const defaults = loadConfig({}).dispatch;
    expect(defaults.DISPATCH_MAX_RETRIES_PER_SECOND).toBe(2000);
    expect(defaults.OPERATION_BATCH_SIZE).toBe(500);
    expect(defaults.OPERATION_RATE_PER_SECOND).toBe(1000);
    expect(loadConfig({ DISPATCH_MAX_RETRIES_PER_SECOND: "50" }).dispatch.DISPATCH_MAX_RETRIES_PER_SECOND).toBe(50);
    for (const name of ["DISPATCH_MAX_RETRIES_PER_SECOND", "OPERATION_BATCH_SIZE", "OPERATION_RATE_PER_SECOND"])
      expect(() => loadConfig({ [name]: "0" })).toThrow(name);
  });

  test("OTEL_EXPORTER_OTLP_PROTOCOL: http/protobuf by default, http/json on request, nothing else", () => {
    expect(loadConfig({}).telemetry.OTEL_EXPORTER_OTLP_PROTOCOL).toBe("http/protobuf");
    expect(loadConfig({ OTEL_EXPORTER_OTLP_PROTOCOL: "http/json" }).telemetry.OTEL_EXPORTER_OTLP_PROTOCOL).toBe("http/json");
    expect(() => loadConfig({ OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" })).toThrow(/OTEL_EXPORTER_OTLP_PROTOCOL/);
  });

  test("the README's configuration table is the one the schemas render", async () => {
    const readme = await Bun.file(new URL("../../../README.md", import.meta.url)).text();
    const start = readme.indexOf("<!-- config-table:start -->");
    const end = readme.indexOf("<!-- config-table:end -->");
    expect(start).toBeGreaterThan(-1);
    expect(readme.slice(start + "<!-- config-table:start -->".length, end).trim()).toBe(renderConfigTable());
  });
});
