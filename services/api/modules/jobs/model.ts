import { z } from "zod";
import type { AttemptRow } from "@evently/core/attempts/sql.ts";
import { ATTEMPT_OUTCOMES, ERROR_CLASSES } from "@evently/core/attempts/sql.ts";
import { JOB_STATUSES, type JobRow } from "@evently/core/jobs/sql.ts";
import { eventTypeFilter, idOf, pageOf, pageQuery, timeRangeQuery, timestamp } from "../../common/model.ts";

export const Job = z
  .object({
    id: z.string(),
    eventId: z.string(),
    endpointId: z.string(),
    eventType: z.string(),
    status: z
      .enum(JOB_STATUSES)
      .describe(
        "pending (accepted, not yet attempted) → delivering → delivered; or scheduled (a retry, or held by flow control) and " +
          "delivering again; or ended undelivered: dead (retries exhausted or a final answer), expired (its TTL passed), " +
          "cancelled (its endpoint was disabled). Ended jobs can be replayed.",
      ),
    endReason: z
      .string()
      .nullable()
      .describe(
        "Why a job ended dead, expired or cancelled: `retries_exhausted`, `max_age`, `final_status` (RETRY_FINAL_STATUSES), " +
          "`gone` (410), `blocked_address`, `invalid_url`, `ttl`, `endpoint_disabled`. Null otherwise.",
      ),
    attemptCount: z.number().int(),
    expiresAt: timestamp.nullable().describe("When the job ends `expired` if not delivered by then; null: no TTL."),
    nextAttemptAt: timestamp.nullable().describe("When a scheduled job is next attempted; for a delivering job, when its claim lapses."),
    lastAttemptAt: timestamp.nullable(),
    deliveredAt: timestamp.nullable(),
    createdAt: timestamp,
    updatedAt: timestamp,
  })
  .meta({ id: "Job" });
export type Job = z.output<typeof Job>;

export const Attempt = z
  .object({
    id: z.string(),
    jobId: z.string(),
    eventId: z.string(),
    endpointId: z.string(),
    attemptNumber: z.number().int(),
    url: z.string().describe("The endpoint's url when sent, a password in it shown as `[redacted]`."),
    requestHeaders: z
      .record(z.string(), z.string())
      .describe("Headers as sent, the signature and credential-like headers (as on the endpoint) shown as `[redacted]`."),
    responseStatus: z.number().int().nullable(),
    responseBody: z.string().nullable().describe("The start of the response body, capped at DELIVERY_MAX_RESPONSE_BYTES."),
    durationMs: z.number().int(),
    errorClass: z
      .enum(ERROR_CLASSES)
      .nullable()
      .describe(
        "Null when delivered (2xx). Otherwise why the attempt failed: `http_status` (a non-2xx answer, see " +
          "responseStatus), `timeout` (no answer within the endpoint's timeout), `connection_refused`, `dns`, `tls`, " +
          "`network` (the request did not get through), `blocked_address` (the host resolves to a private address " +
          "and DELIVERY_ALLOW_PRIVATE_NETWORKS is off), `invalid_url`, or `endpoint_disabled` (recorded by earlier " +
          "versions, which made an attempt of a disabled endpoint's job; now such a job is cancelled without one).",
      ),
    errorDetail: z.string().nullable(),
    createdAt: timestamp,
  })
  .meta({ id: "Attempt" });
export type Attempt = z.output<typeof Attempt>;

export const JobDetail = Job.extend({ attempts: z.array(Attempt) }).meta({ id: "JobDetail" });
export const JobPage = pageOf(Job).meta({ id: "JobPage" });
export const AttemptPage = pageOf(Attempt).meta({ id: "AttemptPage" });

const jobFilters = {
  status: z.enum(JOB_STATUSES).optional().describe("Only jobs in this status."),
  eventType: eventTypeFilter,
};

export const EndpointJobListQuery = pageQuery("job").extend(jobFilters).extend(timeRangeQuery.shape);
export type EndpointJobListQuery = z.output<typeof EndpointJobListQuery>;

export const JobListQuery = EndpointJobListQuery.extend({
  endpointId: idOf("endpoint", "an endpoint").optional(),
});
export type JobListQuery = z.output<typeof JobListQuery>;

export const AttemptListQuery = pageQuery("attempt")
  .extend({
    status: z
      .enum(ATTEMPT_OUTCOMES)
      .optional()
      .describe(
        "Attempts have no status field; this filters on their outcome. `succeeded`: the endpoint answered 2xx " +
          "(`errorClass` is null). `failed`: anything else (`errorClass` says what).",
      ),
    eventType: eventTypeFilter,
  })
  .extend(timeRangeQuery.shape);
export type AttemptListQuery = z.output<typeof AttemptListQuery>;

const iso = (d: Date | null) => (d ? d.toISOString() : null);

export function presentJob(row: JobRow): Job {
  return {
    id: row.id,
    eventId: row.eventId,
    endpointId: row.endpointId,
    eventType: row.eventType,
    status: row.status,
    endReason: row.endReason,
    attemptCount: row.attemptCount,
    expiresAt: iso(row.expiresAt),
    nextAttemptAt: iso(row.nextAttemptAt),
    lastAttemptAt: iso(row.lastAttemptAt),
    deliveredAt: iso(row.deliveredAt),
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
  };
}

export function presentAttempt(row: AttemptRow): Attempt {
  return {
    id: row.id,
    jobId: row.jobId,
    eventId: row.eventId,
    endpointId: row.endpointId,
    attemptNumber: row.attemptNumber,
    url: row.url,
    requestHeaders: row.requestHeaders,
    responseStatus: row.responseStatus,
    responseBody: row.responseBody,
    durationMs: row.durationMs,
    errorClass: row.errorClass,
    errorDetail: row.errorDetail,
    createdAt: row.createdAt.toISOString(),
  };
}
