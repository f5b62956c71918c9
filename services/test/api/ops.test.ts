import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import amqp from "amqplib";
import { createApp } from "../../api/app.ts";
import { Ingest } from "../../core/ingest/index.ts";
import { createOpsApp } from "../../http/server.ts";
import { DEFAULT_APPLICATION_ID } from "../../core/applications/sql.ts";
import { TEST_SECRETS_ENV } from "../support/keys.ts";
import { loadConfig } from "../../core/config/index.ts";
import { createSql, type Sql } from "../../core/db/client.ts";
import { createLogger, type Logger } from "../../core/log.ts";
import { startTelemetry, type Telemetry } from "../../core/telemetry/setup.ts";
import { hookUrl, noHandoff, postgresReadiness, send, startApi, type TestApi } from "./harness.ts";
import { TEST_AMQP_URL } from "../support/stack.ts";


/** Real checks: Postgres answers a query, RabbitMQ accepts an AMQP connection. */
async function realReadiness(sql: Sql): Promise<Record<string, boolean>> {
  const rabbitmq = await amqp
    .connect(TEST_AMQP_URL)
    .then(async (connection) => {
      await connection.close();
      return true;
    })
    .catch(() => false);
  return { ...(await postgresReadiness(sql)), rabbitmq };
}

let api: TestApi;
let telemetry: Telemetry;
beforeAll(async () => {
  // Without an OTLP endpoint, NodeSDK still defaults to exporting spans to localhost:4318 and its
  // shutdown then waits seconds to flush them; "none" is what startTelemetry means in that case.
  process.env.OTEL_TRACES_EXPORTER ??= "none";
  telemetry = startTelemetry(loadConfig({}).telemetry, "api-test");
  api = await startApi({ readiness: realReadiness, renderMetrics: () => telemetry.renderMetrics() });
});
afterAll(async () => {
  await api.close();
  await telemetry.shutdown();
});

describe("health and readiness", () => {
  test("GET /health is 200 ok", async () => {
    const res = await api.request("GET", "/health");
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: "ok" });
  });

  test("GET /ready reports real checks", async () => {
    const res = await api.request("GET", "/ready");
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: "ok", checks: { postgres: true, rabbitmq: true } });
  });

  test("GET /ready is 503 when a check fails or throws", async () => {
    const down = createOpsApp({ readiness: async () => ({ postgres: true, rabbitmq: false }) });
    const res = await send(down, "GET", "/ready");
    expect(res.status).toBe(503);
    expect(res.body).toEqual({ status: "unavailable", checks: { postgres: true, rabbitmq: false } });

    const broken = createOpsApp({ readiness: async () => Promise.reject(new Error("boom")) });
    const thrown = await send(broken, "GET", "/ready");
    expect(thrown.status).toBe(503);
    expect(thrown.body.status).toBe("unavailable");
  });

  test("the ops app serves only health, readiness and metrics", async () => {
    const ops = createOpsApp({ readiness: async () => ({ postgres: true }), renderMetrics: async () => "x 1\n" });
    expect((await send(ops, "GET", "/health")).status).toBe(200);
    const metrics = await send(ops, "GET", "/metrics");
    expect(metrics.text).toBe("x 1\n");
    expect((await send(ops, "GET", "/endpoints")).status).toBe(404);
    expect(ops.routes.map((r) => `${r.method} ${r.path}`).sort()).toEqual(["GET /health", "GET /metrics", "GET /ready"]);
  });
});

