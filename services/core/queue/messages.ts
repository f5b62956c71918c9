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
  /** The JSON envelope `{id, type, timestamp, data}` exactly as it is sent. */
  body: z.string(),
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

/** Returns null for a message that is not ours to deliver (it gets dead-lettered). */
export function decodeDeliveryMessage(content: Buffer): DeliveryMessage | null {
  try {
    const parsed = deliveryMessageSchema.safeParse(JSON.parse(content.toString("utf8")));
    return parsed.success ? parsed.data : null;
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
