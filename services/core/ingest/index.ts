import type { Config } from "../config/index.ts";
import type { Sql } from "../db/client.ts";
import { envelopeBody, jobMessage, type JobMessage } from "../queue/messages.ts";
import type { JobTransport } from "../queue/transport.ts";
import { GroupCommitter, type AcceptedEvent, type ClaimedJobs, type CommittedEvent, type EventInput } from "./group-commit.ts";

export type { AcceptedEvent, CommittedEvent, EventInput } from "./group-commit.ts";

/** What ingest needs of the queue transport. */
export type JobHandoff = Pick<JobTransport, "publishGraceMs" | "commitNotify" | "publish" | "commitConsumer">;

/**
 * The one way events enter Evently, for every producer (the REST API today; sources, replays and
 * system events later): commit the events, their jobs and outbox entries together (group commit),
 * then hand the new jobs to the queue transport, or to the worker the commit claimed them for
 * (`commitConsumer`: this process's own, or one connected for the hand-over). An answer means the
 * events are durable; the hand-off may fail without loss, since the outbox still holds every job.
 */
export class Ingest {
  private readonly committer: GroupCommitter;

  constructor(sql: Sql, handoff: JobHandoff, options: Config["ingest"]) {
    this.committer = new GroupCommitter(sql, {
      maxEvents: options.INGEST_GROUP_MAX_EVENTS,
      concurrency: options.INGEST_GROUP_CONCURRENCY,
      overlapMinEvents: options.INGEST_OVERLAP_MIN_EVENTS,
      graceMs: handoff.publishGraceMs,
      notifyChannel: handoff.commitNotify,
      commitConsumer: () => handoff.commitConsumer(),
      onCommitted: (committed, claimed) => handOn(handoff, committed, claimed),
    });
  }

  /** Accepts events; resolves, in input order, once they are committed. */
  accept(inputs: EventInput[]): Promise<AcceptedEvent[]> {
    return this.committer.submit(inputs);
  }
}

/**
 * Hands committed events' jobs on: those the commit claimed to the consumer it claimed them for,
 * the rest to the transport. Where the commit notified the workers itself (`handoff.commitNotify`),
 * the rest need nothing, so no messages are built for them.
 */
export function handOn(handoff: JobHandoff, committed: CommittedEvent[], claimed: ClaimedJobs | null = null): void {
  if (claimed) claimed.reservation.handOver(jobMessagesOf(committed, (jobId) => claimed.jobIds.has(jobId)));
  if (!handoff.commitNotify) handoff.publish(jobMessagesOf(committed, claimed ? (jobId) => !claimed.jobIds.has(jobId) : () => true));
}

/** The messages of committed events' jobs that `keep` keeps: what a transport or a consumer is handed after the commit. */
function jobMessagesOf(committed: CommittedEvent[], keep: (jobId: string) => boolean): JobMessage[] {
  return committed.flatMap(({ row, jobs }) => {
    const kept = jobs.filter((job) => keep(job.id));
    if (kept.length === 0) return [];
    const event = { id: row.id, type: row.type, createdAt: row.createdAt, dataJson: row.dataJson, traceParent: row.traceParent };
    const body = envelopeBody(row.id, row.type, row.createdAt, row.dataJson); // once per event, shared by its jobs
    return kept.map((job) => jobMessage({ id: job.id, endpointId: job.endpointId, attemptCount: 0, expiresAt: job.expiresAt }, event, body));
  });
}
