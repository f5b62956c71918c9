import type { Sql } from "../db/client.ts";
import { markQueued } from "../jobs/sql.ts";
import { encodeDeliveryMessage, type JobMessage } from "../queue/messages.ts";
import type { ConfirmPublisher, OutgoingMessage } from "../queue/publisher.ts";
import { queueIndexFor } from "../queue/topology.ts";
import { instruments } from "../telemetry/instruments.ts";

export interface OutboxPublishOptions {
  queueCount: number;
  jobsPerMessage: number;
  /** `fast` right after commit (jobs still `pending`), `sweep` from the dispatcher (jobs leased). */
  path: "fast" | "sweep";
  /** For `sweep`: the lease the sweeper holds on the jobs; only jobs still under it are marked. */
  leaseUntil?: Date;
}

/**
 * Moves jobs from the outbox to RabbitMQ: groups them by work queue, packs up to `jobsPerMessage`
 * per message, publishes with confirms and only then marks them queued. If anything fails the jobs
 * stay in the outbox and the sweeper tries again; a job published twice is caught by the claim.
 */
export async function publishFromOutbox(
  sql: Sql,
  publisher: ConfirmPublisher,
  jobs: JobMessage[],
  options: OutboxPublishOptions,
): Promise<void> {
  if (jobs.length === 0) return;
  const byQueue = new Map<number, JobMessage[]>();
  for (const job of jobs) {
    const q = queueIndexFor(job.endpointId, options.queueCount);
    let list = byQueue.get(q);
    if (!list) byQueue.set(q, (list = []));
    list.push(job);
  }
  const messages: OutgoingMessage[] = [];
  for (const [queueIndex, list] of byQueue)
    for (let i = 0; i < list.length; i += options.jobsPerMessage)
      messages.push({ queueIndex, content: encodeDeliveryMessage(list.slice(i, i + options.jobsPerMessage)) });

  const m = instruments();
  const started = performance.now();
  try {
    await publisher.publish(messages);
  } catch (err) {
    m.publishFailures.add(jobs.length, { path: options.path });
    throw err;
  }
  m.publishDuration.record((performance.now() - started) / 1000, { path: options.path });
  m.jobsPublished.add(jobs.length, { path: options.path });
  await markQueued(
    sql,
    jobs.map((j) => j.jobId),
    options.leaseUntil ?? null,
  );
}
