import { afterAll, beforeAll, expect, test } from "bun:test";
import type { RunningRoles } from "../../runtime.ts";
import { captureLog, type LogLine } from "../support/log.ts";
import { pollUntil } from "../support/poll.ts";
import { startReceiver, type Receiver } from "../support/receiver.ts";
import { createTestStack, describeEachTransport, type TestStack } from "../support/stack.ts";

/** What an operator sees in the log when deliveries fail: one line per change, never a flood. */
describeEachTransport("delivery logs", (transport) => {
  let stack: TestStack;
  let app: RunningRoles;
  let receiver: Receiver;
  let lines: LogLine[];

  beforeAll(async () => {
    receiver = startReceiver();
    // One first attempt and three retries.
    // Breaker off: these tests count the log lines of many failed attempts, which an open circuit would hold.
    stack = await createTestStack({ RETRY_SCHEDULE: "100ms,100ms,100ms", CIRCUIT_FAILURE_THRESHOLD: "0", CIRCUIT_FAILURE_RATIO: "0" }, transport);
    const captured = captureLog();
    lines = captured.lines;
    app = await stack.start("all", {}, captured.log);
  });

  afterAll(async () => {
    await stack.stop();
    await receiver.stop();
  });

  const about = (endpointId: string) => lines.filter((l) => l.endpointId === endpointId);
  const host = () => new URL(receiver.url).host;

  async function publish(type: string, data: unknown): Promise<string> {
    const res = await stack.api(app, "POST", "/events", { type, data });
    expect(res.status).toBe(202);
    return res.body.jobs[0].id;
  }

  async function jobsFailed(endpointId: string, count: number): Promise<void> {
    await pollUntil(async () => {
      const res = await stack.api(app, "GET", `/endpoints/${endpointId}/jobs?status=dead`);
      return res.body.data.length === count;
    }, { what: `${count} dead jobs` });
  }

  test("a failure and the recovery after it are one line each, naming endpoint, host, error, status, attempt and job", async () => {
    receiver.respond("/flaky", (_req, nth) => new Response(nth <= 2 ? "down" : "ok", { status: nth <= 2 ? 500 : 200 }));
    const ep = await stack.subscribe(app, `${receiver.url}/flaky?token=url-secret`, "flaky.*", {
      headers: { authorization: "Bearer header-secret" },
    });
    const jobId = await publish("flaky.happened", { note: "payload-secret" });

    await pollUntil(() => about(ep.id).length === 2, { what: "failing and recovered lines" });
    const [failing, recovered] = about(ep.id);
    expect(failing).toMatchObject({
      level: "warn",
      msg: "delivery failing",
      endpointId: ep.id,
      host: host(),
      errorClass: "http_status",
      status: 500,
      attempt: 1,
      jobId,
    });
    expect(recovered).toMatchObject({ level: "info", msg: "delivery recovered", host: host(), status: 200, attempt: 3, jobId, failedAttempts: 2 });
    expect(recovered!.errorClass).toBeNull();
    const text = JSON.stringify(lines);
    for (const secret of [ep.secret, "url-secret", "header-secret", "payload-secret"]) expect(text).not.toContain(secret);
  });

  test("a dead endpoint: one line when it starts failing, one when the first job gives up, whatever the number of jobs", async () => {
    receiver.respond("/dead", () => new Response("down", { status: 503 }));
    const ep = await stack.subscribe(app, `${receiver.url}/dead`, "dead.*");
    for (let i = 0; i < 5; i++) await publish("dead.happened", { i });
    await jobsFailed(ep.id, 5);
    expect(receiver.on("/dead")).toHaveLength(20);

    await pollUntil(() => about(ep.id).length === 2, { what: "failing and job failed lines" });
    await Bun.sleep(200); // nothing more comes
    const logged = about(ep.id);
    expect(logged.map((l) => l.msg)).toEqual(["delivery failing", "job dead: no more retries"]);
    expect(logged[1]).toMatchObject({ level: "warn", errorClass: "http_status", status: 503, attempt: 4 });
  });

  test("an endpoint refused by the SSRF guard is explained once, naming DELIVERY_ALLOW_PRIVATE_NETWORKS", async () => {
    // An endpoint on loopback (the receiver's) saved while private networks were allowed; then the
    // same installation, now with the guard on, which the API would also apply to a new endpoint.
    const ep = await stack.subscribe(app, `${receiver.url}/private`, "private.*");
    await app.stop();
    const captured = captureLog();
    lines = captured.lines;
    app = await stack.start("all", { DELIVERY_ALLOW_PRIVATE_NETWORKS: "false" }, captured.log);

    for (let i = 0; i < 3; i++) await publish("private.happened", { i });
    await jobsFailed(ep.id, 3);
    expect(receiver.on("/private")).toHaveLength(0);

    await pollUntil(() => about(ep.id).length === 2, { what: "explanation and job failed lines" });
    await Bun.sleep(200);
    const [explained, gaveUp] = about(ep.id);
    expect(about(ep.id)).toHaveLength(2);
    expect(explained).toMatchObject({ level: "warn", endpointId: ep.id, host: host(), errorClass: "blocked_address", status: null, attempt: 1 });
    expect(explained!.msg).toContain("DELIVERY_ALLOW_PRIVATE_NETWORKS=true");
    expect(String(explained!.detail)).toContain("127.0.0.1");
    // Refused by the guard is final: retrying cannot make the address allowed, so the first attempt is the last.
    expect(gaveUp).toMatchObject({ msg: "job dead: no more retries", errorClass: "blocked_address", attempt: 1 });
  });
});
