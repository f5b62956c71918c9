import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { context, ROOT_CONTEXT, trace, TraceFlags } from "@opentelemetry/api";
import { loadConfig } from "../../core/config/index.ts";
import { createLogger } from "../../core/log.ts";
import { decodeDeliveryMessage, encodeDeliveryMessage, jobMessage } from "../../core/queue/messages.ts";
import { SPAN } from "../../core/telemetry/names.ts";
import { startTelemetry, type Telemetry } from "../../core/telemetry/setup.ts";
import { parseTraceparent, tracingEnabled } from "../../core/telemetry/trace-context.ts";
import { tracer } from "../../core/telemetry/tracing.ts";
import type { RunningRoles } from "../../runtime.ts";
import { startRoles } from "../../runtime.ts";
import { startOtlpReceiver, type OtlpReceiver, type OtlpSpan } from "../support/otlp.ts";
import { pollUntil } from "../support/poll.ts";
import { startReceiver, type Receiver } from "../support/receiver.ts";
import { createTestStack, describeEachTransport, type TestStack } from "../support/stack.ts";

const hex = (bytes: number) => randomBytes(bytes).toString("hex");
/** A producer's span: the trace the event must join. */
const producerSpan = () => ({ traceId: hex(16), spanId: hex(8) });
const traceparent = (p: { traceId: string; spanId: string }) => `00-${p.traceId}-${p.spanId}-01`;

/**
 * One trace per event, across every hop: the producer's traceparent on POST /events → request span
 * → group commit → publish → consume → attempt (whose traceparent the receiver gets) → attempt
 * write; a retry hours later (here 100 ms) joins the same trace through events.trace_parent.
 */
/** The spans of a delivered event; the Postgres transport has no publish span (its NOTIFY is in the commit). */
const hops = (transport: string) =>
  [SPAN.httpRequest, SPAN.ingestCommit, ...(transport === "rabbitmq" ? [SPAN.outboxPublish] : []), SPAN.deliver, SPAN.deliverySend, SPAN.attemptsRecord];

