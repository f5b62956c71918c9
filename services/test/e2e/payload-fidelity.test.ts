import { afterAll, beforeAll, expect, test } from "bun:test";
import { Webhook } from "standardwebhooks";
import { rawMember } from "@evently/core/json/raw-members.ts";
import type { RunningRoles } from "../../runtime.ts";
import { pollUntil } from "../support/poll.ts";
import { startReceiver, type ReceivedRequest, type Receiver } from "../support/receiver.ts";
import { createTestStack, describeEachTransport, type TestStack } from "../support/stack.ts";

/**
 * Receivers get the producer's `data` byte for byte: not what JSON.parse and JSON.stringify make of
 * it, which rounds big integers, writes 1e400 as null, -0 as 0, 1.0 as 1, and redoes escapes and
 * spacing. Each payload below holds all of those, and is followed to the receiver's signed body.
 */
const DATA = `{ "big": 12345678901234567890123, "huge": 1e400, "negZero": -0, "float": 1.0,
\t"e": "\\u00e9", "raw": "é", "deep" : [ -1E-400 , {"s": "}]\\" ,"} ] , "x":1 , "x" :2 }`;
const BATCH_DATA = [`[12345678901234567890123,1e400,-0,1.0,"\\u00e9"]`, `{"n" :  -0.0e-0 ,"big":-98765432109876543210987654321 }`];

describeEachTransport("payload fidelity", (transport) => {
  let stack: TestStack;
  let app: RunningRoles;
  let receiver: Receiver;

  beforeAll(async () => {
    receiver = startReceiver();
    stack = await createTestStack({ RETRY_SCHEDULE: "200ms" }, transport);
    app = await stack.start("all");
  });

  afterAll(async () => {
    await stack.stop();
    await receiver.stop();
  });

  /** Posts a body exactly as given (a string, so nothing re-serialises it on the way out). */
  async function post(path: string, body: string) {
    const res = await stack.api(app, "POST", path, body);
    expect(res.status).toBe(202);
    return res.body;
  }

  /** The delivered body, once its signature is checked: only then is it what was signed. */
  function verified(req: ReceivedRequest, secret: string): string {
    new Webhook(secret).verify(req.body, {
      "webhook-id": req.headers["webhook-id"]!,
      "webhook-timestamp": req.headers["webhook-timestamp"]!,
      "webhook-signature": req.headers["webhook-signature"]!,
    });
    return req.body;
  }

  test("a single event's data is delivered as sent, on the first try and on a retry from the store", async () => {
    const ep = await stack.subscribe(app, `${receiver.url}/single`, "fidelity.one");
    // The first try is the fast path's message; the retry is built from what the events table holds.
    receiver.respond("/single", (_req, nth) => new Response(nth === 1 ? "again" : "ok", { status: nth === 1 ? 500 : 200 }));
    const event = await post("/events", `{"type":"fidelity.one",  "data" : ${DATA}\n}`);
    const got = await pollUntil(() => receiver.on("/single").length === 2 && receiver.on("/single"), { what: "delivery and retry" });
    for (const req of got) {
      const body = verified(req, ep.secret);
      expect(rawMember(body, "data")).toBe(DATA);
      expect(body.startsWith(`{"id":"${event.id}","type":"fidelity.one","timestamp":"`)).toBe(true);
      expect(body.endsWith(`,"data":${DATA}}`)).toBe(true);
    }
  });

  test("each event of a batch is delivered with its own data as sent", async () => {
    const ep = await stack.subscribe(app, `${receiver.url}/batch`, "fidelity.batch");
    const events = BATCH_DATA.map((data, i) => `{"data":${data},\n "type":"fidelity.batch","idempotencyKey":"fidelity-${transport}-${i}"}`);
    const accepted = await post("/events/batch", `{ "events" : [ ${events.join(" , ")} ] }`);
    const got = await pollUntil(() => receiver.on("/batch").length === 2 && receiver.on("/batch"), { what: "batch delivery" });
    const byEvent = new Map(got.map((req) => [JSON.parse(req.body).id as string, verified(req, ep.secret)]));
    accepted.data.forEach((event: { id: string }, i: number) => expect(rawMember(byEvent.get(event.id)!, "data")).toBe(BATCH_DATA[i]));
  });

  test("GET /events/:id answers with the data as stored", async () => {
    const event = await post("/events", `{"type":"fidelity.read","data":${DATA}}`);
    const res = await fetch(`${app.url}/events/${event.id}`, { headers: { authorization: `Bearer ${stack.appKey}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toStartWith("application/json");
    const text = await res.text();
    expect(rawMember(text, "data")).toBe(DATA);
    expect(JSON.parse(text)).toMatchObject({ id: event.id, type: "fidelity.read", jobs: [] });
  });

  test("a repeat differing only in spacing or number spelling is a replay; other digits are another payload", async () => {
    const first = await post("/events", `{"type":"fidelity.key","idempotencyKey":"fid-${transport}","data":{"n":12345678901234567890123,"f":1.0}}`);
    const respaced = await stack.api(app, "POST", "/events", `{"type":"fidelity.key","idempotencyKey":"fid-${transport}","data":{ "f" : 1.00 ,"n":12345678901234567890123 }}`);
    expect([respaced.status, respaced.headers.get("idempotent-replayed"), respaced.body.id]).toEqual([202, "true", first.id]);
    // The same double, but not the same number: JSON.parse could not tell these apart; jsonb can.
    const other = await stack.api(app, "POST", "/events", `{"type":"fidelity.key","idempotencyKey":"fid-${transport}","data":{"n":12345678901234567890124,"f":1.0}}`);
    expect([other.status, other.body.code]).toEqual([422, "idempotency_key_reused"]);
    // Within one batch: the same text in other spacing is one request; another integer is not.
    const key = `fid-batch-${transport}`;
    const same = await stack.api(app, "POST", "/events/batch", `{"events":[{"type":"fidelity.key","idempotencyKey":"${key}","data":[1e400, -0]},{"type":"fidelity.key","idempotencyKey":"${key}","data":[ 1e400,-0 ]}]}`);
    expect([same.status, same.body.data?.map((e: { replayed: boolean }) => e.replayed)]).toEqual([202, [false, true]]);
    const differs = await stack.api(app, "POST", "/events/batch", `{"events":[{"type":"fidelity.key","idempotencyKey":"${key}-2","data":[1e400]},{"type":"fidelity.key","idempotencyKey":"${key}-2","data":[2e400]}]}`);
    expect([differs.status, differs.body.errors?.[0]?.field]).toEqual([422, "events.1.idempotencyKey"]);
  });
});
