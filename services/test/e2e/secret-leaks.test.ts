import { afterAll, beforeAll, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { Webhook } from "standardwebhooks";
import { DEFAULT_APPLICATION_ID } from "../../core/applications/sql.ts";
import { startTelemetry, type Telemetry } from "../../core/telemetry/setup.ts";
import { METRIC, SPAN } from "../../core/telemetry/names.ts";
import { startRoles, type RunningRoles } from "../../runtime.ts";
import { connectionPassword, findLeaks, signingSecret, urlPassword, type Captured, type Secret } from "../support/leaks.ts";
import { asAdminOf, TEST_ADMIN_KEY, TEST_ENCRYPTION_KEY } from "../support/keys.ts";
import { captureLog, type LogLine } from "../support/log.ts";
import { startOtlpReceiver, type OtlpReceiver } from "../support/otlp.ts";
import { pollUntil } from "../support/poll.ts";
import { stall, startReceiver, type Receiver, type ReceivedRequest } from "../support/receiver.ts";
import { createTestStack, describeEachTransport, TEST_AMQP_URL, type TestStack } from "../support/stack.ts";

/**
 * Secrets are returned only on create, read-secret and rotate; never logged, never in spans, metrics
 * or attempt records. One installation runs a day's worth of secret handling — deliveries that
 * succeed, fail, time out, are refused, rotations, key management, bad keys — with every log line
 * (debug), every exported span, /metrics, every database row and every API response captured; then
 * all of it is searched for every secret it was given.
 */
describeEachTransport("secrets never leak", (transport) => {
  const unique = (prefix: string) => `${prefix}${randomBytes(16).toString("hex")}`;
  const USER = "deliverer";

  let stack: TestStack;
  let app: RunningRoles;
  let telemetry: Telemetry;
  let receiver: Receiver;
  let otlp: OtlpReceiver;
  let lines: LogLine[];
  let stopped = false;

  const secrets: Secret[] = [];
  /** Every response the test received, but those whose purpose is to return a secret. */
  const responses: { label: string; body: unknown; headers: [string, string][] }[] = [];
  let metricsText = "";
  /** Every row of every table, as `select t::text` reads it. */
  const tables = new Map<string, string[]>();
  /** What the attempts recorded, per endpoint: error classes (null: delivered) and response bodies. */
  const recorded = new Map<string, { errorClasses: (string | null)[]; bodies: (string | null)[] }>();
  let attemptCount = 0;

  /** The endpoints of the run, by what their receiver does. */
  type Kind = "ok" | "basic" | "flaky" | "dead" | "slow" | "refused" | "tls" | "echo";
  const endpoints = new Map<Kind, { id: string; secret: string; path: string; token: string; apiKey: string; password: string }>();
  const rotated: { secret?: string } = {};

  /**
   * A request to the API, its response kept for the search, except from the few routes whose
   * purpose is to return a secret (`returnsSecret`): there the test checks it is there instead.
   */
  async function call(method: string, path: string, body?: unknown, headers?: Record<string, string>, returnsSecret = false) {
    const res = await stack.api(app, method, path, body, headers);
    if (!returnsSecret) responses.push({ label: `${method} ${path} → ${res.status}`, body: res.body, headers: [...res.headers] });
    return res;
  }

  const unsettled = async () =>
    (await stack.sql<{ n: number }[]>`select count(*)::int as n from jobs where status not in ('delivered', 'dead')`)[0]!.n;

  async function publish(n: number): Promise<void> {
    const res = await call("POST", "/events", { type: "leak.happened", data: { n } });
    expect(res.status).toBe(202);
    expect(res.body.jobs).toHaveLength(endpoints.size);
    await pollUntil(async () => (await unsettled()) === 0, { what: "every job delivered or dead", timeoutMs: 20_000 });
  }

  beforeAll(async () => {
    receiver = startReceiver();
    otlp = startOtlpReceiver();
    // One first attempt and two retries: failures retry, and then give up, within the run.
    const env = { RETRY_SCHEDULE: "100ms,100ms", LOG_LEVEL: "debug", OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url };
    stack = await createTestStack(env, transport);
    // stack.start passes no telemetry; the roles get it here as main.ts gives it to them.
    telemetry = startTelemetry(stack.config().telemetry, "all");
    const captured = captureLog();
    lines = captured.lines;
    app = await startRoles(stack.config(), "all", { log: captured.log, telemetry });

    secrets.push(
      { name: "application key", value: stack.appKey },
      { name: "admin key", value: TEST_ADMIN_KEY },
      { name: "ENCRYPTION_KEY", value: TEST_ENCRYPTION_KEY },
      { name: "ENCRYPTION_KEY (hex)", value: Buffer.from(TEST_ENCRYPTION_KEY, "base64").toString("hex") },
      ...connectionPassword("database password", stack.env.DATABASE_URL!),
      ...connectionPassword("AMQP password", TEST_AMQP_URL),
    );

    // A port nothing listens on: the server that had it is gone.
    const gone = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response() });
    const refusedPort = gone.port;
    await gone.stop(true);
    const host = new URL(receiver.url).host;

    const responders: Record<Kind, (req: ReceivedRequest, nth: number) => Response | Promise<Response>> = {
      ok: () => new Response("ok"),
      basic: () => new Response("ok"),
      flaky: (_req, nth) => new Response(nth <= 2 ? "down" : "ok", { status: nth <= 2 ? 500 : 200 }),
      dead: () => new Response("down", { status: 500 }),
      slow: async (req) => (await stall(req, 5000), new Response("late")),
      refused: () => new Response("unreachable"),
      tls: () => new Response("unreachable"),
      // A receiver that answers with the headers it was sent, credentials included. See the test
      // "an echoed credential is the receiver's answer, recorded as sent" for how it is treated.
      echo: (req) => Response.json({ echoed: req.headers }),
    };
    for (const kind of Object.keys(responders) as Kind[]) {
      const path = `/${kind}`;
      receiver.respond(path, responders[kind]);
      const token = unique("tok_");
      const apiKey = unique("key_");
      const password = unique("pw");
      const where = kind === "refused" ? `127.0.0.1:${refusedPort}` : host;
      const url = `${kind === "tls" ? "https" : "http"}://${USER}:${password}@${where}${path}`;
      // `basic` sends no authorization header of its own, so its URL's password goes out as Basic auth.
      const headers: Record<string, string> = { "x-api-key": apiKey, "x-tenant": `tenant-${kind}` };
      if (kind !== "basic") headers.authorization = `Bearer ${token}`;
      const res = await call(
        "POST",
        "/endpoints",
        { url, headers, eventTypes: ["leak.*"], timeoutMs: kind === "slow" ? 200 : 1000 },
        undefined,
        true,
      );
      expect(res.status).toBe(201);
      endpoints.set(kind, { id: res.body.id, secret: res.body.secret, path, token, apiKey, password });
      secrets.push(
        ...signingSecret(`signing secret of ${kind}`, res.body.secret),
        { name: `authorization token of ${kind}`, value: token },
        { name: `x-api-key of ${kind}`, value: apiKey },
        ...urlPassword(`URL password of ${kind}`, USER, password),
      );
    }
    const ok = endpoints.get("ok")!;
    const basic = endpoints.get("basic")!;

    // Read-secret returns it.
    const read = await call("GET", `/endpoints/${ok.id}/secret`, undefined, undefined, true);
    expect(read.body.secret).toBe(ok.secret);

    await publish(1);

    // Rotation with a grace window: the next deliveries carry two signatures.
    const rotation = await call("POST", `/endpoints/${ok.id}/secret/rotate`, { graceSeconds: 3600 }, undefined, true);
    expect(rotation.status).toBe(200);
    rotated.secret = rotation.body.secret as string;
    secrets.push(...signingSecret("rotated signing secret of ok", rotated.secret));
    expect((await call("GET", `/endpoints/${ok.id}/secret`, undefined, undefined, true)).body.secret).toBe(rotated.secret);

    // An endpoint read and written back as read: its redacted values keep the stored ones.
    const shown = await call("GET", `/endpoints/${basic.id}`);
    expect(shown.body.url).toContain("[redacted]");
    const patched = await call("PATCH", `/endpoints/${basic.id}`, { url: shown.body.url, headers: shown.body.headers, description: "written back" });
    expect(patched.status).toBe(200);

    // The admin key acting on the application, and making, using and revoking an application key.
    expect((await call("GET", "/endpoints", undefined, asAdminOf(DEFAULT_APPLICATION_ID))).status).toBe(200);
    expect((await call("GET", "/endpoints", undefined, { authorization: `Bearer ${TEST_ADMIN_KEY}` })).status).toBe(422);
    const made = await call("POST", `/applications/${DEFAULT_APPLICATION_ID}/api-keys`, { name: "leak test" }, asAdminOf(DEFAULT_APPLICATION_ID), true);
    expect(made.status).toBe(201);
    secrets.push({ name: "created application key", value: made.body.key });
    const bearer = { authorization: `Bearer ${made.body.key}` };
    expect((await call("GET", "/endpoints", undefined, bearer)).status).toBe(200);
    expect((await call("GET", "/applications", undefined, bearer)).status).toBe(403);
    const revoked = await call("DELETE", `/applications/${DEFAULT_APPLICATION_ID}/api-keys/${made.body.id}`, undefined, asAdminOf(DEFAULT_APPLICATION_ID));
    expect(revoked.status).toBe(204);
    await pollUntil(async () => (await call("GET", "/endpoints", undefined, bearer)).status === 401, { what: "the revoked key refused" });
    expect((await call("GET", `/applications/${DEFAULT_APPLICATION_ID}/api-keys`, undefined, asAdminOf(DEFAULT_APPLICATION_ID))).status).toBe(200);

    // Wrong keys, one shaped like an application key (looked up by digest), one not (compared with the admin key).
    for (const [name, value] of [["wrong application key", unique("evk_")], ["wrong key", unique("not-a-key-")]] as const) {
      secrets.push({ name, value });
      expect((await call("GET", "/endpoints", undefined, { authorization: `Bearer ${value}` })).status).toBe(401);
      expect((await call("GET", "/applications", undefined, { authorization: `Bearer ${value}` })).status).toBe(401);
    }

    await publish(2);

    // Everything a user reads back about the run.
    for (const [, ep] of endpoints) {
      await call("GET", `/endpoints/${ep.id}`);
      await call("GET", `/endpoints/${ep.id}/attempts?limit=100`);
      await call("GET", `/endpoints/${ep.id}/jobs?limit=100`);
    }
    const jobs = await call("GET", "/jobs?limit=100");
    for (const job of jobs.body.data) await call("GET", `/jobs/${job.id}`);
    const events = await call("GET", "/events?limit=100");
    for (const event of events.body.data) await call("GET", `/events/${event.id}`);
    await call("GET", "/endpoints?limit=100");
    await call("GET", "/routes?limit=100");

    const metrics = await fetch(`${app.url}/metrics`);
    expect(metrics.status).toBe(200);
    metricsText = await metrics.text();

    // Stopping flushes every span to the OTLP receiver.
    await app.stop();
    await telemetry.shutdown();
    stopped = true;

    const echoId = endpoints.get("echo")!.id;
    const names = await stack.sql<{ tablename: string }[]>`select tablename from pg_tables where schemaname = current_schema() order by 1`;
    for (const { tablename } of names) {
      // The echo endpoint's response bodies are the receiver's own answer: see the echo test below.
      const rows =
        tablename === "attempts"
          ? await stack.sql<{ row: string }[]>`
              select (case when t.endpoint_id = ${echoId} then jsonb_populate_record(t, '{"response_body": "(echo: see test)"}') else t end)::text as row
              from attempts t`
          : await stack.sql.unsafe<{ row: string }[]>(`select t::text as row from "${tablename}" t`);
      tables.set(tablename, rows.map((r) => r.row));
    }
    attemptCount = tables.get("attempts")!.length;
    const attempts = await stack.sql<{ endpointId: string; errorClass: string | null; responseBody: string | null }[]>`
      select endpoint_id, error_class, response_body from attempts order by endpoint_id, created_at`;
    for (const a of attempts) {
      const seen = recorded.get(a.endpointId) ?? { errorClasses: [], bodies: [] };
      seen.errorClasses.push(a.errorClass);
      seen.bodies.push(a.responseBody);
      recorded.set(a.endpointId, seen);
    }
  }, 60_000);

  afterAll(async () => {
    if (!stopped) {
      await app?.stop();
      await telemetry?.shutdown();
    }
    await stack?.stop();
    await receiver?.stop();
    await otlp?.stop();
  });

  test("the run put every secret to use, and each corpus holds what the run did", () => {
    // Deliveries: Basic auth from the URL's password (kept through a PATCH of the redacted read),
    // custom headers as given, and two signatures while the rotation's grace window is open.
    const basic = endpoints.get("basic")!;
    const basicAuth = `Basic ${Buffer.from(`${USER}:${basic.password}`).toString("base64")}`;
    expect(receiver.on("/basic").map((r) => r.headers.authorization)).toEqual([basicAuth, basicAuth]);
    const ok = endpoints.get("ok")!;
    const [before, after] = receiver.on("/ok");
    expect(before!.headers).toMatchObject({ authorization: `Bearer ${ok.token}`, "x-api-key": ok.apiKey });
    expect(after!.headers["webhook-signature"]!.split(" ")).toHaveLength(2);
    for (const secret of [ok.secret, rotated.secret!]) expect(() => new Webhook(secret).verify(after!.body, after!.headers)).not.toThrow();

    // Outcomes of every kind were recorded: delivered, retried, given up, timed out, refused, TLS.
    const classes = (kind: Kind) => [...new Set(recorded.get(endpoints.get(kind)!.id)!.errorClasses)].sort();
    expect(classes("ok")).toEqual([null]);
    expect(classes("basic")).toEqual([null]);
    expect(classes("echo")).toEqual([null]);
    expect(classes("flaky")).toEqual(["http_status", null]);
    expect(classes("dead")).toEqual(["http_status"]);
    expect(classes("slow")).toEqual(["timeout"]);
    expect(classes("refused")).toEqual(["connection_refused"]);
    expect(classes("tls")).toHaveLength(1);
    expect(classes("tls")[0]).not.toBeNull();
    // Two events: ok, basic and echo take 1 attempt each; flaky 3, then 1; dead, slow, refused and tls 3 each.
    expect(attemptCount).toBe(2 * 3 + 4 + 4 * 2 * 3);
    expect(tables.get("jobs")!.length).toBe(2 * endpoints.size);
    expect(tables.get("events")!.length).toBe(2);

    // Logs at debug level, failures and recoveries among them.
    const messages = lines.map((l) => l.msg);
    for (const msg of ["evently started", "endpoint cache filled", "delivery failing", "delivery recovered", "job dead: no more retries"])
      expect(messages).toContain(msg);

    // A send span for every attempt, and the other pipeline spans.
    const spans = otlp.spans();
    expect(spans.filter((s) => s.name === SPAN.deliverySend)).toHaveLength(attemptCount);
    for (const name of [SPAN.ingestCommit, SPAN.deliver, SPAN.attemptsRecord]) expect(spans.map((s) => s.name)).toContain(name);

    // /metrics renders the telemetry's series, the deliveries among them.
    expect(metricsText).toContain(`${METRIC.deliveryAttempts}{`);
    expect(metricsText).toContain(`${METRIC.httpRequests}{`);

    expect(responses.length).toBeGreaterThan(40);
  });

  const leaksIn = (captured: Captured[]) => findLeaks(secrets, captured);

  test("no secret in the logs", () => {
    expect(leaksIn(lines.map((line, i) => ({ corpus: "logs", label: `line ${i + 1}: ${line.msg}`, text: JSON.stringify(line) })))).toEqual([]);
  });

  test("no secret in the spans", () => {
    expect(leaksIn(otlp.exports.map((text, i) => ({ corpus: "spans", label: `OTLP export ${i + 1}`, text })))).toEqual([]);
  });

  test("no secret in /metrics", () => {
    expect(leaksIn([{ corpus: "metrics", label: "GET /metrics", text: metricsText }])).toEqual([]);
  });

  test("no secret in the database in plaintext: attempts, jobs, events, outbox and every other table", () => {
    const captured = [...tables].flatMap(([table, rows]) => rows.map((text, i) => ({ corpus: `db:${table}`, label: `row ${i + 1}`, text })));
    expect(leaksIn(captured)).toEqual([]);
  });

  test("no secret in any API response but those of create, read-secret, rotate and key creation", () => {
    // The echo endpoint's attempts carry its echoed credentials in responseBody: see the next test.
    const echoId = endpoints.get("echo")!.id;
    const leaveOutEcho = (_key: string, value: unknown) =>
      value !== null && typeof value === "object" && (value as { endpointId?: string }).endpointId === echoId && "responseBody" in value
        ? { ...value, responseBody: "(echo: see test)" }
        : value;
    const captured = responses.map((r) => ({ corpus: "http", label: r.label, text: `${JSON.stringify(r.body, leaveOutEcho)}\n${JSON.stringify(r.headers)}` }));
    expect(leaksIn(captured)).toEqual([]);
  });

  /**
   * A receiver that echoes the request puts the credentials it was sent into its own response, and
   * Evently records a response's first bytes as they came (DELIVERY_MAX_RESPONSE_BYTES): that is
   * what the attempt log is for, and Evently cannot tell an echo from any other answer. The echo
   * goes back only to holders of the application's key, who can already read the signing secret and
   * send the endpoint's deliveries, custom headers included, to a URL of their own. So it is
   * documented here rather than scrubbed: the one thing the searches above leave out is that
   * receiver's response body, in the attempts table and in the API's attempt listings.
   */
  test("an echoed credential is the receiver's answer, recorded as sent", () => {
    const echo = endpoints.get("echo")!;
    const bodies = recorded.get(echo.id)!.bodies;
    expect(bodies).toHaveLength(2);
    for (const body of bodies) expect(JSON.parse(body!).echoed).toMatchObject({ authorization: `Bearer ${echo.token}`, "x-api-key": echo.apiKey });
  });
});
