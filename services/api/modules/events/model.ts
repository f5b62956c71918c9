import { z } from "zod";
import type { StoredEvent, StoredEventSummary } from "@evently/core/events/sql.ts";
import { eventType, eventTypeFilter, pageOf, pageQuery, timeRangeQuery, timestamp } from "../../common/model.ts";
import { Job } from "../jobs/model.ts";

export const IDEMPOTENCY_KEY_MAX_LENGTH = 255;

export const idempotencyKey = z
  .string()
  .min(1)
  .max(IDEMPOTENCY_KEY_MAX_LENGTH)
  .describe(
    "Repeating a request with the same key returns the original event and creates nothing. " +
      "May instead be sent as the Idempotency-Key header; when both are given they must be equal.",
  );

// Svix requires an object; arrays are allowed too, as some producers send lists. Primitives are
// refused: a bare string or number is almost always a producer bug, not a payload.
// A check rather than z.record/z.array: those rebuild the value, which costs a copy of every payload
// and silently drops a `__proto__` key; the payload must reach the database exactly as sent.
const data = z
  .custom<Record<string, unknown> | unknown[]>((value) => typeof value === "object" && value !== null, {
    error: (issue) => (issue.input === undefined ? "required" : "must be a JSON object or array"),
  })
  .meta({ type: ["object", "array"] });

export const EventCreate = z
  .strictObject({
    type: eventType,
    data: data.describe("The payload, delivered as `data` in the webhook body."),
    idempotencyKey: idempotencyKey.optional(),
    ttlSeconds: z
      .number()
      .int()
      .min(1)
      .max(2_592_000)
      .optional()
      .describe(
        "Jobs of this event not delivered within this many seconds end `expired` (recorded, never sent late); " +
          "replaces the endpoint's ttlSeconds. Absent: the endpoint's, if any.",
      ),
  })
  .meta({ id: "EventCreate" });
export type EventCreate = z.output<typeof EventCreate>;

/**
 * An event to accept, with its data as the producer wrote it (read from the body's text): that text
 * is what is stored and delivered, since JSON.stringify of the parsed `data` is another text
 * (12345678901234567890123 rounded, 1e400 as null, -0 as 0, 1.0 as 1, escapes and spacing redone).
 */
export type EventSubmission = EventCreate & { dataJson: string };

/** The batch schema depends on MAX_BATCH_EVENTS, so it is built from the config. */
export const eventBatch = (maxEvents: number) =>
  z
    .strictObject({
      events: z
        .array(EventCreate)
        .min(1)
        .max(maxEvents)
        .describe("Committed together: if one is invalid, none is written."),
    })
    .meta({ id: "EventBatch" });

const JobRef = z.object({ id: z.string(), endpointId: z.string() });

export const EventAccepted = z
  .object({
    id: z.string(),
    type: z.string(),
    timestamp,
    idempotencyKey: z.string().nullable(),
    jobs: z.array(JobRef).describe("One job per endpoint routed to this event type."),
  })
  .meta({ id: "EventAccepted" });
export type EventAccepted = z.output<typeof EventAccepted>;

export const BatchAccepted = z
  .object({
    data: z.array(
      EventAccepted.extend({
        replayed: z
          .boolean()
          .describe(
            "True when this item's idempotency key was seen before: the item is the original event with the jobs " +
              "it created then, and nothing was written. False for a newly accepted event.",
          ),
      }),
    ),
  })
  .meta({ id: "BatchAccepted" });
export type BatchAccepted = z.output<typeof BatchAccepted>;

export const EventSummary = z
  .object({ id: z.string(), type: z.string(), timestamp, idempotencyKey: z.string().nullable() })
  .meta({ id: "EventSummary" });
export type EventSummary = z.output<typeof EventSummary>;

export const EventDetail = EventSummary.extend({
  data: z.unknown().describe("The payload as accepted."),
  jobs: z.array(Job),
}).meta({ id: "EventDetail" });
export type EventDetail = z.output<typeof EventDetail>;

export const EventPage = pageOf(EventSummary).meta({ id: "EventPage" });

export const EventListQuery = pageQuery("event").extend({ eventType: eventTypeFilter }).extend(timeRangeQuery.shape);
export type EventListQuery = z.output<typeof EventListQuery>;

export function presentEventSummary(row: StoredEventSummary): EventSummary {
  return { id: row.id, type: row.type, timestamp: row.createdAt.toISOString(), idempotencyKey: row.idempotencyKey };
}

/** An EventDetail as JSON text, its data spliced in as stored (see EventSubmission for why not re-serialised). */
export function eventDetailJson(row: StoredEvent, jobs: Job[]): string {
  const summary = JSON.stringify(presentEventSummary(row));
  return `${summary.slice(0, -1)},"data":${row.dataJson},"jobs":${JSON.stringify(jobs)}}`;
}