describeEachTransport("traces end to end", (transport) => {
  let stack: TestStack;
  let app: RunningRoles;
  let telemetry: Telemetry;
  let receiver: Receiver;
  let otlp: OtlpReceiver;
  let spans: OtlpSpan[] = [];
  let endpointSecret = "";
  const payloadMarker = `payload-${hex(12)}`;
  const delivered = producerSpan();
  const retried = producerSpan();

  const jobStatus = async (eventId: string) =>
    (await stack.sql<{ status: string }[]>`select status from jobs where event_id = ${eventId}`).map((r) => r.status);

  beforeAll(async () => {
    receiver = startReceiver();
    otlp = startOtlpReceiver();
    stack = await createTestStack({ RETRY_SCHEDULE: "100ms,100ms", OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url }, transport);
    telemetry = startTelemetry(stack.config().telemetry, "all");
    app = await startRoles(stack.config(), "all", { telemetry });
    expect(tracingEnabled()).toBe(true);

    receiver.respond("/ok", () => new Response("ok"));
    receiver.respond("/flaky", (_req, nth) => new Response(nth === 1 ? "down" : "ok", { status: nth === 1 ? 500 : 200 }));
    endpointSecret = (await stack.subscribe(app, `${receiver.url}/ok`, "trace.ok")).secret;
    await stack.subscribe(app, `${receiver.url}/flaky`, "trace.flaky");

    for (const [type, producer] of [["trace.ok", delivered], ["trace.flaky", retried]] as const) {
      const res = await stack.api(app, "POST", "/events", { type, data: { marker: payloadMarker } }, { traceparent: traceparent(producer) });
      expect(res.status).toBe(202);
      await pollUntil(async () => (await jobStatus(res.body.id)).every((s) => s === "delivered"), { what: `${type} delivered`, timeoutMs: 15_000 });
    }
    // Stopping flushes every span to the OTLP receiver.
    await app.stop();
    await telemetry.shutdown();
    spans = otlp.spans();
  });

  afterAll(async () => {
    await telemetry?.shutdown();
    await stack?.stop();
    await receiver?.stop();
    await otlp?.stop();
  });

  const inTrace = (traceId: string) => spans.filter((s) => s.traceId === traceId);
  const named = (list: OtlpSpan[], name: string) => list.filter((s) => s.name === name);

  test("a delivered event's spans are one trace, the producer's, from request to attempt write", () => {
    const own = inTrace(delivered.traceId);
    for (const name of hops(transport)) expect(own.map((s) => s.name), `${name} in the event's trace`).toContain(name);

    // The request span is the child of the producer's span; the commit of the request span.
    const [request] = named(own, SPAN.httpRequest);
    expect(request!.parentSpanId).toBe(delivered.spanId);
    expect(request!.attributes["http.route"]).toBe("/events");
    expect(request!.attributes).toMatchObject({ "evently.event_type": "trace.ok", "http.response.status_code": 202 });
    expect(String(request!.attributes["evently.event_id"])).toStartWith("evt_");
    const [commit] = named(own, SPAN.ingestCommit);
    expect(commit!.parentSpanId).toBe(request!.spanId);
    expect(commit!.links.map((l) => l.spanId)).toContain(request!.spanId);

    // The attempt span is the child of the request span (kept in events.trace_parent), and names its ids.
    const [attempt] = named(own, SPAN.deliverySend);
    expect(attempt!.parentSpanId).toBe(request!.spanId);
    expect(attempt!.attributes).toMatchObject({ "evently.attempt": 1, "evently.event_type": "trace.ok" });
    expect(String(attempt!.attributes["evently.event_id"])).toStartWith("evt_");
    expect(String(attempt!.attributes["evently.job_id"])).toStartWith("job_");
    expect(String(attempt!.attributes["evently.endpoint_id"])).toStartWith("ep_");

    // The consume span links the job's trace; the receiver got the attempt span's traceparent.
    const [consume] = named(own, SPAN.deliver);
    expect(consume!.links.map((l) => l.traceId)).toContain(delivered.traceId);
    const [sent] = receiver.on("/ok");
    const header = parseTraceparent(sent!.headers.traceparent);
    expect(header).toMatchObject({ traceId: delivered.traceId, spanId: attempt!.spanId });
  });

  test("a retried delivery joins the same trace: two attempts, and both requests carry its trace id", () => {
    const attempts = named(inTrace(retried.traceId), SPAN.deliverySend);
    expect(attempts.map((a) => a.attributes["evently.attempt"]).sort()).toEqual([1, 2]);
    expect(attempts.find((a) => a.attributes["evently.attempt"] === 1)!.attributes["evently.error_class"]).toBe("http_status");
    const requests = receiver.on("/flaky");
    expect(requests).toHaveLength(2);
    const headers = requests.map((r) => parseTraceparent(r.headers.traceparent));
    expect(headers.map((h) => h?.traceId)).toEqual([retried.traceId, retried.traceId]);
    expect(new Set(headers.map((h) => h?.spanId))).toEqual(new Set(attempts.map((a) => a.spanId)));
  });

  test("the event row keeps the request span's traceparent", async () => {
    const rows = await stack.sql<{ traceParent: string | null }[]>`select trace_parent from events order by created_at`;
    expect(rows.map((r) => parseTraceparent(r.traceParent)?.traceId)).toEqual([delivered.traceId, retried.traceId]);
  });

  test("no span holds the endpoint secret, the API key or the payload", () => {
    expect(otlp.exports.length).toBeGreaterThan(0);
    const everything = otlp.exports.join("\n");
    const secretKey = endpointSecret.replace(/^whsec_/, "");
    for (const [what, value] of [["endpoint secret", secretKey], ["API key", stack.appKey], ["payload", payloadMarker]] as const)
      expect(everything.includes(value), `${what} in an exported span`).toBe(false);
  });
});

