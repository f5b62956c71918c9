import { listAttempts, listAttemptsForJob } from "@evently/core/attempts/sql.ts";
import type { Sql } from "@evently/core/db/client.ts";
import { endpointExists } from "@evently/core/endpoints/sql.ts";
import { ConflictError, NotFoundError } from "@evently/core/errors.ts";
import { isId } from "@evently/core/ids.ts";
import { END_STATES, findJob, listJobs, replayJobs, type EndState } from "@evently/core/jobs/sql.ts";
import { toPage, type Page } from "../../common/model.ts";
import {
  presentAttempt,
  presentJob,
  type Attempt,
  type AttemptListQuery,
  type EndpointJobListQuery,
  type Job,
  type JobListQuery,
} from "./model.ts";

export class JobService {
  constructor(private readonly sql: Sql) {}

  async get(appId: string, id: string): Promise<Job & { attempts: Attempt[] }> {
    const job = isId("job", id) ? await findJob(this.sql, appId, id) : null;
    if (!job) throw new NotFoundError("job", id);
    const attempts = await listAttemptsForJob(this.sql, appId, id);
    return { ...presentJob(job), attempts: attempts.map(presentAttempt) };
  }

  async list(appId: string, query: JobListQuery): Promise<Page<Job>> {
    const { cursor, limit, ...filter } = query;
    const rows = await listJobs(this.sql, appId, { ...filter, before: cursor, limit: limit + 1 });
    return toPage(rows, limit, presentJob);
  }

  /** An unknown endpoint is a 404, not an empty page: the path names it. */
  async listForEndpoint(appId: string, endpointId: string, query: EndpointJobListQuery): Promise<Page<Job>> {
    await this.assertEndpoint(appId, endpointId);
    return this.list(appId, { ...query, endpointId });
  }

  async listAttemptsForEndpoint(appId: string, endpointId: string, query: AttemptListQuery): Promise<Page<Attempt>> {
    await this.assertEndpoint(appId, endpointId);
    const { cursor, limit, status, ...filter } = query;
    const rows = await listAttempts(this.sql, appId, { ...filter, endpointId, outcome: status, before: cursor, limit: limit + 1 });
    return toPage(rows, limit, presentAttempt);
  }

  /**
   * Makes an ended job due again now (jobs/sql.ts replayJobs); the dispatcher or a worker takes it
   * from the outbox. `statuses` narrows what may be replayed (the deprecated /retry: dead only).
   */
  async replay(appId: string, id: string, statuses: readonly EndState[] = END_STATES): Promise<Job> {
    if (!isId("job", id)) throw new NotFoundError("job", id);
    const [row] = await replayJobs(this.sql, appId, [id], statuses);
    if (row) return presentJob(row);
    const job = await findJob(this.sql, appId, id);
    if (!job) throw new NotFoundError("job", id);
    throw new ConflictError(`job ${id} is ${job.status}; only ${statuses.join(", ")} jobs can be replayed here`);
  }

  private async assertEndpoint(appId: string, id: string): Promise<void> {
    if (!isId("endpoint", id) || !(await endpointExists(this.sql, appId, id))) throw new NotFoundError("endpoint", id);
  }
}
