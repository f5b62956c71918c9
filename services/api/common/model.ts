import { z } from "zod";
import { EVENT_TYPE_MAX_LENGTH, EVENT_TYPE_PATTERN_REGEX, EVENT_TYPE_REGEX } from "@evently/core/event-types.ts";
import { isId, type IdKind } from "@evently/core/ids.ts";

/**
 * Schemas shared by several modules. Input is strict: request body schemas are z.strictObject, at
 * every level that has declared fields (each event of a batch too), so a field the operation does
 * not take is a 422 naming it (`events.2.foo`) and nothing is written; a misspelt optional field
 * would otherwise be silently dropped, and a client sending `id` or `secret` would believe it had
 * set them. Free-form values stay free: an event's `data`, an endpoint's `headers` and `metadata`.
 * Query strings are strict too, made so when mounted (http/query.ts).
 */

// What event types and patterns are is defined in core (event-types.ts); these schemas check it.
// No .min(1): the regex already refuses "", and one problem should produce one message.
export const eventType = z
  .string()
  .max(EVENT_TYPE_MAX_LENGTH)
  .regex(EVENT_TYPE_REGEX, "must be dot-separated segments of letters, digits, '_', ':' or '-', like order.paid")
  .describe("Event type, like `order.paid`.");

export const eventTypePattern = z
  .string()
  .max(EVENT_TYPE_MAX_LENGTH)
  .regex(
    EVENT_TYPE_PATTERN_REGEX,
    "must be an event type (order.paid), a prefix ending in .* (order.*) or * alone",
  )
  .describe("Event type pattern: exact (`order.paid`), every type under a prefix (`order.*`) or all (`*`).");

/** The `eventType` list filter, one name on every list that has it (events, jobs, attempts). */
export const eventTypeFilter = eventTypePattern
  .optional()
  .describe(
    "Only items whose event type matches this pattern: exact (`order.paid`), every type under a prefix " +
      "(`order.*`) or all (`*`).",
  );

/** An id of `kind` in a body or query field; a malformed one is a 422 naming the field. */
export const idOf = (kind: IdKind, what: string) =>
  z.string().refine((v) => isId(kind, v), `must be ${what} id`);

const MAX_METADATA_KEYS = 50;
export const metadata = z
  .record(z.string().max(100), z.string().max(1000))
  .refine((value) => Object.keys(value).length <= MAX_METADATA_KEYS, `at most ${MAX_METADATA_KEYS} keys`)
  .describe("Your own string key-value pairs; stored and returned, never sent.");

/** A stored timestamp as the API renders it. */
export const timestamp = z.iso.datetime();

export const PAGE_LIMIT_DEFAULT = 50;
export const PAGE_LIMIT_MAX = 250;

/**
 * Cursor pagination: lists run newest first; `cursor` is the previous page's `nextCursor` (the id
 * of its last item, ids being time-sortable).
 */
export const pageQuery = (kind: IdKind) =>
  z.object({
    limit: z.coerce
      .number()
      .int()
      .min(1)
      .max(PAGE_LIMIT_MAX)
      .default(PAGE_LIMIT_DEFAULT)
      .describe(`Items per page, 1 to ${PAGE_LIMIT_MAX}; ${PAGE_LIMIT_DEFAULT} when absent.`),
    cursor: idOf(kind, `a ${kind}`).optional().describe("`nextCursor` of the previous page."),
  });

// Postgres timestamps are rendered and parsed with four-digit years; an instant outside them (year
// 0000, or past 9999 once the offset is applied, like 9999-12-31T23:59:59-05:00) would fail the query.
const EARLIEST_TIME = Date.parse("0001-01-01T00:00:00Z");
const LATEST_TIME = Date.parse("9999-12-31T23:59:59.999Z");

/** An ISO 8601 time with a zone that Postgres can hold, as a Date. */
export const storableTime = z.iso
  // abort: a value that is not a time at all gets one message, not a second about its range.
  .datetime({ offset: true, abort: true })
  .refine((v) => {
    const t = Date.parse(v);
    return t >= EARLIEST_TIME && t <= LATEST_TIME;
  }, "must be between 0001-01-01 and 9999-12-31 (UTC)")
  .transform((v) => new Date(v));

const timeBound = (description: string) => storableTime.optional().describe(description);

/** `since` (inclusive) and `until` (exclusive) bound created_at. */
export const timeRangeQuery = z.object({
  since: timeBound("Only items created at or after this ISO 8601 time (0001-01-01 to 9999-12-31)."),
  until: timeBound("Only items created before this ISO 8601 time (0001-01-01 to 9999-12-31)."),
});

export const pageOf = <T extends z.ZodType>(item: T) =>
  z.object({
    data: z.array(item),
    nextCursor: z.string().nullable().describe("Pass as `cursor` for the next page; null on the last page."),
  });

export interface Page<T> {
  data: T[];
  nextCursor: string | null;
}

/**
 * Turns rows fetched with `limit + 1` into a page: the extra row only tells that another page exists.
 */
export function toPage<Row extends { id: string }, T>(rows: Row[], limit: number, present: (row: Row) => T): Page<T> {
  const more = rows.length > limit;
  const items = more ? rows.slice(0, limit) : rows;
  return { data: items.map(present), nextCursor: more ? items[items.length - 1]!.id : null };
}

/** The body of every error response (rendered by services/http/errors.ts). */
export const ErrorBody = z
  .object({
    code: z.string().describe("Stable machine-readable code, like `validation_failed` or `not_found`."),
    detail: z.string().describe("Human-readable explanation."),
    errors: z
      .array(z.object({ field: z.string(), message: z.string() }))
      .optional()
      .describe("Every problem found, on 422 `validation_failed`; `field` is a dotted path like `events.3.type`."),
  })
  .meta({ id: "Error" });