describe("tracing off", () => {
  let stack: TestStack;
  let app: RunningRoles;
  let telemetry: Telemetry;
  let receiver: Receiver;

  beforeAll(async () => {
    receiver = startReceiver();
    stack = await createTestStack({}, "postgres");
    telemetry = startTelemetry(stack.config().telemetry, "all");
    app = await startRoles(stack.config(), "all", { telemetry });
  });

  afterAll(async () => {
    await app?.stop();
    await telemetry?.shutdown();
    await stack?.stop();
    await receiver?.stop();
  });

  test("stores no traceparent and sends none, even when the producer sent one", async () => {
    expect(tracingEnabled()).toBe(false);
    await stack.subscribe(app, `${receiver.url}/off`, "trace.off");
    const res = await stack.api(app, "POST", "/events", { type: "trace.off", data: {} }, { traceparent: traceparent(producerSpan()) });
    expect(res.status).toBe(202);
    await pollUntil(() => receiver.on("/off").length === 1, { what: "the delivery", timeoutMs: 10_000 });
    const rows = await stack.sql<{ traceParent: string | null }[]>`select trace_parent from events`;
    expect([...rows]).toEqual([{ traceParent: null }]);
    expect(receiver.on("/off")[0]!.headers.traceparent).toBeUndefined();
  });
});

/**
 * Sampling is decided where a trace starts, and only kept traces cost anything after that: with
 * TRACE_SAMPLE_RATIO=0 an event without a caller's context, or with a caller's unsampled one,
 * makes no span at any hop and carries no traceparent, while a caller's sampled trace is followed.
 */
describe("sampling (TRACE_SAMPLE_RATIO=0)", () => {
  let stack: TestStack;
  let api: RunningRoles;
  let worker: RunningRoles | undefined;
  let telemetry: Telemetry;
  let receiver: Receiver;
  let otlp: OtlpReceiver;
  let spans: OtlpSpan[] = [];
  const sampled = producerSpan();
  const unsampled = producerSpan();

  beforeAll(async () => {
    receiver = startReceiver();
    otlp = startOtlpReceiver();
    // The Postgres transport, and the worker started only once all three are committed: its first
    // take hands them over as one message, in which the untraced jobs must not join the traced
    // one's trace.
    stack = await createTestStack({ OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, TRACE_SAMPLE_RATIO: "0" }, "postgres");
    telemetry = startTelemetry(stack.config().telemetry, "all");
    api = await startRoles(stack.config(), "api", { telemetry });
    await stack.subscribe(api, `${receiver.url}/sampling`, "trace.sampling");
    const callers = [undefined, `00-${unsampled.traceId}-${unsampled.spanId}-00`, traceparent(sampled)];
    for (const caller of callers) {
      const res = await stack.api(api, "POST", "/events", { type: "trace.sampling", data: {} }, caller ? { traceparent: caller } : {});
      expect(res.status).toBe(202);
    }
    worker = await startRoles(stack.config(), "worker", { telemetry });
    await pollUntil(() => receiver.on("/sampling").length === callers.length, { what: "the deliveries", timeoutMs: 15_000 });
    await worker.stop();
    await api.stop();
    await telemetry.shutdown();
    spans = otlp.spans();
  });

  afterAll(async () => {
    await worker?.stop();
    await api?.stop();
    await telemetry?.shutdown();
    await stack?.stop();
    await receiver?.stop();
    await otlp?.stop();
  });

  test("only the caller's sampled trace has spans, and it has every hop", () => {
    expect(new Set(spans.map((s) => s.traceId))).toEqual(new Set([sampled.traceId]));
    expect(spans.filter((s) => s.name === SPAN.deliverySend)).toHaveLength(1);
    for (const name of hops("postgres")) expect(spans.filter((s) => s.name === name).length, name).toBeGreaterThan(0);
  });

  test("events of unsampled traces store no traceparent and their webhooks carry none", async () => {
    const rows = await stack.sql<{ traceParent: string | null }[]>`select trace_parent from events`;
    expect(rows.map((r) => parseTraceparent(r.traceParent)?.traceId ?? null).sort()).toEqual([null, null, sampled.traceId].sort());
    const sent = receiver.on("/sampling").map((r) => parseTraceparent(r.headers.traceparent)?.traceId ?? null);
    expect(sent.sort()).toEqual([null, null, sampled.traceId].sort());
  });
});

