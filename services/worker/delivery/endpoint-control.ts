import type { Sql } from "@evently/core/db/client.ts";
import { disableEnabledEndpoint } from "@evently/core/endpoints/sql.ts";
import { insertEventsWithJobs, type NewEventRow } from "@evently/core/events/sql.ts";
import { readHealth } from "@evently/core/health/sql.ts";
import { newId } from "@evently/core/ids.ts";
import { handOn, type JobHandoff } from "@evently/core/ingest/index.ts";
import type { Logger } from "@evently/core/log.ts";
import type { DeliveryTarget } from "../endpoint-cache.ts";
import type { EndpointControl } from "./pipeline.ts";

/** The type of the system event a disable by the workers (410 Gone, sustained failure) emits. */
export const ENDPOINT_DISABLED_EVENT = "endpoint.disabled";

/** The `data` of an `endpoint.disabled` event. */
export interface EndpointDisabledData {
  endpointId: string;
  /** As the API shows it: a password in it reads as [redacted]. */
  url: string;
  reason: string;
  /** When the endpoint's current run of failures began; null if none was recorded (a 410 out of the blue). */
  failingSince: string | null;
  disabledAt: string;
}

/**
 * What the pipeline and the circuit breaker may do to an endpoint on their own: disable it, and say
 * so with an `endpoint.disabled` event in the endpoint's application, so an operator's own endpoint
 * subscribed to `endpoint.*` hears of it like of any event. The status change and the event (with
 * its jobs and outbox entries) commit in one transaction, through insertEventsWithJobs as all
 * ingest does: either both happen or neither. The disabled endpoint itself gets no job of the
 * event (fan-out skips disabled endpoints, and it is disabled first in the same transaction), so a
 * subscriber to `endpoint.*` that keeps failing is disabled once, not in a loop.
 * Only the disable that finds the endpoint enabled emits: of several workers hitting the same 410,
 * or an endpoint an operator disabled already, one event or none.
 */
export class EndpointDisabler implements EndpointControl {
  constructor(
    private readonly sql: Sql,
    /** Hands the event's jobs on after commit, as ingest does; the outbox has them either way. */
    private readonly handoff: JobHandoff,
    private readonly log: Logger,
  ) {}

  async disable(target: DeliveryTarget, reason: string): Promise<void> {
    const committed = await this.sql.begin(async (tx) => {
      const disabledAt = await disableEnabledEndpoint(tx, target.appId, target.id, reason);
      if (!disabledAt) return null;
      const [health] = await readHealth(tx, [target.id]);
      const data: EndpointDisabledData = {
        endpointId: target.id,
        url: target.recordedUrl,
        reason,
        failingSince: health?.failingSince?.toISOString() ?? null,
        disabledAt: disabledAt.toISOString(),
      };
      const row: NewEventRow = {
        id: newId("event"),
        appId: target.appId,
        type: ENDPOINT_DISABLED_EVENT,
        dataJson: JSON.stringify(data),
        idempotencyKey: null,
        createdAt: new Date(),
        ttlSeconds: null,
      };
      const { jobs } = await insertEventsWithJobs(tx, [row], this.handoff.publishGraceMs, this.handoff.commitNotify);
      return { row, jobs };
    });
    if (!committed) return;
    const { row, jobs } = committed;
    this.log.warn("endpoint disabled", { endpointId: target.id, reason, eventId: row.id, notified: jobs.length });
    handOn(this.handoff, [{ row, jobs }]);
  }
}
