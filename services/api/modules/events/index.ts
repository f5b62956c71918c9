import type { Config } from "@evently/core/config/index.ts";
import { BODY_MEMORY_FACTOR } from "@evently/core/config/schema.ts";
import { rawArrayMembers, rawMember } from "@evently/core/json/raw-members.ts";
import { defineOperation, JsonText, type ApiOperation } from "../../../http/operation.ts";
import { EventAccepted, BatchAccepted, EventCreate, EventDetail, EventListQuery, EventPage, eventBatch, type EventSubmission } from "./model.ts";
import type { EventService } from "./service.ts";

const tag = "events";
const REPLAYED_HEADER = "idempotent-replayed";

/**
 * The batch body limit: room for MAX_BATCH_EVENTS events of MAX_PAYLOAD_BYTES each, but never more
 * than 32 MiB, which is what one request may make this process buffer and parse, nor more than fits
 * MAX_BODY_BYTES_IN_FLIGHT (which counts BODY_MEMORY_FACTOR × a body's size): a batch above that
 * could never be admitted, and would be refused with a 503 that no retry cures; capped, it gets a
 * 413 that says to split it. Each event's data is still held to MAX_PAYLOAD_BYTES on its own.
 */
export const BATCH_BODY_CAP_BYTES = 32 * 1024 * 1024;
export function batchBodyLimit(http: Config["http"]): number {
  return Math.min(
    http.MAX_PAYLOAD_BYTES * http.MAX_BATCH_EVENTS,
    BATCH_BODY_CAP_BYTES,
    Math.floor(http.MAX_BODY_BYTES_IN_FLIGHT / BODY_MEMORY_FACTOR),
  );
}

export function eventOperations(events: EventService, http: Config["http"]): ApiOperation[] {
  return [
    defineOperation({
      method: "POST",
      path: "/events",
      operationId: "createEvent",
      summary: "Accept an event and create a job for each endpoint routed to its type",
      description:
        "Answers once the event and its jobs are committed. With an idempotency key seen before, answers " +
        "with the original event (and its jobs) and the header `idempotent-replayed: true`; nothing is written. " +
        "The same key with another type or data is refused with 422 `idempotency_key_reused`.",
      tag,
      body: EventCreate,
      rawBody: true,
      headers: [{ name: "Idempotency-Key", description: "Same as the `idempotencyKey` field." }],
      status: 202,
      response: EventAccepted,
      responseHeaders: [{ name: REPLAYED_HEADER, description: "`true` when the idempotency key was seen before." }],
      errors: [429, 503],
      handle: async ({ app, body, rawBody, headers, setHeader }) => {
        const submission = withDataAsWritten(body, rawMember(rawBody!, "data"));
        const { event, replayed } = await events.accept(app, submission, headers.get("idempotency-key"));
        if (replayed) setHeader(REPLAYED_HEADER, "true");
        return event;
      },
    }),
    defineOperation({
      method: "POST",
      path: "/events/batch",
      operationId: "createEvents",
      summary: "Accept up to MAX_BATCH_EVENTS events in one transaction",
      description: "The Idempotency-Key header does not apply; give each event its own `idempotencyKey`.",
      tag,
      body: eventBatch(http.MAX_BATCH_EVENTS),
      rawBody: true,
      bodyLimitBytes: batchBodyLimit(http),
      status: 202,
      response: BatchAccepted,
      errors: [429, 503],
      handle: ({ app, body, rawBody }) => {
        const texts = rawArrayMembers(rawBody!, "events", "data") ?? [];
        return events.acceptBatch(app, body.events.map((input, i) => withDataAsWritten(input, texts[i])));
      },
    }),
    defineOperation({
      method: "GET",
      path: "/events",
      operationId: "listEvents",
      summary: "List events, newest first (without their data)",
      tag,
      query: EventListQuery,
      status: 200,
      response: EventPage,
      handle: ({ app, query }) => events.list(app.id, query),
    }),
    defineOperation({
      method: "GET",
      path: "/events/:id",
      operationId: "getEvent",
      summary: "Get an event with its data and its jobs",
      tag,
      status: 200,
      response: EventDetail,
      handle: async ({ app, params }) => new JsonText(await events.get(app.id, params.id!)),
    }),
  ];
}

/**
 * The event with the text of its data as the producer wrote it (rawBody: true), which is what is
 * stored and delivered. The schema has passed the body, so the scanner always finds that text.
 */
function withDataAsWritten(input: EventCreate, dataJson: string | undefined): EventSubmission {
  if (dataJson === undefined) throw new Error("the text of an event's data was not found in its body");
  return { ...input, dataJson };
}
