import { z } from "zod";
import { END_STATES, type EndState } from "../jobs/sql.ts";

/**
 * Operations (migration 0008's `operations` table): bulk replays worked through in the background
 * by runner.ts. What each kind works on is stored as `params` (jsonb) and read back through these
 * schemas, so the API that writes them and the runner that reads them agree on one shape.
 */
export const OPERATION_KINDS = ["replay_event", "recover_endpoint"] as const;
export type OperationKind = (typeof OPERATION_KINDS)[number];
export const OPERATION_STATES = ["queued", "running", "completed", "cancelled", "failed"] as const;
export type OperationState = (typeof OPERATION_STATES)[number];
/** States an operation does not leave. */
export const FINISHED_STATES = ["completed", "cancelled", "failed"] as const satisfies readonly OperationState[];

/** `undelivered`: the event's jobs that ended without a delivery; `all`: every ended job, delivered ones too. */
export const REPLAY_SCOPES = ["undelivered", "all"] as const;
export type ReplayScope = (typeof REPLAY_SCOPES)[number];
export const UNDELIVERED_STATES = ["dead", "expired", "cancelled"] as const satisfies readonly EndState[];

export const ReplayEventParams = z.object({
  eventId: z.string(),
  only: z.enum(REPLAY_SCOPES),
});
export type ReplayEventParams = z.output<typeof ReplayEventParams>;

export const RecoverEndpointParams = z.object({
  endpointId: z.string(),
  /** ISO 8601; jobs created at or after. */
  since: z.iso.datetime(),
  /** ISO 8601; jobs created before. Fixed when the operation is made, so the window does not grow while it runs. */
  until: z.iso.datetime(),
  statuses: z.array(z.enum(END_STATES)).min(1),
});
export type RecoverEndpointParams = z.output<typeof RecoverEndpointParams>;

/** Which jobs an operation replays, as the runner's query takes it. */
export type Selection =
  | { kind: "replay_event"; eventId: string; statuses: readonly EndState[] }
  | { kind: "recover_endpoint"; endpointId: string; since: Date; until: Date; statuses: readonly EndState[] };

/** The selection an operation's params describe; throws (a zod error) on params that are not of its kind. */
export function selectionOf(kind: OperationKind, params: unknown): Selection {
  if (kind === "replay_event") {
    const p = ReplayEventParams.parse(params);
    return { kind, eventId: p.eventId, statuses: p.only === "all" ? END_STATES : UNDELIVERED_STATES };
  }
  const p = RecoverEndpointParams.parse(params);
  return { kind, endpointId: p.endpointId, since: new Date(p.since), until: new Date(p.until), statuses: p.statuses };
}