describe("trace context", () => {
  test("a malformed or all-zero traceparent is ignored; a valid one keeps its sampled flag", () => {
    const id = producerSpan();
    expect(parseTraceparent(`00-${id.traceId}-${id.spanId}-01`)).toMatchObject({ ...id, traceFlags: TraceFlags.SAMPLED, isRemote: true });
    expect(parseTraceparent(`00-${id.traceId}-${id.spanId}-00`)?.traceFlags).toBe(TraceFlags.NONE);
    for (const bad of ["", "garbage", `00-${"0".repeat(32)}-${id.spanId}-01`, `00-${id.traceId}-${"0".repeat(16)}-01`, `ff-${id.traceId}-${id.spanId}-01`, `00-${id.traceId}-${id.spanId}-01-extra`])
      expect(parseTraceparent(bad), bad).toBeUndefined();
  });

  test("a job message carries its event's traceparent only when there is one, and a bad one is refused", () => {
    const event = { id: "evt_1", type: "t", createdAt: new Date(0), dataJson: "{}" };
    const job = { id: "job_1", endpointId: "ep_1", attemptCount: 0, expiresAt: null };
    const untraced = jobMessage(job, event);
    expect("traceparent" in untraced).toBe(false);
    expect(jobMessage(job, { ...event, traceParent: null })).toEqual(untraced);
    const tp = traceparent(producerSpan());
    expect(decodeDeliveryMessage(encodeDeliveryMessage([jobMessage(job, { ...event, traceParent: tp })]))?.jobs[0]?.traceparent).toBe(tp);
    expect(decodeDeliveryMessage(encodeDeliveryMessage([{ ...untraced, traceparent: 42 as unknown as string }]))).toBeNull();
  });

  test("TRACE_SAMPLE_RATIO is a share between 0 and 1", () => {
    expect(() => loadConfig({ TRACE_SAMPLE_RATIO: "1.5" })).toThrow(/TRACE_SAMPLE_RATIO/);
    expect(loadConfig({ TRACE_SAMPLE_RATIO: "0.01" }).telemetry.TRACE_SAMPLE_RATIO).toBe(0.01);
  });

  for (const protocol of ["http/protobuf", "http/json"] as const)
    test(`OTEL_EXPORTER_OTLP_PROTOCOL=${protocol}: a span reaches the collector with its ids, parent and attributes`, async () => {
      const otlp = startOtlpReceiver();
      const config = loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, OTEL_EXPORTER_OTLP_PROTOCOL: protocol }).telemetry;
      const telemetry = startTelemetry(config, "test");
      const parent = producerSpan();
      let sent: { traceId: string; spanId: string } | undefined;
      try {
        const span = tracer().startSpan("encoded", { attributes: { "evently.attempt": 3, "evently.event_id": "evt_x" } }, trace.setSpanContext(ROOT_CONTEXT, { ...parent, traceFlags: TraceFlags.SAMPLED, isRemote: true }));
        sent = span.spanContext();
        span.end();
      } finally {
        await telemetry.shutdown();
        await otlp.stop();
      }
      const spans = otlp.spans();
      expect(spans).toMatchObject([
        { name: "encoded", traceId: parent.traceId, spanId: sent.spanId, parentSpanId: parent.spanId, links: [], attributes: { "evently.attempt": 3, "evently.event_id": "evt_x" } },
      ]);
      // Times survive the encoding as epoch milliseconds (64-bit nanoseconds on the wire).
      expect(Math.abs(spans[0]!.startMs - Date.now())).toBeLessThan(60_000);
      expect(spans[0]!.endMs).toBeGreaterThanOrEqual(spans[0]!.startMs);
      // The body was sent in the chosen encoding: only OTLP/JSON is JSON as received.
      const isJson = (() => {
        try {
          return JSON.parse(otlp.exports[0]!) !== null;
        } catch {
          return false;
        }
      })();
      expect(isJson).toBe(protocol === "http/json");
    });

  test("log lines carry the active span's trace_id and span_id, and none without one", () => {
    const id = producerSpan();
    const written: string[] = [];
    const original = process.stdout.write;
    process.stdout.write = ((chunk: string) => (written.push(chunk), true)) as typeof process.stdout.write;
    try {
      const log = createLogger("info");
      const active = trace.setSpanContext(ROOT_CONTEXT, { ...id, traceFlags: TraceFlags.SAMPLED });
      context.with(active, () => log.info("inside"));
      log.info("outside");
    } finally {
      process.stdout.write = original;
    }
    const [inside, outside] = written.map((line) => JSON.parse(line));
    expect(inside).toMatchObject({ msg: "inside", trace_id: id.traceId, span_id: id.spanId });
    expect(outside.trace_id).toBeUndefined();
  });
});
