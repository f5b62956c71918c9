import type { Sql } from "@evently/core/db/client.ts";
import { IdempotencyKeyReusedError, NotFoundError, RateLimitedError, ValidationError, type FieldProblem } from "@evently/core/errors.ts";
import { findEvent, findKeyMismatches, listEvents } from "@evently/core/events/sql.ts";
import { isId } from "@evently/core/ids.ts";
import { withoutSpace } from "@evently/core/json/scan.ts";
import { listJobsForEvents } from "@evently/core/jobs/sql.ts";
import { instruments } from "@evently/core/telemetry/instruments.ts";
import { toPage, type Page } from "../../common/model.ts";
import { invalid } from "../../../http/validate.ts";
import { presentJob } from "../jobs/model.ts";
import type { AcceptedEvent, EventInput, Ingest } from "@evently/core/ingest/index.ts";
import {
  eventDetailJson,
  idempotencyKey as idempotencyKeySchema,
  presentEventSummary,
  type BatchAccepted,
  type EventAccepted,
  type EventListQuery,
  type EventSubmission,
  type EventSummary,
} from "./model.ts";

/** The application an event is ingested for, and its ingest limit (null: none). */
export interface IngestingApp {
  id: string;
  rateLimitPerSecond: number | null;
}

/**
 * The per-application ingest limit, held across API processes (core/ratelimit). Owned here: the
 * limiter takes `count` events of the application's budget for this second, or says when to retry.
 */
export type RateLimitAnswer = { ok: true } | { ok: false; retryAfterSeconds: number };
export interface IngestRateLimit {
  take(appId: string, limitPerSecond: number, count: number): RateLimitAnswer | Promise<RateLimitAnswer>;
}

export interface EventLimits {
  /** Largest `data` of one event, as written; a batch must not smuggle in larger ones. */
  maxPayloadBytes: number;
}

export class EventService {
  constructor(
    private readonly sql: Sql,
    private readonly ingest: Ingest,
    private readonly limits: EventLimits,
    private readonly rateLimit: IngestRateLimit,
  ) {}

  /**
   * Accepts one event. The key may come in the body or the Idempotency-Key header; when both are
   * given they must be equal (422 otherwise), since silently preferring one hides a client bug.
   */
  async accept(app: IngestingApp, input: EventSubmission, headerKey: string | null): Promise<{ event: EventAccepted; replayed: boolean }> {
    const key = resolveIdempotencyKey(input.idempotencyKey, headerKey);
    await this.admit(app, 1);
    const [accepted] = await this.ingest.accept([
      { appId: app.id, type: input.type, dataJson: input.dataJson, idempotencyKey: key, ttlSeconds: input.ttlSeconds ?? null },
    ]);
    if (accepted!.keyReused) throw new IdempotencyKeyReusedError(headerKey === null ? "idempotencyKey" : "Idempotency-Key", key!);
    return { event: present(accepted!), replayed: accepted!.replayed };
  }

  /**
   * Accepts a batch in one transaction: every event is written, or (on any invalid one) none.
   * A key reused for another request is caught before the commit; one reused by a concurrent
   * request in the moment between is caught after it, and then the rest of the batch is committed.
   */
  async acceptBatch(app: IngestingApp, inputs: EventSubmission[]): Promise<BatchAccepted> {
    const problems: FieldProblem[] = [];
    inputs.forEach((input, i) => {
      if (Buffer.byteLength(input.dataJson) > this.limits.maxPayloadBytes)
        problems.push({ field: `events.${i}.data`, message: `exceeds ${this.limits.maxPayloadBytes} bytes` });
    });
    if (problems.length > 0) throw new ValidationError(problems);
    const candidates = inputs.map((input) => ({
      appId: app.id,
      type: input.type,
      dataJson: input.dataJson,
      idempotencyKey: input.idempotencyKey ?? null,
      ttlSeconds: input.ttlSeconds ?? null,
    }));
    const reused = await findReusedKeys(this.sql, candidates);
    await this.admit(app, candidates.length);
    if (reused.length > 0) throw new IdempotencyKeyReusedError(`events.${reused[0]}.idempotencyKey`, candidates[reused[0]!]!.idempotencyKey!);
    const accepted = await this.ingest.accept(candidates);
    const late = accepted.findIndex((a) => a.keyReused);
    if (late >= 0) throw new IdempotencyKeyReusedError(`events.${late}.idempotencyKey`, accepted[late]!.idempotencyKey!);
    return { data: accepted.map((a) => ({ ...present(a), replayed: a.replayed })) };
  }

