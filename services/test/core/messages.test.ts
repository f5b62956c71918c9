import { expect, test } from "bun:test";
import { decodeDeliveryMessage, deliveryMessageSchema, encodeDeliveryMessage, envelopeBody, envelopeType } from "../../core/queue/messages.ts";

const job = { jobId: "job_1", eventId: "evt_1", endpointId: "ep_1", attempt: 0, createdAt: 1, expiresAt: null, body: "{}" };

test("messages round-trip", () => {
  const decoded = decodeDeliveryMessage(encodeDeliveryMessage([job, { ...job, jobId: "job_2", attempt: 3 }]));
  expect(decoded).toEqual({ v: 1, jobs: [job, { ...job, jobId: "job_2", attempt: 3 }] });
  expect(deliveryMessageSchema.safeParse(decoded).success).toBe(true);
});

test("anything else is refused, as the schema would", () => {
  const bad: unknown[] = [
    "not json",
    { v: 2, jobs: [job] },
    { v: 1, jobs: [] },
    { v: 1, jobs: [{ ...job, attempt: -1 }] },
    { v: 1, jobs: [{ ...job, attempt: 1.5 }] },
    { v: 1, jobs: [{ ...job, body: { a: 1 } }] },
    { v: 1, jobs: [{ ...job, jobId: undefined }] },
    { v: 1, jobs: [null] },
    { v: 1 },
  ];
  for (const value of bad) {
    const content = Buffer.from(typeof value === "string" ? value : JSON.stringify(value));
    expect([value, decodeDeliveryMessage(content)]).toEqual([value, null]);
    if (typeof value !== "string") expect(deliveryMessageSchema.safeParse(value).success).toBe(false);
  }
});

test("the envelope splices the stored payload in verbatim", () => {
  const body = envelopeBody("evt_1", "order.paid", new Date("2026-01-01T00:00:00Z"), '{"a": [1, 2]}');
  expect(body).toBe('{"id":"evt_1","type":"order.paid","timestamp":"2026-01-01T00:00:00.000Z","data":{"a": [1, 2]}}');
  expect(JSON.parse(body).data).toEqual({ a: [1, 2] });
});

test("the event type is read back from an envelope without parsing its payload", () => {
  const at = new Date(0);
  expect(envelopeType(envelopeBody("evt_1", "order.paid", at, '{"type":"not this"}'))).toBe("order.paid");
  expect(envelopeType(envelopeBody("evt_1", 'odd "quoted" \\ type', at, "{}"))).toBe('odd "quoted" \\ type');
  expect(envelopeType("{}")).toBeNull();
});