describe("metrics", () => {
  test("requests are counted by route template, never by raw path", async () => {
    const id = (await api.request("POST", "/endpoints", { body: { url: hookUrl() } })).body.id;
    await api.request("GET", `/endpoints/${id}`);
    await api.request("GET", "/endpoints/ep_00000000000000000000000000000000");
    await api.request("GET", "/no/such/path/123");
    await Bun.sleep(10); // onAfterResponse runs after the response is handed back
    const res = await api.request("GET", "/metrics");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toStartWith("text/plain; version=0.0.4");
    const lines = res.text.split("\n").filter((l) => l.startsWith("evently_http_requests_total{"));
    const line = (route: string, status: number) =>
      lines.find((l) => l.includes(`route="${route}"`) && l.includes(`status="${status}"`) && l.includes('method="GET"'));
    expect(line("/endpoints/:id", 200)).toBeDefined();
    expect(line("/endpoints/:id", 404)).toBeDefined();
    expect(line("unmatched", 404)).toBeDefined();
    expect(res.text).not.toContain(id);
    expect(res.text).not.toContain("/no/such/path");
    expect(res.text).toContain('evently_http_request_duration_seconds_bucket{route="/endpoints/:id"');
  });
});

describe("request ids", () => {
  test("minted when absent, echoed when sane, replaced when not", async () => {
    const minted = await api.request("GET", "/health");
    expect(minted.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
    const echoed = await api.request("GET", "/endpoints/nope", { headers: { "x-request-id": "trace-abc.123" } });
    expect(echoed.status).toBe(404);
    expect(echoed.headers.get("x-request-id")).toBe("trace-abc.123");
    const replaced = await api.request("GET", "/health", { headers: { "x-request-id": "a b\"c" } });
    expect(replaced.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe("failures leak nothing", () => {
  function capturingLog(into: Record<string, unknown>[]): Logger {
    return { ...createLogger("error"), error: (msg, fields) => void into.push({ msg, ...fields }) };
  }

  test(
    "an unreachable database is 503 unavailable; details go to the log with the request id",
    async () => {
      const logged: Record<string, unknown>[] = [];
      const url = "postgres://postgres@127.0.0.1:1/nowhere";
      const sql = createSql({ DATABASE_URL: url, DATABASE_POOL_MAX: 1 }, { pool: "test", connect_timeout: 2 });
      const app = createApp({
        config: loadConfig({ DATABASE_URL: url, ...TEST_SECRETS_ENV }),
        sql,
        ingest: new Ingest(sql, noHandoff, loadConfig({}).ingest),
        readiness: async () => ({ postgres: false }),
        log: capturingLog(logged),
        // Keys are not what this test is about: every request acts on the default application.
        authenticate: async () => ({ id: DEFAULT_APPLICATION_ID, rateLimitPerSecond: null }),
        rateLimit: { take: () => ({ ok: true }) },
      });
      try {
        const read = await send(app, "GET", "/endpoints");
        expect(read.status).toBe(503);
        expect(read.body).toEqual({ code: "unavailable", detail: "database unavailable, try again" });
        expect(read.text).not.toContain("127.0.0.1");
        expect(logged).toHaveLength(1);
        expect(logged[0]!.requestId).toBe(read.headers.get("x-request-id"));
        expect(String(logged[0]!.error)).toContain("ECONNREFUSED");

        // The group committer retries a lost connection for a few seconds before giving up.
        const write = await send(app, "POST", "/events", { body: { type: "a", data: {} } });
        expect(write.status).toBe(503);
        expect(write.body.code).toBe("unavailable");
        expect(write.text).not.toContain("127.0.0.1");
      } finally {
        await sql.end({ timeout: 0 });
      }
    },
    30_000,
  );

  test("an unexpected database error is a bare 500 internal, logged in full", async () => {
    const logged: Record<string, unknown>[] = [];
    const broken = await startApi({ log: capturingLog(logged) });
    try {
      await broken.sql`alter table endpoints rename to endpoints_renamed_by_test`;
      const res = await broken.request("GET", "/endpoints/ep_00000000000000000000000000000000");
      expect(res.status).toBe(500);
      expect(res.body).toEqual({ code: "internal", detail: "internal error" });
      expect(res.text).not.toContain("endpoints");
      expect(logged).toHaveLength(1);
      expect(logged[0]!.route).toBe("/endpoints/:id");
      expect(String(logged[0]!.error)).toContain('relation "endpoints" does not exist');
    } finally {
      await broken.close();
    }
  });
});