  /** The event with its data and jobs, as EventDetail's JSON text: the data is given back as stored. */
  async get(appId: string, id: string): Promise<string> {
    const event = isId("event", id) ? await findEvent(this.sql, appId, id) : null;
    if (!event) throw new NotFoundError("event", id);
    const jobs = await listJobsForEvents(this.sql, [id]);
    return eventDetailJson(event, jobs.map(presentJob));
  }

  async list(appId: string, query: EventListQuery): Promise<Page<EventSummary>> {
    const { cursor, limit, ...filter } = query;
    const rows = await listEvents(this.sql, appId, { ...filter, before: cursor, limit: limit + 1 });
    return toPage(rows, limit, presentEventSummary);
  }

  /**
   * Takes `count` events of the application's budget; 429 when it is used up. After validation, so
   * a request refused as invalid costs no budget; a whole batch is admitted or refused.
   */
  private async admit(app: IngestingApp, count: number): Promise<void> {
    if (app.rateLimitPerSecond === null) return;
    // Never admitted, however long the caller waits: a 429 would invite retries that cannot succeed.
    if (count > app.rateLimitPerSecond)
      invalid("events", `has ${count} events, more than this application's rate limit of ${app.rateLimitPerSecond} per second; split the batch`);
    const taken = await this.rateLimit.take(app.id, app.rateLimitPerSecond, count);
    if (taken.ok) return;
    instruments().eventsRateLimited.add(count);
    throw new RateLimitedError(app.rateLimitPerSecond, taken.retryAfterSeconds);
  }
}

/**
 * Indexes of batch events whose idempotency key names another request: one stored with another
 * type or data, or an earlier event of the same batch with the same key and different content.
 * A stored event's data is compared as jsonb (findKeyMismatches: key order, spacing and the
 * spelling of numbers do not count). Within the batch the texts are compared without their spacing;
 * key order and number spelling then still count, which may refuse a true repeat as reused but
 * never takes two payloads for one (comparing parsed values would: 1e400 and 2e400 both read as Infinity).
 */
async function findReusedKeys(sql: Sql, candidates: EventInput[]): Promise<number[]> {
  const reused = new Set<number>();
  const firstByKey = new Map<string, EventInput>();
  candidates.forEach((c, i) => {
    if (c.idempotencyKey === null) return;
    const first = firstByKey.get(c.idempotencyKey);
    if (!first) firstByKey.set(c.idempotencyKey, c);
    else if (first.type !== c.type || !sameText(first.dataJson, c.dataJson)) reused.add(i);
  });
  const keyed = candidates.flatMap((c, i) => (c.idempotencyKey === null ? [] : [{ ...c, id: String(i) }]));
  for (const id of await findKeyMismatches(sql, keyed)) reused.add(Number(id));
  return [...reused].sort((a, b) => a - b);
}

const sameText = (a: string, b: string) => a === b || withoutSpace(a) === withoutSpace(b);

/** A replayed event answers with its original's jobs, so a retried request gets the lost answer. */
function present(a: AcceptedEvent): EventAccepted {
  return {
    id: a.id,
    type: a.type,
    timestamp: a.createdAt.toISOString(),
    idempotencyKey: a.idempotencyKey,
    jobs: a.jobs.map((j) => ({ id: j.id, endpointId: j.endpointId })),
  };
}

function resolveIdempotencyKey(bodyKey: string | undefined, headerKey: string | null): string | null {
  if (headerKey === null) return bodyKey ?? null;
  if (!idempotencyKeySchema.safeParse(headerKey).success)
    invalid("Idempotency-Key", `must be 1 to ${idempotencyKeySchema.maxLength} characters`);
  if (bodyKey !== undefined && bodyKey !== headerKey) invalid("idempotencyKey", "differs from the Idempotency-Key header");
  return headerKey;
}
