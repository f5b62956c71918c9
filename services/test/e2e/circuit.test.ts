import { expect, test } from "bun:test";
import { pollUntil } from "../support/poll.ts";
import { describeEachTransport, useTestStack } from "../support/stack.ts";

/**
 * Flow control end to end, on real api + worker processes: the circuit breaker (opens, holds
 * without attempts, one probe per interval, closes and delivers the backlog), 410 Gone and
 * auto-disable (the endpoint disabled and an `endpoint.disabled` event delivered to a watcher),
 * and pause/resume.
 */

const OPEN_MS = 2000;

describeEachTransport("circuit breaker and endpoint status", (transport) => {
  const e2e = useTestStack(transport, {
    RETRY_SCHEDULE: Array(12).fill("200ms").join(","),
    CIRCUIT_FAILURE_THRESHOLD: "3",
    CIRCUIT_OPEN_MS: String(OPEN_MS),
    CIRCUIT_OPEN_MAX_MS: String(OPEN_MS),
    DELIVERY_TIMEOUT_MS: "1000",
  });

  const publish = async (type: string, data: unknown = {}) => {
    const res = await e2e.api("POST", "/events", { type, data });
    expect(res.status).toBe(202);
    return res.body as { id: string; jobs: { id: string; endpointId: string }[] };
  };
  const attempts = async (endpointId: string) =>
    (await e2e.sql<{ n: number }[]>`select count(*)::int as n from attempts where endpoint_id = ${endpointId}`)[0]!.n;
  const endpoint = async (id: string) => (await e2e.api("GET", `/endpoints/${id}`)).body;

  test("opens after the threshold, holds without attempts, probes once per interval, closes and delivers the backlog", async () => {
    let healthy = false;
    e2e.receiver.respond("/flaky", () => (healthy ? new Response("ok") : new Response("down", { status: 500 })));
    const ep = await e2e.subscribe(`${e2e.receiver.url}/flaky`, "cb.*");
    const early = await Promise.all([1, 2, 3, 4].map((n) => publish("cb.early", { n })));
    const opened = await pollUntil(async () => {
      const e = await endpoint(ep.id);
      return e.circuit.state === "open" && e;
    }, { what: "circuit open" });
    expect(opened.circuit).toMatchObject({ timesOpened: 1 });
    expect(opened.circuit.consecutiveFailures).toBeGreaterThanOrEqual(3);
    expect(new Date(opened.circuit.retryAt).getTime()).toBeGreaterThan(Date.now());
    expect(opened.circuit.failingSince).not.toBeNull();

    // Jobs made while open wait too; nothing is attempted until the retry time.
    const late = await Promise.all([5, 6, 7].map((n) => publish("cb.late", { n })));
    await Bun.sleep(300); // attempts already in flight when it opened land
    const base = await attempts(ep.id);
    const flatUntil = new Date(opened.circuit.retryAt).getTime() - 200;
    while (Date.now() < flatUntil) {
      expect(await attempts(ep.id)).toBe(base);
      await Bun.sleep(100);
    }
    // One probe, which fails: open again, and flat again.
    await pollUntil(async () => (await attempts(ep.id)) === base + 1, { what: "the probe", timeoutMs: OPEN_MS * 3 });
    await pollUntil(async () => (await endpoint(ep.id)).circuit.state === "open" && (await endpoint(ep.id)).circuit.retryAt !== opened.circuit.retryAt, {
      what: "reopened",
    });
    await Bun.sleep(OPEN_MS / 2);
    expect(await attempts(ep.id)).toBe(base + 1);
    expect((await endpoint(ep.id)).circuit.timesOpened).toBe(1);

    // The receiver heals: the next probe closes the circuit and every held job is delivered.
    healthy = true;
    const jobs = [...early, ...late].map((e) => e.jobs[0]!.id);
    await pollUntil(async () => {
      const rows = await e2e.sql`select status from jobs where id = any (${jobs}::text[])`;
      return rows.every((r) => r.status === "delivered");
    }, { what: "backlog delivered", timeoutMs: OPEN_MS * 4 });
    const closed = await endpoint(ep.id);
    expect(closed.circuit).toMatchObject({ state: "closed", consecutiveFailures: 0, failingSince: null, retryAt: null });
    const delivered = e2e.receiver.on("/flaky").filter((r) => r.body.includes('"cb.'));
    const ids = new Set(delivered.map((r) => JSON.parse(r.body).id));
    for (const e of [...early, ...late]) expect(ids.has(e.id)).toBe(true);
    // Held jobs spent no attempts: those made while open were tried once each, plus at most the failed probe.
    const [lateAttempts] = await e2e.sql<{ n: number }[]>`
      select count(*)::int as n from attempts where job_id = any (${late.map((e) => e.jobs[0]!.id)}::text[])`;
    expect(lateAttempts!.n).toBeLessThanOrEqual(late.length + 1);
  }, 30_000);

  test("410 Gone disables the endpoint and an endpoint.disabled event reaches a watcher, once, never the endpoint itself", async () => {
    e2e.receiver.respond("/gone", () => new Response("gone", { status: 410 }));
    const credentialed = e2e.receiver.url.replace("://", "://hook:pw-s3cret@");
    // Subscribed to everything, endpoint.* included: it must not be sent its own notice.
    const gone = await e2e.subscribe(`${credentialed}/gone`, "*");
    const watcher = await e2e.subscribe(`${e2e.receiver.url}/watch-410`, "endpoint.*");
    await Promise.all([1, 2, 3].map((n) => publish("g.x", { n })));

    const [notice] = await pollUntil(() => e2e.receiver.on("/watch-410").length > 0 && e2e.receiver.on("/watch-410"), { what: "endpoint.disabled" });
    const body = JSON.parse(notice!.body);
    expect(body.type).toBe("endpoint.disabled");
    expect(body.data).toMatchObject({ endpointId: gone.id, reason: "the receiver answered 410 Gone" });
    expect(body.data.url).toBe(`${e2e.receiver.url.replace("://", "://hook:[redacted]@")}/gone`);
    expect(notice!.body).not.toContain("s3cret");
    expect(new Date(body.data.disabledAt).toISOString()).toBe(body.data.disabledAt);
    expect(await endpoint(gone.id)).toMatchObject({ status: "disabled", statusReason: "the receiver answered 410 Gone" });

    await Bun.sleep(500);
    expect(e2e.receiver.on("/watch-410")).toHaveLength(1);
    const events = await e2e.sql`select id from events where type = 'endpoint.disabled' and payload->>'endpointId' = ${gone.id}`;
    expect(events).toHaveLength(1);
    const jobs = await e2e.sql`select endpoint_id from jobs where event_id = ${events[0]!.id}`;
    expect(jobs.map((j) => j.endpointId)).toEqual([watcher.id]);
    expect(e2e.receiver.on("/gone").some((r) => r.body.includes("endpoint.disabled"))).toBe(false);
    // The watcher is active; leave nothing routed to every later event.
    await e2e.api("DELETE", `/endpoints/${gone.id}`);
    await e2e.api("DELETE", `/endpoints/${watcher.id}`);
  });

  test("a paused endpoint's jobs are not attempted while paused, and are delivered at once after resume", async () => {
    const ep = await e2e.subscribe(`${e2e.receiver.url}/paused`, "p.*");
    expect((await e2e.api("POST", `/endpoints/${ep.id}/pause`, { reason: "deploying" })).status).toBe(200);
    const events = await Promise.all([1, 2, 3].map((n) => publish("p.x", { n })));
    const jobs = events.map((e) => e.jobs[0]!.id);
    await pollUntil(async () => {
      const rows = await e2e.sql`select status from jobs where id = any (${jobs}::text[])`;
      return rows.every((r) => r.status === "scheduled");
    }, { what: "jobs held" });
    await Bun.sleep(500);
    expect(e2e.receiver.on("/paused")).toHaveLength(0);
    expect(await attempts(ep.id)).toBe(0);

    const resumedAt = Date.now();
    expect((await e2e.api("POST", `/endpoints/${ep.id}/resume`)).body.status).toBe("active");
    await pollUntil(() => e2e.receiver.on("/paused").length === 3, { what: "delivered after resume", timeoutMs: 10_000 });
    // Well before the 60 s a held job would otherwise wait.
    expect(Date.now() - resumedAt).toBeLessThan(10_000);
    // Recorded after the receiver answered: polled. Held, they spent no attempt.
    const rows = await pollUntil(async () => {
      const found = await e2e.sql`select status, attempt_count from jobs where id = any (${jobs}::text[])`;
      return found.every((r) => r.status === "delivered") && found;
    }, { what: "jobs delivered" });
    expect(rows.map((r) => r.attemptCount)).toEqual([1, 1, 1]);
  });
});

