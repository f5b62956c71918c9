import type { Sql } from "@evently/core/db/client.ts";
import { NotFoundError, ValidationError, type FieldProblem } from "@evently/core/errors.ts";
import { findEvent, listEvents } from "@evently/core/events/sql.ts";
import { isId } from "@evently/core/ids.ts";
import { listJobsForEvents } from "@evently/core/jobs/sql.ts";
import { toPage, type Page } from "../../common/model.ts";
import { invalid } from "../../routing/validate.ts";
import { presentJob } from "../jobs/model.ts";
import type { AcceptedEvent, GroupCommitter } from "./group-commit.ts";
import {
  idempotencyKey as idempotencyKeySchema,
  presentEventSummary,
  type BatchAccepted,
  type EventAccepted,
  type EventCreate,
  type EventDetail,
  type EventListQuery,
  type EventSummary,
} from "./model.ts";

export interface EventLimits {
  /** Largest `data` of one event, serialised; a batch must not smuggle in larger ones. */
  maxPayloadBytes: number;
}

export class EventService {
  constructor(
    private readonly sql: Sql,
    private readonly ingest: GroupCommitter,
    private readonly limits: EventLimits,
  ) {}

  /**
   * Accepts one event. The key may come in the body or the Idempotency-Key header; when both are
   * given they must be equal (422 otherwise), since silently preferring one hides a client bug.
   */
  async publish(input: EventCreate, headerKey: string | null): Promise<{ event: EventAccepted; replayed: boolean }> {
    const key = resolveIdempotencyKey(input.idempotencyKey, headerKey);
    const [accepted] = await this.ingest.submit([{ type: input.type, dataJson: JSON.stringify(input.data), idempotencyKey: key }]);
    const [event] = await this.present([accepted!]);
    return { event: event!, replayed: accepted!.replayed };
  }

  /** Accepts a batch in one transaction: every event is written, or (on any invalid one) none. */
  async publishBatch(inputs: EventCreate[]): Promise<BatchAccepted> {
    const encoded = inputs.map((input) => JSON.stringify(input.data));
    const problems: FieldProblem[] = [];
    encoded.forEach((json, i) => {
      if (Buffer.byteLength(json) > this.limits.maxPayloadBytes)
        problems.push({ field: `events.${i}.data`, message: `exceeds ${this.limits.maxPayloadBytes} bytes` });
    });
    if (problems.length > 0) throw new ValidationError(problems);
    const accepted = await this.ingest.submit(
      inputs.map((input, i) => ({ type: input.type, dataJson: encoded[i]!, idempotencyKey: input.idempotencyKey ?? null })),
    );
    const events = await this.present(accepted);
    return { data: events.map((event, i) => ({ ...event, replayed: accepted[i]!.replayed })) };
  }

  async get(id: string): Promise<EventDetail> {
    const event = isId("event", id) ? await findEvent(this.sql, id) : null;
    if (!event) throw new NotFoundError("event", id);
    const jobs = await listJobsForEvents(this.sql, [id]);
    return { ...presentEventSummary(event), data: JSON.parse(event.dataJson), jobs: jobs.map(presentJob) };
  }

  async list(query: EventListQuery): Promise<Page<EventSummary>> {
    const { cursor, limit, ...filter } = query;
    const rows = await listEvents(this.sql, { ...filter, before: cursor, limit: limit + 1 });
    return toPage(rows, limit, presentEventSummary);
  }

  /**
   * A replayed event answers with the jobs its first request created, so a retried request gets
   * the response the lost one would have had.
   */
  private async present(accepted: AcceptedEvent[]): Promise<EventAccepted[]> {
    const replayedIds = accepted.filter((a) => a.replayed).map((a) => a.id);
    const earlierJobs = new Map<string, { id: string; endpointId: string }[]>();
    for (const job of await listJobsForEvents(this.sql, replayedIds)) {
      const list = earlierJobs.get(job.eventId) ?? [];
      list.push(job);
      earlierJobs.set(job.eventId, list);
    }
    return accepted.map((a) => ({
      id: a.id,
      type: a.type,
      timestamp: a.createdAt.toISOString(),
      idempotencyKey: a.idempotencyKey,
      jobs: (a.replayed ? (earlierJobs.get(a.id) ?? []) : a.jobs).map((j) => ({ id: j.id, endpointId: j.endpointId })),
    }));
  }
}

function resolveIdempotencyKey(bodyKey: string | undefined, headerKey: string | null): string | null {
  if (headerKey === null) return bodyKey ?? null;
  if (!idempotencyKeySchema.safeParse(headerKey).success)
    invalid("Idempotency-Key", `must be 1 to ${idempotencyKeySchema.maxLength} characters`);
  if (bodyKey !== undefined && bodyKey !== headerKey) invalid("idempotencyKey", "differs from the Idempotency-Key header");
  return headerKey;
}
