import { z } from "zod";
import { END_STATES } from "@evently/core/jobs/sql.ts";
import { OPERATION_KINDS, OPERATION_STATES, REPLAY_SCOPES, UNDELIVERED_STATES } from "@evently/core/operations/params.ts";
import type { OperationRow } from "@evently/core/operations/sql.ts";
import { pageOf, pageQuery, storableTime, timestamp } from "../../common/model.ts";

export const Operation = z
  .object({
    id: z.string(),
    kind: z
      .enum(OPERATION_KINDS)
      .describe("`replay_event` (POST /events/{id}/replay) or `recover_endpoint` (POST /endpoints/{id}/recover)."),
    state: z
      .enum(OPERATION_STATES)
      .describe(
        "queued → running → completed; or cancelled (POST /operations/{id}/cancel; jobs already replayed stay replayed), " +
          "or failed (see error).",
      ),
    params: z
      .record(z.string(), z.unknown())
      .describe("What it works on: `{eventId, only}` or `{endpointId, since, until, statuses}` (until fixed when it was made)."),
    total: z
      .number()
      .int()
      .nullable()
      .describe("Jobs to replay, counted when it starts (null while queued); once finished, exactly done + failed."),
    done: z.number().int().describe("Jobs replayed so far: each is due again and delivered through the normal path."),
    failed: z.number().int().describe("Jobs not replayed because their endpoint is disabled (they would only be cancelled again)."),
    error: z.string().nullable().describe("Why a failed operation failed; null otherwise."),
    createdAt: timestamp,
    updatedAt: timestamp,
    finishedAt: timestamp.nullable(),
  })
  .meta({ id: "Operation" });
export type Operation = z.output<typeof Operation>;

export const OperationPage = pageOf(Operation).meta({ id: "OperationPage" });

export const OperationListQuery = pageQuery("operation").extend({
  kind: z.enum(OPERATION_KINDS).optional().describe("Only operations of this kind."),
  state: z.enum(OPERATION_STATES).optional().describe("Only operations in this state."),
});
export type OperationListQuery = z.output<typeof OperationListQuery>;

export const EventReplay = z
  .strictObject({
    only: z
      .enum(REPLAY_SCOPES)
      .default("undelivered")
      .describe(
        "`undelivered` (default): the event's jobs that ended dead, expired or cancelled. `all`: every ended job, " +
          "delivered ones too (their receivers get the event again, with the same webhook-id). Live jobs are never touched.",
      ),
  })
  .meta({ id: "EventReplay" });
export type EventReplay = z.output<typeof EventReplay>;

export const EndpointRecover = z
  .strictObject({
    since: storableTime.describe("Recover jobs created at or after this ISO 8601 time."),
    until: storableTime
      .optional()
      .describe("…and before this one; default now (fixed when the operation is made, so later jobs are not included)."),
    statuses: z
      .array(z.enum(END_STATES))
      .min(1)
      .max(END_STATES.length)
      .default([...UNDELIVERED_STATES])
      .describe("End states to recover; default dead, expired and cancelled. `delivered` sends delivered jobs again."),
  })
  .meta({ id: "EndpointRecover" });
export type EndpointRecover = z.output<typeof EndpointRecover>;

export function presentOperation(row: OperationRow): Operation {
  return {
    id: row.id,
    kind: row.kind,
    state: row.state,
    params: row.params as Record<string, unknown>,
    total: row.total,
    done: row.done,
    failed: row.failed,
    error: row.error,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
    finishedAt: row.finishedAt?.toISOString() ?? null,
  };
}
