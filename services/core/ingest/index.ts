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
 * Hands committed events' jobs on after a commit made with `handoff.commitNotify`: to the consumer
 * the commit claimed them for, else to the transport. Where the commit notified the
 * workers itself, there is nothing to hand on, so no messages are built.
 */
export function handOn(handoff: JobHandoff, committed: CommittedEvent[], claimed: ClaimedJobs | null = null): void {
  if (claimed) claimed.reservation.handOver(jobMessagesOf(committed.filter(({ row }) => claimed.eventIds.has(row.id))));
  else if (!handoff.commitNotify) handoff.publish(jobMessagesOf(committed));
}

/** The messages of committed events' jobs: what a transport is handed after the commit. */
function jobMessagesOf(committed: CommittedEvent[]): JobMessage[] {
  return committed.flatMap(({ row, jobs }) => {
    if (jobs.length === 0) return [];
    const event = { id: row.id, type: row.type, createdAt: row.createdAt, dataJson: row.dataJson, traceParent: row.traceParent };
    const body = envelopeBody(row.id, row.type, row.createdAt, row.dataJson); // once per event, shared by its jobs
    return jobs.map((job) => jobMessage({ id: job.id, endpointId: job.endpointId, attemptCount: 0, expiresAt: job.expiresAt }, event, body));
  });
}