describeEachTransport("auto-disable after sustained failure", (transport) => {
  const e2e = useTestStack(transport, {
    RETRY_SCHEDULE: Array(30).fill("200ms").join(","),
    CIRCUIT_FAILURE_THRESHOLD: "3",
    CIRCUIT_OPEN_MS: "300",
    CIRCUIT_OPEN_MAX_MS: "300",
    ENDPOINT_AUTO_DISABLE_AFTER_MS: "1500",
  });

  test("an endpoint failing for ENDPOINT_AUTO_DISABLE_AFTER_MS is disabled, its jobs cancelled, and a watcher told", async () => {
    e2e.receiver.respond("/dead", () => new Response("down", { status: 503 }));
    const dead = await e2e.subscribe(`${e2e.receiver.url}/dead`, "a.*");
    await e2e.subscribe(`${e2e.receiver.url}/watch`, "endpoint.disabled");
    const started = Date.now();
    const event = await e2e.api("POST", "/events", { type: "a.x", data: {} });
    const job = event.body.jobs[0].id;

    const [notice] = await pollUntil(() => e2e.receiver.on("/watch").length > 0 && e2e.receiver.on("/watch"), {
      what: "endpoint.disabled",
      timeoutMs: 15_000,
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(1500);
    const { data } = JSON.parse(notice!.body);
    expect(data).toMatchObject({ endpointId: dead.id, url: `${e2e.receiver.url}/dead` });
    expect(data.reason).toBe(`failing since ${data.failingSince}: auto-disabled`);
    expect(new Date(data.disabledAt).getTime() - new Date(data.failingSince).getTime()).toBeGreaterThanOrEqual(1500);

    const shown = (await e2e.api("GET", `/endpoints/${dead.id}`)).body;
    expect(shown).toMatchObject({ status: "disabled", statusReason: data.reason });
    await pollUntil(async () => {
      const [row] = await e2e.sql`select status, end_reason from jobs where id = ${job}`;
      return row!.status === "cancelled" && row!.endReason === "endpoint_disabled";
    }, { what: "job cancelled" });
    await Bun.sleep(300);
    expect(e2e.receiver.on("/watch")).toHaveLength(1);
  }, 30_000);
});
