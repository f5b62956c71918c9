import { defineOperation, type ApiOperation } from "../../../http/operation.ts";
import { AttemptListQuery, AttemptPage, EndpointJobListQuery, Job, JobDetail, JobListQuery, JobPage } from "./model.ts";
import type { JobService } from "./service.ts";

const tag = "jobs";

/** Jobs (one event for one endpoint) and their delivery attempts: the audit trail. */
export function jobOperations(jobs: JobService): ApiOperation[] {
  return [
    defineOperation({
      method: "GET",
      path: "/jobs",
      operationId: "listJobs",
      summary: "List jobs, newest first",
      tag,
      query: JobListQuery,
      status: 200,
      response: JobPage,
      handle: ({ app, query }) => jobs.list(app.id, query),
    }),
    defineOperation({
      method: "GET",
      path: "/jobs/:id",
      operationId: "getJob",
      summary: "Get a job with every attempt made",
      tag,
      status: 200,
      response: JobDetail,
      handle: ({ app, params }) => jobs.get(app.id, params.id!),
    }),
    defineOperation({
      method: "POST",
      path: "/jobs/:id/replay",
      operationId: "replayJob",
      summary: "Replay an ended job (delivered, dead, expired or cancelled), now",
      description:
        "The job becomes `scheduled`, due at once, and goes through the normal delivery path. Its history stays: new " +
        "attempts continue its attempt numbers. It gets its retry policy afresh (attempts and maxAgeSeconds count from the " +
        "replay); endReason and expiresAt are cleared. A job that has not ended is a 409.",
      tag,
      status: 202,
      response: Job,
      errors: [409],
      handle: ({ app, params }) => jobs.replay(app.id, params.id!),
    }),
    defineOperation({
      method: "POST",
      path: "/jobs/:id/retry",
      operationId: "retryJob",
      summary: "Deprecated: POST /jobs/{id}/replay, for dead jobs only",
      description:
        "Deprecated alias kept for existing clients: the same as POST /jobs/{id}/replay, but only a `dead` job is " +
        "accepted (anything else is a 409, as before). Use /replay, which also replays expired, cancelled and delivered jobs.",
      tag,
      status: 202,
      response: Job,
      errors: [409],
      handle: ({ app, params }) => jobs.replay(app.id, params.id!, ["dead"]),
    }),
    defineOperation({
      method: "GET",
      path: "/endpoints/:id/jobs",
      operationId: "listEndpointJobs",
      summary: "List an endpoint's jobs, newest first",
      tag,
      query: EndpointJobListQuery,
      status: 200,
      response: JobPage,
      handle: ({ app, params, query }) => jobs.listForEndpoint(app.id, params.id!, query),
    }),
    defineOperation({
      method: "GET",
      path: "/endpoints/:id/attempts",
      operationId: "listEndpointAttempts",
      summary: "List delivery attempts to an endpoint, newest first",
      tag,
      query: AttemptListQuery,
      status: 200,
      response: AttemptPage,
      handle: ({ app, params, query }) => jobs.listAttemptsForEndpoint(app.id, params.id!, query),
    }),
  ];
}
