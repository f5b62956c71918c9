import { z } from "zod";

/**
 * What travels through RabbitMQ: a batch of jobs, each carrying the exact bytes to POST, so a
 * worker needs no database read for the payload. `attempt` is the job's recorded attempt count
 * when it was published: a worker claims the job only if the count still matches, which makes a
 * job published twice deliver once.
 */
export const jobMessageSchema = z.object({
  jobId: z.string(),
  eventId: z.string(),
  endpointId: z.string(),
  attempt: z.number().int().min(0),
  /** Event creation time, epoch ms: the start of delivery latency. */
  createdAt: z.number(),
  /** Epoch ms after which the job must not be sent (it ends `expired`); null: no TTL. */
  expiresAt: z.number().nullable(),
  /** The JSON envelope `{id, type, timestamp, data}` exactly as it is sent. */
  body: z.string(),
  /**
   * Only on a replayed job's messages (migration 0009): the attempts made before the replay, which
   * its retry policy does not count, and when the replay was asked for (epoch ms), from which the
   * policy's maxAgeSeconds runs. Absent: never replayed.
   */
  attemptBase: z.number().int().min(0).optional(),
  replayedAt: z.number().optional(),
  /**
   * W3C traceparent of the request span that accepted the job's event (events.trace_parent): the
   * worker's attempt span is its child. Absent when that span was not recorded (tracing off).
   */
  traceparent: z.string().optional(),
});

export const deliveryMessageSchema = z.object({
  v: z.literal(1),
  jobs: z.array(jobMessageSchema).min(1),
});

export type JobMessage = z.infer<typeof jobMessageSchema>;
export type DeliveryMessage = z.infer<typeof deliveryMessageSchema>;

export function encodeDeliveryMessage(jobs: JobMessage[]): Buffer {
  return Buffer.from(JSON.stringify({ v: 1, jobs } satisfies DeliveryMessage));
}

/**
 * Returns null for a message that is not ours to deliver (it gets dead-lettered). Checked by hand
 * rather than with the zod schema above: this runs for every job at thousands per second, and the
 * schema pass was a sixth of the worker's CPU.
 */
export function decodeDeliveryMessage(content: Buffer): DeliveryMessage | null {
  let parsed: unknown;
  try {
    parsed = JSON.parse(content.toString("utf8"));
  } catch {
    return null;
  }
  const message = parsed as { v?: unknown; jobs?: unknown };
  if (message?.v !== 1 || !Array.isArray(message.jobs) || message.jobs.length === 0) return null;
  for (const job of message.jobs as Record<string, unknown>[]) {
    if (
      typeof job !== "object" || job === null ||
      typeof job.jobId !== "string" || typeof job.eventId !== "string" || typeof job.endpointId !== "string" ||
      typeof job.body !== "string" || typeof job.createdAt !== "number" ||
      (job.expiresAt !== null && typeof job.expiresAt !== "number") ||
      !Number.isInteger(job.attempt) || (job.attempt as number) < 0 ||
      (job.attemptBase !== undefined && !Number.isInteger(job.attemptBase)) ||
      (job.replayedAt !== undefined && typeof job.replayedAt !== "number") ||
      (job.traceparent !== undefined && typeof job.traceparent !== "string")
    )
      return null;
  }
  return message as DeliveryMessage;
}

/** An event as ingest and the outbox hold it: enough to build what its jobs deliver. */
export interface EventForDelivery {
  id: string;
  type: string;
  createdAt: Date;
  /** The payload, serialised. */
  dataJson: string;
  /** The accepting request span's traceparent (events.trace_parent); null or absent when none was recorded. */
  traceParent?: string | null;
}

/**
 * The one place a job message is built, by ingest right after commit and by whatever takes due jobs
 * from the outbox later. Fan-out passes the event's `body` once for all its jobs.
 */
export function jobMessage(
  job: { id: string; endpointId: string; attemptCount: number; expiresAt: Date | null },
  event: EventForDelivery,
  body = envelopeBody(event.id, event.type, event.createdAt, event.dataJson),
): JobMessage {
  const message: JobMessage = {
    jobId: job.id,
    eventId: event.id,
    endpointId: job.endpointId,
    attempt: job.attemptCount,
    createdAt: event.createdAt.getTime(),
    expiresAt: job.expiresAt?.getTime() ?? null,
    body,
  };
  // Only when there is one, so a message of an untraced event is byte for byte what it was.
  if (event.traceParent) message.traceparent = event.traceParent;
  return message;
}

/**
 * The event type an envelope body names, read from the fixed prefix `envelopeBody` writes (id, then
 * type), without parsing the payload; null for a body of another shape. For span attributes: the
 * job message does not carry the type separately.
 */
export function envelopeType(body: string): string | null {
  const start = body.indexOf(',"type":"');
  if (start < 0) return null;
  let end = start + 9;
  while (end < body.length && body[end] !== '"') end += body[end] === "\\" ? 2 : 1;
  try {
    return JSON.parse(body.slice(start + 8, end + 1)) as string;
  } catch {
    return null;
  }
}

/**
 * The delivered body. `data` is spliced in as already-serialised JSON so payloads are not parsed
 * and re-serialised on the way through.
 */
export function envelopeBody(eventId: string, type: string, createdAt: Date, dataJson: string): string {
  return `{"id":${JSON.stringify(eventId)},"type":${JSON.stringify(type)},"timestamp":"${createdAt.toISOString()}","data":${dataJson}}`;
}
